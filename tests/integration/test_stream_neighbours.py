"""The co-occurrence neighbours the stream keeps fresh, against the real broker and online stores: events sent
through Kafka, out of order within the lateness, consumed by `freshcart stream consume` (killed with SIGKILL
and restarted in one test); then every online ``product_neighbours`` row equals the batch recomputation
(:func:`freshcart.recommendation.cooccurrence.build_cooccurrence`) over the same events."""

from __future__ import annotations

import random
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest

from freshcart.features.store import feature_store
from freshcart.settings import Settings
from freshcart.stream.verify import batch_neighbours, verify_neighbours
from tests.integration.test_stream import (
    applied_local, local_stream, messages_of, produce, production_stream, run_until_idle, simulated, start_consumer,
)

__all__ = ["applied_local", "local_stream", "production_stream"]  # the fixtures, shared with test_stream.py


def with_neighbours(settings: Settings) -> Settings:
    """The stream's settings with the neighbours kept fresh (``FRESHCART_STREAM_NEIGHBOURS``, off by default)."""
    return settings.model_copy(update={"stream_neighbours": True})


def jittered(seed: int, n: int) -> tuple[list, list]:
    """Simulated events, and the same shuffled by up to 4 minutes (within the 10 minutes' lateness)."""
    events = simulated(n, seed=seed)
    rng = random.Random(seed)
    return events, sorted(events, key=lambda e: e.event_time + timedelta(seconds=rng.uniform(0, 240)))


@pytest.mark.parametrize("profile", ["local", "production"])
def test_online_neighbours_equal_the_batch_recomputation(profile: str, request: pytest.FixtureRequest,
                                                         tmp_path: Path) -> None:
    settings = with_neighbours(request.getfixturevalue(f"{profile}_stream"))
    events, order = jittered(seed=31, n=8_000)
    produce(settings, messages_of(order))
    run_until_idle(settings, tmp_path / "consumer.log")
    expected = batch_neighbours(events)
    assert len(expected) > 100 and sum(bool(v["co_bought_ids"]) for v in expected.values()) > 10
    assert verify_neighbours(feature_store(settings), events) == []


def test_neighbours_after_sigkill_and_restart(local_stream: Settings, tmp_path: Path) -> None:
    """Killed mid-stream twice, restarted: the restored pair sums and the replay give the batch's rows."""
    settings = with_neighbours(local_stream)
    events, order = jittered(seed=32, n=20_000)
    produce(settings, messages_of(order))
    log = tmp_path / "consumer.log"
    for delay in (3.0, 4.5):
        process = start_consumer(settings, log)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    run_until_idle(settings, log)
    assert "restored" in log.read_text()
    assert verify_neighbours(feature_store(settings), events) == []
