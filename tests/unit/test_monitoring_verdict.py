"""Retrain verdicts from hand-built monitoring tables: persistence, performance drops, cooldown, run ids."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from freshcart.monitoring import tables
from freshcart.monitoring.verdict import decide, run_id_for
from freshcart.settings import Settings, load_settings

T0 = datetime(2025, 2, 1, 8, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def _window(i: int, alarm: bool, estimated: float = 0.75, measured: float | None = None,
            status: str = "judged") -> dict[str, object]:
    return {"window_start": T0 + i * HOUR, "window_end": T0 + (i + 1) * HOUR, "status": status, "rows": 900,
            "alarm": alarm, "reasons": "x" if alarm else "", "drifted_columns": "price,score" if alarm else "",
            "drifted_share": 0.05 if alarm else 0.0, "champion_auc": 0.76, "estimated_auc": estimated,
            "measured_auc": measured if measured is not None else float("nan")}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, retrain_cooldown_hours=6, monitor_persist_windows="2/3")


def _decide(settings: Settings, rows: list[dict[str, object]], i: int, active: int = 0):
    tables.upsert(settings, tables.WINDOWS, pd.DataFrame(rows))
    return decide(settings, T0 + i * HOUR, T0 + (i + 1) * HOUR, active)


def test_persistent_drift_without_a_drop_does_not_retrain(settings: Settings) -> None:
    made = _decide(settings, [_window(0, True), _window(1, True)], 1)
    assert made.action == "none" and not made.trigger and "no performance drop" in made.reason


def test_one_alarm_with_a_drop_is_not_yet_persistent(settings: Settings) -> None:
    made = _decide(settings, [_window(0, False), _window(1, True, estimated=0.70)], 1)
    assert made.action == "none" and "needs 2 of 3" in made.reason


def test_drift_and_estimated_drop_trigger_then_the_cooldown_holds(settings: Settings) -> None:
    rows = [_window(0, True), _window(1, True, estimated=0.70)]
    first = _decide(settings, rows, 1)
    assert first.trigger and first.action == "retrain" and first.run_id == run_id_for(settings, T0 + 2 * HOUR)
    assert first.conf()["drifted_columns"] == ["price", "score"] and first.conf()["reason"] == first.reason
    again = _decide(settings, rows, 1)  # the same window again: the same decision, not a cooldown of itself
    assert again.trigger and again.run_id == first.run_id
    later = _decide(settings, [*rows, _window(2, True, estimated=0.70)], 2)
    assert later.action == "cooldown" and not later.trigger
    after = _decide(settings, [*rows, _window(2, True), _window(7, True, estimated=0.70)], 7)
    assert after.trigger and after.run_id != first.run_id
    recorded = tables.read_table(settings, tables.DECISIONS)
    assert list(recorded["action"]) == ["retrain", "cooldown", "retrain"]


def test_measured_drop_alone_retrains_but_not_while_training_runs(settings: Settings) -> None:
    rows = [_window(0, False, measured=0.70), _window(1, False)]
    busy = _decide(settings, rows, 1, active=1)
    assert busy.action == "training_active" and not busy.trigger and "measured AUC 0.7000" in busy.reason
    free = _decide(settings, rows, 1)
    assert free.trigger


def test_a_small_window_never_triggers(settings: Settings) -> None:
    made = _decide(settings, [_window(0, True, measured=0.5), _window(1, False, status="too_small")], 1)
    assert made.action == "too_small" and not made.trigger


def test_run_ids_are_fixed_per_cooldown_bucket(settings: Settings) -> None:
    assert run_id_for(settings, T0) == run_id_for(settings, T0 + 3 * HOUR) != run_id_for(settings, T0 + 5 * HOUR)
