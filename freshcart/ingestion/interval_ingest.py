"""Offline ingestion: landed records of an interval of arrival dates -> the offline event store.

``ingest_interval(settings, start, end)`` reads every landing file of the arrival
dates ``start <= d < end`` (``settings.landing_dir/arrival_date=YYYY-MM-DD/``),
chunk by chunk, validates each record, and upserts the valid events into the
offline store (``settings.offline_events_dir``), partitioned by *event* date:
an event that arrived on 2026-11-05 about 2026-11-03 lands in 2026-11-03.

- Idempotent: partitions are merged one row per ``event_id``
  (:func:`freshcart.storage.upsert_partition`), so re-running an interval leaves
  the same content; rejects of an arrival date are replaced, not appended.
- Addressed by the interval, not the clock: the "far future" bound of a record
  is the end of its arrival date plus ``settings.max_future_seconds``, so the
  result for one arrival date does not depend on when, or in which interval, it runs.
- Rejected records (with their reason, source file, line and raw text) go to
  ``settings.offline_dir/_rejects/arrival_date=YYYY-MM-DD/data.parquet``; they
  never stop the valid records of the same file.
- Memory is bounded by one chunk while reading and one event date while merging:
  valid rows are staged by event date in ``offline_dir/_staging/<run>/`` first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time as timer
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from freshcart import storage
from freshcart.ingestion.landing import ARRIVAL_KEY, arrival_dir
from freshcart.ingestion.landing_readers import LANDING_SUFFIXES, REJECTS_SCHEMA, CheckedChunk, read_landing_file
from freshcart.schema import ARROW_SCHEMA, TimeBounds
from freshcart.settings import Settings

REJECTS_DIR = "_rejects"
REJECTS_FILE = "data.parquet"
DEFAULT_CHUNK_ROWS = 200_000


class IngestIntervalError(ValueError):
    """An interval cannot be ingested; the message names the interval and what to do."""


@dataclass
class IntervalReport:
    """What :func:`ingest_interval` did for the arrival dates ``start <= d < end``."""

    start: date
    end: date
    landing_dir: Path
    events_dir: Path
    rejects_dir: Path
    files: list[Path] = field(default_factory=list)  # landing files read
    skipped_files: list[Path] = field(default_factory=list)  # not *.jsonl / *.parquet
    rows_read: int = 0
    valid: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    late: int = 0  # valid records whose event date is before their arrival date
    duplicates: int = 0  # valid records not added: event_id already stored, or seen earlier in the run
    new_events: int = 0  # rows added to the store
    written: dict[date, int] = field(default_factory=dict)  # new rows per event date
    partition_rows: dict[date, int] = field(default_factory=dict)  # rows per event date after the run
    partitions: list[date] = field(default_factory=list)  # event-date partitions the run merged into
    rejects_files: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def interval(self) -> str:
        return interval_text(self.start, self.end)

    @property
    def records_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


def interval_text(start: date, end: date) -> str:
    return f"arrival dates [{start.isoformat()}, {end.isoformat()})"


def arrival_dates(start: date, end: date) -> list[date]:
    """The dates ``start <= d < end``."""
    return [start + timedelta(days=n) for n in range((end - start).days)]


def arrival_bounds(settings: Settings, arrival: date) -> TimeBounds:
    """Plausible event times of a record that arrived on ``arrival``: the floor .. end of that day + slack."""
    day_end = datetime.combine(arrival + timedelta(days=1), time(), tzinfo=timezone.utc)
    return TimeBounds.around(day_end, settings.event_time_floor, settings.max_future_seconds)


def find_landing_files(landing_dir: Path, start: date, end: date) -> tuple[dict[date, list[Path]], list[Path]]:
    """(landing files per arrival date, sorted by name; other files that are skipped).

    Raises :class:`IngestIntervalError` for an empty interval or missing arrival folders.
    Names starting with ``.`` or ``_`` (temporary files, markers) are ignored.
    """
    if start >= end:
        raise IngestIntervalError(
            f"{interval_text(start, end)} is empty: the end must be after the start (the end is exclusive; "
            f"for the single day {start.isoformat()} give the end {(start + timedelta(days=1)).isoformat()})"
        )
    days = arrival_dates(start, end)
    missing = [day for day in days if not arrival_dir(landing_dir, day).is_dir()]
    if missing:
        shown = ", ".join(day.isoformat() for day in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise IngestIntervalError(
            f"{interval_text(start, end)}: no landing folder for {len(missing)} of {len(days)} date(s): "
            f"{shown} (expected {landing_dir}/{ARRIVAL_KEY}=YYYY-MM-DD/); land the data first "
            f"(e.g. `freshcart simulate --landing`) or choose an interval that has been landed"
        )
    files: dict[date, list[Path]] = {}
    skipped: list[Path] = []
    for day in days:
        entries = sorted(p for p in arrival_dir(landing_dir, day).iterdir() if not p.name.startswith((".", "_")))
        files[day] = [p for p in entries if p.is_file() and p.suffix in LANDING_SUFFIXES]
        skipped += [p for p in entries if p not in files[day]]
    return files, skipped


def rejects_path(settings: Settings, arrival: date) -> Path:
    """The rejects file of one arrival date."""
    return settings.offline_dir / REJECTS_DIR / f"{ARRIVAL_KEY}={arrival.isoformat()}" / REJECTS_FILE


class _RejectsFile:
    """Rejects of one arrival date, streamed to a temporary file and put in place by :meth:`commit`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        self._writer: pq.ParquetWriter | None = None

    def write(self, rejects: pa.Table) -> None:
        if rejects.num_rows == 0:
            return
        if self._writer is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.tmp, REJECTS_SCHEMA, compression="zstd")
        self._writer.write_table(rejects)

    def commit(self) -> None:
        """Replace the arrival date's rejects file (an empty one when nothing was rejected)."""
        if self._writer is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(REJECTS_SCHEMA.empty_table(), self.tmp, compression="zstd")
        else:
            self._writer.close()
            self._writer = None
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.tmp.unlink(missing_ok=True)


class _Stager:
    """Valid rows buffered, then written to staging files by event date."""

    def __init__(self, root: Path, flush_rows: int) -> None:
        self.root = root
        self.flush_rows = flush_rows
        self.files: dict[date, list[Path]] = {}
        self._pending: list[pa.Table] = []
        self._rows = 0

    def add(self, valid: pa.Table) -> None:
        if valid.num_rows:
            self._pending.append(valid)
            self._rows += valid.num_rows
        if self._rows >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        for day, rows in storage.split_by_date(pa.concat_tables(self._pending)).items():
            paths = self.files.setdefault(day, [])
            path = storage.partition_dir(self.root, day) / f"part-{len(paths):06d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(rows, path, compression="lz4")
            paths.append(path)
        self._pending, self._rows = [], 0


def _merge(events_dir: Path, event_date: date, incoming: pa.Table) -> tuple[int, int]:
    """Upsert ``incoming`` into one event-date partition; (rows added, rows after).

    A partition that already holds every incoming ``event_id`` is left untouched
    (the upsert would rewrite the same content), which keeps re-runs cheap.
    """
    folder = storage.partition_dir(events_dir, event_date)
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if files:
        stored = pa.concat_tables([pq.read_table(f, columns=["event_id"]) for f in files])["event_id"]
        if pc.all(pc.is_in(incoming["event_id"], value_set=stored.combine_chunks())).as_py():
            return 0, len(stored)
    merged = storage.upsert_partition(events_dir, event_date, incoming)
    return merged.rows_after - merged.rows_before, merged.rows_after


def _count(report: IntervalReport, chunk: CheckedChunk, arrival: date) -> None:
    report.rows_read += chunk.rows
    report.valid += chunk.valid.num_rows
    report.rejected += chunk.rejects.num_rows
    report.reasons.update(chunk.rejects["reason"].to_pylist())
    if chunk.valid.num_rows:
        before = pc.less(storage.event_dates(chunk.valid), pa.scalar(arrival, pa.date32()))
        report.late += int(pc.sum(before).as_py() or 0)


def ingest_interval(
    settings: Settings,
    start: date,
    end: date,
    *,
    progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> IntervalReport:
    """Ingest the landing files of the arrival dates ``start <= d < end`` into the offline store.

    ``progress(files_done, files_total)`` is called after each file. Raises
    :class:`IngestIntervalError` when ``start >= end``, when an arrival date of
    the interval has no landing folder, or when the interval's files hold no
    records at all; nothing is written then.
    """
    started = timer.perf_counter()
    files, skipped = find_landing_files(settings.landing_dir, start, end)
    report = IntervalReport(
        start=start, end=end, landing_dir=settings.landing_dir, events_dir=settings.offline_events_dir,
        rejects_dir=settings.offline_dir / REJECTS_DIR, skipped_files=skipped,
    )
    total = sum(len(paths) for paths in files.values())
    staging = settings.offline_dir / "_staging" / uuid.uuid4().hex
    stager = _Stager(staging, chunk_rows)
    rejects = {day: _RejectsFile(rejects_path(settings, day)) for day in files}
    try:
        for day, paths in files.items():
            bounds = arrival_bounds(settings, day)
            for path in paths:
                source = f"{path.parent.name}/{path.name}"
                for chunk in read_landing_file(path, source, bounds, chunk_rows):
                    _count(report, chunk, day)
                    rejects[day].write(chunk.rejects)
                    stager.add(chunk.valid)
                report.files.append(path)
                if progress is not None:
                    progress(len(report.files), total)
        stager.flush()
        if report.rows_read == 0:
            found = f"the {total} landing file(s)" if total else "the arrival folders (no *.jsonl or *.parquet)"
            raise IngestIntervalError(
                f"{report.interval}: {found} under {settings.landing_dir} hold no records; "
                f"land data for these dates or choose another interval"
            )
        for event_date in sorted(stager.files):
            incoming = pa.concat_tables([pq.read_table(p, schema=ARROW_SCHEMA) for p in stager.files[event_date]])
            added, rows = _merge(settings.offline_events_dir, event_date, incoming)
            report.written[event_date], report.partition_rows[event_date] = added, rows
            report.partitions.append(event_date)
        for writer in rejects.values():
            writer.commit()
            report.rejects_files.append(writer.path)
    finally:
        for writer in rejects.values():
            writer.discard()
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):  # another run may be staging beside this one
            staging.parent.rmdir()
    report.new_events = sum(report.written.values())
    report.duplicates = report.valid - report.new_events
    report.seconds = timer.perf_counter() - started
    return report
