"""Feature tables in the offline store: batch feature rows of a date interval, per view.

``build_feature_tables(settings, start, end)`` reads the offline events of
``[start - LOOKBACK, end)``, computes every view's rows for ``[start, end)``
and replaces those date partitions under
``<feature_tables_dir>/<view>/event_date=YYYY-MM-DD/data.parquet``. Re-running
an interval rewrites the same content; Feast's batch sources read these folders.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time as clock, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from freshcart import storage
from freshcart.features import spec
from freshcart.features.batch import compute_feature_rows
from freshcart.settings import Settings


class FeatureBuildError(ValueError):
    """The interval cannot be built; the message names it and says what to do."""


@dataclass
class FeatureBuildReport:
    start: date
    end: date
    events_read: int = 0
    events_in_interval: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    out_dir: Path = Path()
    seconds: float = 0.0


def _midnight(day: date) -> datetime:
    return datetime.combine(day, clock(), tzinfo=timezone.utc)


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]


def read_interval_events(events_dir: Path, start: date, end: date) -> pa.Table:
    """Offline events of every existing date partition in ``[start, end)``."""
    parts = [storage.read_partition(events_dir, day) for day in days_between(start, end)]
    parts = [p for p in parts if p is not None]
    return pa.concat_tables(parts) if parts else storage.ARROW_SCHEMA.empty_table()


def check_interval(events_dir: Path, start: date, end: date) -> None:
    """Raise :class:`FeatureBuildError` unless every date of ``[start, end)`` has offline events."""
    if start >= end:
        raise FeatureBuildError(f"empty interval [{start}, {end}): the end must be after the start")
    have = set(storage.list_partitions(events_dir))
    missing = [day for day in days_between(start, end) if day not in have]
    if missing:
        shown = ", ".join(str(d) for d in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise FeatureBuildError(
            f"interval [{start}, {end}): no offline events for {shown} under {events_dir}; "
            f"run `freshcart ingest --start {missing[0]} --end {missing[-1] + timedelta(days=1)}` first"
        )


def _replace_partition(root: Path, day: date, table: pa.Table | None) -> None:
    folder = storage.partition_dir(root, day)
    if table is None or table.num_rows == 0:
        shutil.rmtree(folder, ignore_errors=True)
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{uuid.uuid4().hex}.tmp"
    pq.write_table(table, tmp, compression="zstd", row_group_size=256_000)
    os.replace(tmp, folder / storage.DATA_FILE)


def write_feature_tables(out_dir: Path, tables: dict[str, pa.Table], start: date, end: date) -> dict[str, int]:
    """Replace the date partitions of ``[start, end)`` of every view with ``tables``."""
    written = {}
    for name, table in tables.items():
        by_day = storage.split_by_date(table, column=spec.TIMESTAMP)
        for day in days_between(start, end):
            _replace_partition(out_dir / name, day, by_day.get(day))
        written[name] = table.num_rows
    return written


def build_feature_tables(settings: Settings, start: date, end: date) -> FeatureBuildReport:
    """Compute and store the feature rows of every view for event dates ``[start, end)``."""
    started = time.perf_counter()
    events_dir = settings.offline_events_dir
    check_interval(events_dir, start, end)
    lookback_start = start - timedelta(days=spec.LOOKBACK.days)
    events = read_interval_events(events_dir, lookback_start, end)
    tables = compute_feature_rows(events, _midnight(start), _midnight(end))
    report = FeatureBuildReport(start=start, end=end, events_read=events.num_rows,
                                out_dir=settings.feature_tables_dir)
    report.events_in_interval = int(pc.sum(pc.greater_equal(
        events["event_time"], pa.scalar(_midnight(start), pa.timestamp("us", tz="UTC")))).as_py() or 0)
    report.rows = write_feature_tables(settings.feature_tables_dir, tables, start, end)
    report.seconds = time.perf_counter() - started
    return report


def read_feature_table(settings: Settings, view: str, start: date | None = None,
                       end: date | None = None) -> pa.Table:
    """The stored rows of one view (all dates, or ``[start, end)``), in its schema."""
    root = settings.feature_tables_dir / view
    days = storage.list_partitions(root)
    if start is not None and end is not None:
        days = [d for d in days if start <= d < end]
    schema = spec.VIEWS[view].schema
    parts = [storage.read_partition(root, day, schema=schema) for day in days]
    parts = [p for p in parts if p is not None]
    return pa.concat_tables(parts) if parts else schema.empty_table()
