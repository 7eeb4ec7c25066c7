"""Build the feature tables and materialise them into the online store.

Runs whenever `ingest_events` updates the asset **freshcart_offline_events**,
and on manual trigger. The interval `[start, end)` comes from

1. the `start` / `end` params of a manual trigger (ISO dates or datetimes, `end` exclusive;
   one of them alone means a one-day interval), else
2. the triggering asset events: each carries in its `extra` the event-time
   range the ingestion changed (`event_start`, `event_end`; late arrivals make
   it start before the ingested interval `start`, `end`, the fallback); several
   events (e.g. after a backfill) are merged, earliest start to latest end, else
3. the day before the run's logical date (or its run-after time).

Tasks: `build_features` (feature rows of the interval's event dates into the
offline feature tables) -> `materialize_features` (those rows into the
profile's online store through Feast). Both are idempotent for an interval.
On success `materialize_features` updates the asset **freshcart_materialized_features**
(extra: the interval `start`, `end`), which schedules `train_evaluate`.
Then, for the candidates of `/recommend`: `build_cooccurrence` (co-viewed and
co-bought neighbours of the events before `end` into the online view `product_neighbours`,
and the session-kNN index file) -> `choose_candidate_quotas` (the sources' quotas chosen
by replaying the day before `end`; a file the service reads and an MLflow run).

Logic: `freshcart.pipeline.build_features`, `freshcart.pipeline.materialize_features`,
`freshcart.pipeline.build_cooccurrence` and `freshcart.pipeline.choose_candidate_quotas`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, Asset, Param, task

from freshcart.pipeline import (
    FEATURES_ASSET_NAME,
    FEATURES_ASSET_URI,
    OFFLINE_EVENTS_ASSET_NAME,
    OFFLINE_EVENTS_ASSET_URI,
    parse_instant,
)

OFFLINE_EVENTS = Asset(name=OFFLINE_EVENTS_ASSET_NAME, uri=OFFLINE_EVENTS_ASSET_URI, group="freshcart")
MATERIALIZED_FEATURES = Asset(name=FEATURES_ASSET_NAME, uri=FEATURES_ASSET_URI, group="freshcart")
ONE_DAY = timedelta(days=1)
ISO_DATE = r"^\d{4}-\d{2}-\d{2}([T ]\S+)?$"  # a date, or a date and time (an asset event's extra)
log = logging.getLogger(__name__)


def _event_bounds(extra: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """The event-time range an ingestion's asset event names (its ingested interval if it names none)."""
    start, end = extra.get("event_start") or extra["start"], extra.get("event_end") or extra["end"]
    return parse_instant(str(start), "event_start"), parse_instant(str(end), "event_end")


def run_interval(params: Mapping[str, Any], asset_events: Any, run_anchor: datetime) -> tuple[str, str]:
    """The run's interval as ISO strings: params first, then the asset events, then the day before ``run_anchor``."""
    start, end = params.get("start"), params.get("end")
    if start or end:
        first = parse_instant(str(start), "start") if start else parse_instant(str(end), "end") - ONE_DAY
        last = parse_instant(str(end), "end") if end else first + ONE_DAY
        log.info("interval from the params: [%s, %s)", first, last)
        return first.isoformat(), last.isoformat()
    events: Sequence[Any] = asset_events.get(OFFLINE_EVENTS, ()) if asset_events else ()
    bounds = [_event_bounds(e.extra) for e in events if e.extra and e.extra.get("start") and e.extra.get("end")]
    if bounds:
        first, last = min(b[0] for b in bounds), max(b[1] for b in bounds)
        log.info("interval from %d asset event(s): [%s, %s)", len(bounds), first, last)
        return first.isoformat(), last.isoformat()
    day = run_anchor.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    log.info("no params and no asset event with an interval: the day before the run, [%s, %s)", day - ONE_DAY, day)
    return (day - ONE_DAY).isoformat(), day.isoformat()


with DAG(
    dag_id="materialize_features",
    description="Feature tables and online store for the interval that ingest_events just loaded.",
    doc_md=__doc__,
    schedule=[OFFLINE_EVENTS],
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # one writer of the online store at a time
    params={
        "start": Param(None, type=["null", "string"], pattern=ISO_DATE,
                       description="Start (inclusive), an ISO date or datetime, e.g. 2025-01-06; "
                                   "empty: from the asset events"),
        "end": Param(None, type=["null", "string"], pattern=ISO_DATE,
                     description="End (exclusive), an ISO date or datetime; empty: start + 1 day"),
    },
    default_args={"owner": "freshcart", "retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["freshcart", "features", "online-store"],
) as dag:

    @task
    def build_features(
        params: Mapping[str, Any] | None = None,
        triggering_asset_events: Any = None,
        dag_run: Any = None,
    ) -> dict[str, Any]:
        """Compute the interval's feature tables; the summary (with the interval) goes downstream."""
        from freshcart import pipeline

        anchor = dag_run.logical_date or dag_run.run_after
        start, end = run_interval(params or {}, triggering_asset_events, anchor)
        return pipeline.build_features(start, end)

    @task(outlets=[MATERIALIZED_FEATURES])
    def materialize_features(built: dict[str, Any], outlet_events: Any = None) -> dict[str, Any]:
        """Write the interval that ``build_features`` computed into the online store; the asset event
        carries the interval (``start``, ``end``) for ``train_evaluate``."""
        from freshcart import pipeline

        summary = pipeline.materialize_features(built["start"], built["end"])
        if outlet_events is not None:
            outlet_events[MATERIALIZED_FEATURES].extra = {"start": summary["start"], "end": summary["end"]}
        return summary

    @task
    def build_cooccurrence(materialized: dict[str, Any]) -> dict[str, Any]:
        """Co-occurrence neighbours into the online view and the session-kNN index, as of the interval's end."""
        from freshcart import pipeline

        return pipeline.build_cooccurrence(materialized["start"], materialized["end"])

    @task
    def choose_candidate_quotas(neighbours: dict[str, Any]) -> dict[str, Any]:
        """The candidate sources' quotas chosen by the replay of the day before the interval's end."""
        from freshcart import pipeline

        return pipeline.choose_candidate_quotas(neighbours["start"], neighbours["end"])

    # one writer of the online store at a time: the neighbours follow the feature rows
    choose_candidate_quotas(build_cooccurrence(materialize_features(build_features())))
