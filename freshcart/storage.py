"""Canonical events on disk: Parquet partitioned by event date (``event_date=YYYY-MM-DD``).

Writing is an upsert per date partition: new rows are merged with what the
partition holds, duplicates of an ``event_id`` are kept once, and the partition
is replaced atomically. Re-writing the same events therefore changes nothing.
Folders starting with ``_`` (rejects, truth) sit beside the partitions and are
ignored by dataset readers.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from freshcart.schema import ARROW_SCHEMA

PARTITION_KEY = "event_date"
DATA_FILE = "data.parquet"


def partition_dir(root: Path, day: date) -> Path:
    return root / f"{PARTITION_KEY}={day.isoformat()}"


def event_dates(table: pa.Table, column: str = "event_time") -> pa.Array:
    """The UTC calendar date of every row."""
    return pc.cast(pc.cast(table[column], pa.timestamp("us", tz="UTC")), pa.date32())


def split_by_date(table: pa.Table, column: str = "event_time") -> dict[date, pa.Table]:
    """Rows grouped by the UTC date of ``column``."""
    if table.num_rows == 0:
        return {}
    days = event_dates(table, column)
    day_numbers = days.cast(pa.int32()).to_numpy()
    order = np.argsort(day_numbers, kind="stable")
    sorted_days = day_numbers[order]
    bounds = np.flatnonzero(np.diff(sorted_days)) + 1
    groups: dict[date, pa.Table] = {}
    for chunk in np.split(order, bounds):
        day = date.fromordinal(date(1970, 1, 1).toordinal() + int(day_numbers[chunk[0]]))
        groups[day] = table.take(pa.array(chunk))
    return groups


@dataclass
class MergeResult:
    """What an upsert into one partition did."""

    rows_before: int
    rows_added: int
    rows_after: int

    @property
    def duplicates(self) -> int:
        """Incoming rows whose ``event_id`` was already there (in the partition or the input)."""
        return self.rows_before + self.rows_added - self.rows_after


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=256_000)
    os.replace(tmp, path)


def dedupe_sorted(table: pa.Table, key: str = "event_id", time: str = "event_time") -> pa.Table:
    """Rows sorted by (time, key) with each key kept once (the earliest)."""
    if table.num_rows == 0:
        return table
    table = table.sort_by([(time, "ascending"), (key, "ascending")])
    keys = table[key].combine_chunks()
    # Keep the first occurrence of each key: unique() preserves first-seen order.
    _, first = np.unique(keys.to_numpy(zero_copy_only=False), return_index=True)
    if len(first) == table.num_rows:
        return table
    return table.take(pa.array(np.sort(first)))


def upsert_partition(
    root: Path, day: date, rows: pa.Table, *, schema: pa.Schema = ARROW_SCHEMA, key: str = "event_id"
) -> MergeResult:
    """Merge ``rows`` into the partition of ``day``, keeping one row per ``key``."""
    target = partition_dir(root, day) / DATA_FILE
    rows = rows.select(schema.names).cast(schema)
    existing = read_partition(root, day, schema=schema)
    before = existing.num_rows if existing is not None else 0
    merged = pa.concat_tables([existing, rows]) if existing is not None else rows
    merged = dedupe_sorted(merged, key=key)
    _write_atomic(merged, target)
    return MergeResult(rows_before=before, rows_added=rows.num_rows, rows_after=merged.num_rows)


def read_partition(root: Path, day: date, *, schema: pa.Schema = ARROW_SCHEMA) -> pa.Table | None:
    """The rows of one date partition, or None when it does not exist."""
    folder = partition_dir(root, day)
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f, schema=schema) for f in files])


def list_partitions(root: Path) -> list[date]:
    """Dates that have a partition under ``root``, ascending."""
    if not root.is_dir():
        return []
    days = []
    for folder in root.glob(f"{PARTITION_KEY}=*"):
        try:
            days.append(date.fromisoformat(folder.name.split("=", 1)[1]))
        except ValueError:
            continue
    return sorted(days)


def read_events(root: Path, columns: list[str] | None = None) -> pa.Table:
    """All events under ``root`` (every partition), in the canonical schema."""
    if not list_partitions(root):
        raise FileNotFoundError(f"no event partitions ({PARTITION_KEY}=YYYY-MM-DD) under {root}")
    dataset = ds.dataset(root, format="parquet", schema=ARROW_SCHEMA, partitioning="hive")
    return dataset.to_table(columns=columns)


def remove_tree(root: Path) -> None:
    """Delete an output folder (used by ``--overwrite``)."""
    if root.exists():
        shutil.rmtree(root)
