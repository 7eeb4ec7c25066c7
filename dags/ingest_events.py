"""Ingest one day of arrivals into the offline events store.

Daily, one run per data interval `[data_interval_start, data_interval_end)`:
the landing zone's `arrival_date=YYYY-MM-DD/` folders of that interval are
validated and upserted into the offline events store (Parquet by event date),
so a re-run of the same interval changes nothing.

On success the task updates the asset **freshcart_offline_events**; the asset
event's `extra` carries the interval (`start`, `end`: ISO datetimes) and the
event-time range whose partitions the run changed (`event_start`, `event_end`:
late arrivals reach back before `start`). `materialize_features` rebuilds and
materialises that event range. Catch-up is off: past days go through
`airflow backfill create`.

Logic: `freshcart.pipeline.ingest_events` (no Airflow inside).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, task

from freshcart.pipeline import OFFLINE_EVENTS_ASSET_NAME, OFFLINE_EVENTS_ASSET_URI

OFFLINE_EVENTS = Asset(name=OFFLINE_EVENTS_ASSET_NAME, uri=OFFLINE_EVENTS_ASSET_URI, group="freshcart")

with DAG(
    dag_id="ingest_events",
    description="Landing zone -> offline events store, one day per run; updates freshcart_offline_events.",
    doc_md=__doc__,
    # A data-interval timetable: the run of day D covers [D, D + 1 day) and starts after it ends
    # (a plain "@daily" string would give a zero-length interval in Airflow 3).
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=4,
    default_args={"owner": "freshcart", "retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["freshcart", "ingestion", "offline-store"],
) as dag:

    @task(outlets=[OFFLINE_EVENTS])
    def ingest_events(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        outlet_events: Any = None,
    ) -> dict[str, Any]:
        """Ingest the interval's arrivals and attach the interval to the asset event."""
        from freshcart import pipeline

        if data_interval_start is None or data_interval_end is None:
            raise ValueError("ingest_events needs a data interval; trigger it with a logical date")
        summary = pipeline.ingest_events(data_interval_start.isoformat(), data_interval_end.isoformat())
        outlet_events[OFFLINE_EVENTS].extra = {
            key: summary[key] for key in ("start", "end", "event_start", "event_end")
        }
        return summary

    ingest_events()
