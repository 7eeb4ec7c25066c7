"""One function per orchestrated task, addressed by its data interval; no framework imported.

The Airflow DAGs in ``dags/`` call these (one call per task), and so can the CLI
or a test. Each function takes the interval as ISO strings, loads the settings
itself, calls the stage that does the work and returns a small JSON-serialisable
summary (the interval, paths and counts, never data), which is what travels
between tasks.

Dates and times: ``start`` and ``end`` are ISO dates (``2025-01-06``) or
datetimes (``2025-01-06T00:00:00+00:00``; naive means UTC). Day-based stages
(ingestion by arrival date, feature tables by event date) cover every day the
interval touches: ``[day(start), day(end))``, where ``day(end)`` is rounded up
when ``end`` is not a midnight.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

OFFLINE_EVENTS_ASSET_NAME = "freshcart_offline_events"
"""Name of the Airflow asset the ingestion updates (the offline events store)."""
OFFLINE_EVENTS_ASSET_URI = "freshcart://offline/events"
"""URI of that asset; stable across profiles and data dirs, so producer and consumer agree."""

_MAX_LIST = 400  # longest list copied into a summary (e.g. one entry per partition)
_SKIP = object()  # marks a value that is data, not a count or a path


class IntervalError(ValueError):
    """A data interval is malformed or empty; the message names the bad value."""


def parse_instant(value: str, name: str = "start") -> datetime:
    """An ISO date or datetime string as an aware UTC datetime (naive values are UTC)."""
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise IntervalError(
            f"{name}={value!r} is not an ISO date or datetime; give e.g. 2025-01-06 or 2025-01-06T00:00:00+00:00"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def parse_interval(start: str, end: str) -> tuple[datetime, datetime]:
    """``[start, end)`` as UTC datetimes; an empty or reversed interval raises :class:`IntervalError`."""
    begin, finish = parse_instant(start, "start"), parse_instant(end, "end")
    if finish <= begin:
        raise IntervalError(f"interval end={end!r} is not after start={start!r}; give end > start")
    return begin, finish


def interval_days(start: str, end: str) -> tuple[date, date]:
    """The days ``[first, last)`` that the interval ``[start, end)`` touches (UTC)."""
    begin, finish = parse_interval(start, end)
    last = finish.date() if finish.timetz() == time(0, tzinfo=timezone.utc) else finish.date() + timedelta(days=1)
    return begin.date(), last


def summarize(report: Any) -> dict[str, Any]:
    """The scalar fields of a report object (dataclass, pydantic model or mapping) as JSON values.

    Numbers, strings, booleans, paths, dates and counters are kept; tables,
    arrays and other data are left out, so a summary stays small.
    """
    if report is None:
        return {}
    converted = _json_value(report)
    if converted is _SKIP:
        return {}
    return converted if isinstance(converted, dict) else {"result": converted}


def _fields(value: Any) -> dict[str, Any] | None:
    """The fields of a dataclass instance or pydantic model, else None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump") and not isinstance(value, type):
        return dict(value.model_dump())
    return None


def _json_value(value: Any, depth: int = 0) -> Any:
    """``value`` as a JSON value, or ``_SKIP`` when it is data rather than a count or a path."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar
        return _json_value(value.item(), depth)
    if depth > 3:
        return _SKIP
    fields = _fields(value)
    if fields is not None or (isinstance(value, Mapping) and len(value) <= _MAX_LIST):
        pairs = (fields if fields is not None else value).items()
        entries = {str(k): _json_value(v, depth + 1) for k, v in pairs if not str(k).startswith("_")}
        return {k: v for k, v in entries.items() if v is not _SKIP}
    if isinstance(value, (list, tuple, set, frozenset)) and len(value) <= _MAX_LIST:
        ordered = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        items = [_json_value(v, depth + 1) for v in ordered]
        return items if all(v is not _SKIP for v in items) else _SKIP
    return _SKIP


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def _interval_fields(start: datetime, end: datetime) -> dict[str, str]:
    return {"start": start.isoformat(), "end": end.isoformat()}


def ingest_events(start: str, end: str) -> dict[str, Any]:
    """Ingest the landing zone's arrivals of ``[start, end)`` into the offline events store (an upsert).

    Reads ``<landing_dir>/arrival_date=YYYY-MM-DD/`` for every day of the interval
    and returns the interval and the ingestion report's paths and counts.
    ``event_start`` / ``event_end`` span the event dates whose partitions the run
    touched: late arrivals reach back before ``start``, so features computed from
    ``event_start`` on see them.
    """
    from freshcart.ingestion.interval_ingest import ingest_interval
    from freshcart.settings import load_settings

    settings = load_settings()
    begin, finish = parse_interval(start, end)
    first, last = interval_days(start, end)
    report = ingest_interval(settings, first, last)
    touched = sorted(report.partition_rows)
    event_start = min([begin, *(_midnight(day) for day in touched[:1])])
    event_end = max([finish, *(_midnight(day) + timedelta(days=1) for day in touched[-1:])])
    return {
        **summarize(report),
        **_interval_fields(begin, finish),
        "event_start": event_start.isoformat(),
        "event_end": event_end.isoformat(),
    }


def build_features(start: str, end: str) -> dict[str, Any]:
    """Compute the feature tables for the event dates of ``[start, end)`` from the offline events."""
    from freshcart.features.tables import build_feature_tables
    from freshcart.settings import load_settings

    settings = load_settings()
    begin, finish = parse_interval(start, end)
    first, last = interval_days(start, end)
    report = build_feature_tables(settings, first, last)
    return {
        **summarize(report),
        **_interval_fields(begin, finish),
    }


def materialize_features(start: str, end: str) -> dict[str, Any]:
    """Write the feature rows of ``[start, end)`` into the profile's online store (through Feast)."""
    from freshcart.features.materialize import materialize
    from freshcart.settings import load_settings

    settings = load_settings()
    begin, finish = parse_interval(start, end)
    report = materialize(settings, begin, finish)
    return {
        **summarize(report),
        "entity_rows": report.entity_rows,
        "profile": settings.profile,
        **_interval_fields(begin, finish),
    }


def build_cooccurrence(start: str, end: str) -> dict[str, Any]:
    """Item co-occurrence of the offline events before ``end`` into the online view ``product_neighbours``,
    and the session-kNN index file (``start`` only names the interval in the summary)."""
    from freshcart.recommendation.neighbour_tables import build_neighbour_tables
    from freshcart.settings import load_settings

    settings = load_settings()
    begin, finish = parse_interval(start, end)
    return {**summarize(build_neighbour_tables(settings, finish)), "profile": settings.profile,
            **_interval_fields(begin, finish)}


def choose_candidate_quotas(start: str, end: str) -> dict[str, Any]:
    """The candidate sources' quotas chosen by replaying the last day before ``end`` (the file the service
    reads, and an MLflow run)."""
    from freshcart.recommendation.neighbour_tables import choose_quotas
    from freshcart.settings import load_settings

    begin, finish = parse_interval(start, end)
    return {**choose_quotas(load_settings(), finish), **_interval_fields(begin, finish)}


# Training -----------------------------------------------------------------------------------

FEATURES_ASSET_NAME = "freshcart_materialized_features"
"""Name of the Airflow asset ``materialize_features`` updates (feature tables and the online store)."""
FEATURES_ASSET_URI = "freshcart://features/materialized"
"""URI of that asset; its events carry the materialised interval (``start``, ``end``)."""


def training_interval(materialized_end: str, days: int | None = None) -> tuple[str, str]:
    """The views to train on after features up to ``materialized_end``: ``days`` whole days (default
    ``FRESHCART_TRAINING_DAYS``) ending one label horizon (rounded up to days) before it."""
    import math

    from freshcart.settings import load_settings

    settings = load_settings()
    end_day = parse_instant(materialized_end, "end").date()
    end = end_day - timedelta(days=math.ceil(settings.horizon_hours / 24))
    start = end - timedelta(days=days or settings.training_days)
    return _midnight(start).isoformat(), _midnight(end).isoformat()


def build_training_set(start: str, end: str) -> dict[str, Any]:
    """Build (again) the point-in-time training set of the views in the days of ``[start, end)``.

    Idempotent: the file ``<data_dir>/training/propensity_<first>_<last>.parquet`` is rewritten.
    """
    from freshcart.settings import load_settings
    from freshcart.training.data import load_or_build

    settings = load_settings()
    first, last = interval_days(start, end)
    table, path, _ = load_or_build(settings, first, last, rebuild=True)
    labels = table["label"].to_numpy()
    return {"training_set": str(path), "examples": table.num_rows, "positives": int(labels.sum()),
            "start": first.isoformat(), "end": last.isoformat()}


def train_model(model_type: str, training_set: str, start: str, end: str) -> dict[str, Any]:
    """Train ``model_type`` on a training set, log it to MLflow and register a version (no alias yet)."""
    from freshcart.settings import load_settings
    from freshcart.training.train import train_model as train

    settings = load_settings()
    first, last = interval_days(start, end)
    result = train(settings, model_type, first, last, Path(training_set), set_challenger=False)
    return {"model_type": model_type, "version": result.version, "run_id": result.run_id,
            "holdout_start": result.split.holdout_start.isoformat(), "train_seconds": result.train_seconds,
            "oracle_auc": result.report.oracle_auc, **{f"holdout_{k}": v for k, v in result.report.model.items()},
            **{f"baseline_{k}": v for k, v in result.report.baseline.items()}}


def evaluate_models(trained: list[dict[str, Any]]) -> dict[str, Any]:
    """Pick the best of the freshly trained versions on the promotion metric and make it the challenger."""
    from freshcart.settings import load_settings
    from freshcart.training.evaluate import HIGHER_IS_BETTER
    from freshcart.training.registry import CHALLENGER, connect

    settings = load_settings()
    metric = settings.promotion_metric
    candidates = [t for t in trained if t and t.get(f"holdout_{metric}") is not None]
    if not candidates:
        raise ValueError(f"no trained model reports holdout_{metric}; check the train tasks' logs")
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    best = max(candidates, key=lambda t: sign * float(t[f"holdout_{metric}"]))
    connect(settings).set_registered_model_alias(settings.registered_model, CHALLENGER, str(best["version"]))
    return {"challenger": best["version"], "model_type": best["model_type"], "metric": metric,
            "compared": {t["model_type"]: t[f"holdout_{metric}"] for t in candidates}}


def promote_challenger() -> dict[str, Any]:
    """Promote the challenger if it beats the champion on the same holdout (see ``training.promote``)."""
    from freshcart.settings import load_settings
    from freshcart.training.promote import promote

    return summarize(promote(load_settings()))


def evaluate_recommendations(end: str, champion_version: str | None = None) -> dict[str, Any]:
    """Replay the purchases and add-to-carts of the day before ``end`` (the newest labelled day of a
    training interval) against the baselines, log the table to MLflow with the champion's version, and
    return each recommender's NDCG@10 and candidate recall@100 per event type."""
    from freshcart.recommendation.replay import evaluate_recommendations as replay
    from freshcart.recommendation.tracking import log_to_mlflow
    from freshcart.settings import load_settings

    settings = load_settings()
    last = parse_instant(end, "end").date()
    table = replay(settings, last - timedelta(days=1), last)
    run_id = log_to_mlflow(settings, table, model_version=champion_version)
    return {"run_id": run_id, "day": (last - timedelta(days=1)).isoformat(),
            "ndcg_at_10": {f"{r['recommender']}.{r['event_type']}": r["ndcg@10"] for r in table.to_pylist()},
            "recall_at_100": {f"{r['recommender']}.{r['event_type']}": r["recall@100"] for r in table.to_pylist()}}


def train_ranker(end: str, ranker_days: int = 2) -> dict[str, Any]:
    """Train the learning-to-rank model on the replayed candidate lists of the days before ``end``'s last
    day, register it in ``freshcart-ranker`` and promote it only if its NDCG@10 on that last day beats
    the ranker champion and the propensity champion as ranker (see ``recommendation.ranker_job``)."""
    from freshcart.recommendation.ranker_job import train_and_gate
    from freshcart.settings import load_settings

    last = parse_instant(end, "end")
    return {**train_and_gate(load_settings(), last, ranker_days), "end": last.isoformat()}
