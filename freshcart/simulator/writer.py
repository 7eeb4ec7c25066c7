"""Write a simulation to date-partitioned Parquet: events, and the truth beside them.

Layout under ``out_dir``::

    event_date=YYYY-MM-DD/data.parquet           canonical events (freshcart.storage layout)
    _truth/event_date=YYYY-MM-DD/data.parquet    event_id, purchase_proba of the views

A new partition is written directly (atomically); an existing one is merged
with :func:`freshcart.storage.upsert_partition`, so re-running the same config
changes nothing. Writing runs in a background thread while the next day is
generated, which uses the second core.
"""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from freshcart.schema import EVENT_TYPES
from freshcart.simulator.batches import TRUTH_SCHEMA, DayBatch, simulate_days
from freshcart.simulator.config import SimulationConfig
from freshcart.storage import (
    DATA_FILE,
    partition_dir,
    read_events,
    read_partition,
    upsert_partition,
)

TRUTH_DIR = "_truth"


@dataclass
class SimulationSummary:
    """What :func:`write_simulation` produced."""

    total: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {name: 0 for name in EVENT_TYPES})
    days: list[date] = field(default_factory=list)  # every partition written (spill dates included)
    users: int = 0  # distinct users (bots included) in the events
    products: int = 0  # distinct products in the events
    events_dir: Path = Path()
    truth_dir: Path = Path()
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0


def _write_new(table: pa.Table, path: Path) -> None:
    """Write a partition file atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=256_000)
    os.replace(tmp, path)


def _merge_truth(root: Path, day: date, truth: pa.Table) -> None:
    """Merge truth rows into an existing partition, one row per event_id (existing rows win)."""
    existing = read_partition(root, day, schema=TRUTH_SCHEMA)
    merged = pa.concat_tables([existing, truth]) if existing is not None else truth
    _, first = np.unique(merged["event_id"].to_numpy(zero_copy_only=False), return_index=True)
    _write_new(merged.take(pa.array(np.sort(first))), partition_dir(root, day) / DATA_FILE)


def read_simulation(out_dir: Path, columns: list[str] | None = None) -> tuple[pa.Table, pa.Table]:
    """The events (all partitions, optionally some columns) and the truth under ``out_dir``."""
    out_dir = Path(out_dir)
    truth_dir = out_dir / TRUTH_DIR
    if not truth_dir.is_dir():
        raise FileNotFoundError(f"no truth under {truth_dir}; write it with write_simulation")
    truth = ds.dataset(truth_dir, format="parquet", schema=TRUTH_SCHEMA).to_table()
    return read_events(out_dir, columns=columns), truth


def write_day(batch: DayBatch, events_dir: Path, truth_dir: Path) -> None:
    """Write (or merge) one day's events and truth partitions."""
    if (partition_dir(events_dir, batch.day) / DATA_FILE).exists():
        upsert_partition(events_dir, batch.day, batch.events)
    else:
        _write_new(batch.events, partition_dir(events_dir, batch.day) / DATA_FILE)
    if (partition_dir(truth_dir, batch.day) / DATA_FILE).exists():
        _merge_truth(truth_dir, batch.day, batch.truth)
    else:
        _write_new(batch.truth, partition_dir(truth_dir, batch.day) / DATA_FILE)


def write_simulation(
    config: SimulationConfig, out_dir: Path, progress: Callable[[int], None] | None = None
) -> SimulationSummary:
    """Simulate ``config`` and write it under ``out_dir``.

    ``progress`` is called with 1 each time one of the ``config.days`` simulated
    days is written (an increment, as progress bars expect; the few events that
    spill past the last day are written before the function returns).
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    summary = SimulationSummary(events_dir=out_dir, truth_dir=out_dir / TRUTH_DIR)
    pending: tuple[Future[None], int] | None = None
    users: list[np.ndarray] = []
    products: list[np.ndarray] = []

    def finish(job: tuple[Future[None], int] | None) -> None:
        if job is not None:
            job[0].result()
            if progress is not None and job[1]:
                progress(job[1])

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="freshcart-writer") as pool:
        for batch in simulate_days(config):
            counts = batch.events["event_type"].value_counts()
            names, numbers = counts.field("values").to_pylist(), counts.field("counts").to_pylist()
            for name, count in zip(names, numbers):
                summary.counts[name] += count
            summary.total += batch.events.num_rows
            summary.days.append(batch.day)
            users.append(pc.unique(batch.events["user_id"]).to_numpy())
            products.append(pc.unique(batch.events["product_id"]).to_numpy())
            finish(pending)
            job = pool.submit(write_day, batch, summary.events_dir, summary.truth_dir)
            pending = (job, 1 if batch.day < config.end.date() else 0)
        finish(pending)
    summary.users = int(np.unique(np.concatenate(users)).shape[0]) if users else 0
    summary.products = int(np.unique(np.concatenate(products)).shape[0]) if products else 0
    summary.seconds = time.perf_counter() - started
    return summary
