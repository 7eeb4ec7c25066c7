"""Shared fixtures: paths to the real sample data beside the checkout."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from freshcart.schema import TimeBounds

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
REES46_SAMPLE = SHARED_DATA / "rees46_2019-10_head.csv"
NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture
def bounds() -> TimeBounds:
    """Plausible times: 2000-01-01 .. NOW + 1 h (a fixed now keeps tests deterministic)."""
    return TimeBounds.around(NOW, datetime(2000, 1, 1, tzinfo=timezone.utc), 3600)


@pytest.fixture
def rees46_sample() -> Path:
    if not REES46_SAMPLE.is_file():
        pytest.fail(f"the REES46 sample is missing: {REES46_SAMPLE} (shared/data beside the checkout)")
    return REES46_SAMPLE


@pytest.fixture(scope="session")
def small_simulation(tmp_path_factory) -> Path:
    """A small simulated shop (300 users, 4 days), events by date under the returned folder."""
    from freshcart.simulator import SimulationConfig, write_simulation

    out = tmp_path_factory.mktemp("small-simulation")
    write_simulation(SimulationConfig(seed=3, users=300, products=400, days=4, events_per_day=8_000), out)
    return out


@pytest.fixture(scope="session")
def rees46_events(tmp_path_factory):
    """The REES46 sample as canonical events (a pyarrow table)."""
    from freshcart.ingestion.file_ingest import ingest_file
    from freshcart.storage import read_events

    if not REES46_SAMPLE.is_file():
        pytest.fail(f"the REES46 sample is missing: {REES46_SAMPLE} (shared/data beside the checkout)")
    out = tmp_path_factory.mktemp("rees46")
    bounds = TimeBounds.around(NOW, datetime(2000, 1, 1, tzinfo=timezone.utc), 3600)
    ingest_file(REES46_SAMPLE, "rees46", out, bounds)
    return read_events(out)
