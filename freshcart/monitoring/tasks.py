"""The `monitor_model` DAG's tasks: one function per task, plain arguments (ISO times), JSON-able results.

Each is addressed by its data interval [start, end): land predictions -> label the
window whose horizon closed by ``end`` -> report the window (and re-judge the
labelled one with its measured figures) -> verdict. Nothing reads the wall clock.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd

from freshcart.monitoring import labels, report, tables, verdict
from freshcart.monitoring.reference import load_reference
from freshcart.monitoring.workspace import add_snapshot
from freshcart.serving.ingest import ingest_predictions
from freshcart.settings import Settings, load_settings


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None, numpy numbers as Python ones, times as ISO text (XCom is JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _instant(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an ISO time: give e.g. 2025-01-15T12:00:00+00:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _window(settings: Settings, start: str, end: str) -> tuple[datetime, datetime]:
    """The window of a data interval; a manual run's empty interval means the window ending at ``end``."""
    first, last = _instant(start, "start"), _instant(end, "end")
    if first >= last:
        first = last - report.window_length(settings)
    return first, last


def _labelled_window(settings: Settings, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The window whose horizon closes at ``end``: [start - H, end - H)."""
    horizon = timedelta(hours=settings.horizon_hours)
    return start - horizon, end - horizon


def land_predictions(timeout_s: float = 120.0) -> dict[str, Any]:
    """Everything on the predictions topic up to its end, landed in the offline store by date."""
    landed = ingest_predictions(load_settings(), timeout_s=timeout_s)
    return json_safe({"records": landed.records, "rows": landed.rows, "undecodable": landed.undecodable,
            "dates": {d.isoformat(): n for d, n in landed.dates.items()}, "seconds": round(landed.seconds, 2)})


def label_window(start: str, end: str) -> dict[str, Any]:
    """Label the window whose horizon closed by ``end`` (open while the events up to then are not landed)."""
    settings = load_settings()
    first, last = _labelled_window(settings, *_window(settings, start, end))
    known = tables.events_until(settings)
    as_of = min(_instant(end, "end"), known) if known is not None else first
    table = tables.read_predictions(settings, first, last)
    frame = table.select([c for c in labels.LABEL_COLUMNS if c in table.column_names]).to_pandas() \
        if table is not None else None

    done = labels.label_window(settings, frame if frame is not None else pd.DataFrame(),
                               tables.read_purchases(settings, first, last + timedelta(hours=settings.horizon_hours)),
                               first, last, as_of)
    return json_safe({"window_start": first.isoformat(), "status": done.status, "closes_at": done.closes_at.isoformat(),
            "rows": done.rows, "positives": done.positives, "hits": done.hits})


def report_window(start: str, end: str) -> dict[str, Any]:
    """Drift and performance of [start, end) against the champion's reference; the labelled window again."""
    settings = load_settings()
    reference = load_reference(settings)
    first, last = _window(settings, start, end)
    judged = report.monitor_window(settings, reference, first, last)
    add_snapshot(settings, judged)
    old_first, old_last = _labelled_window(settings, first, last)
    labelled = labels.read_labels(settings, old_first)
    if labelled is not None:  # judged again with its measured figures, against the version that served it
        served = labels.served_version(labelled)
        then = reference if served in (None, reference.version) else load_reference(settings, version_number=served)
        add_snapshot(settings, report.monitor_window(settings, then, old_first, old_last))
    return json_safe({**judged.summary(), "line": report.describe(judged)})


def decide(start: str, end: str, training_active: int = 0) -> dict[str, Any]:
    """The verdict of [start, end): trigger or not, why, the run id and conf of the retraining."""
    settings = load_settings()
    made = verdict.decide(settings, *_window(settings, start, end), training_active)
    return json_safe({"trigger": made.trigger, "action": made.action, "reason": made.reason,
                      "run_id": made.run_id, "conf": made.conf()})
