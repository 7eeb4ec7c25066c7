"""The landing zone: raw records as they arrived, one folder per arrival date.

Layout under ``landing_dir`` (``settings.landing_dir``)::

    arrival_date=YYYY-MM-DD/events.parquet             canonical columns (simulator, loaders)
    arrival_date=YYYY-MM-DD/late-YYYY-MM-DD.parquet    events of an earlier event date that arrived late
    arrival_date=YYYY-MM-DD/<name>.jsonl               one Kafka message value per line

Records here are not validated: :mod:`freshcart.ingestion.interval_ingest` validates them
into the offline store. :func:`land_simulation` fills the zone from a simulator
output folder (for the demo and the tests); :func:`write_landing_jsonl` writes
raw message values (for the tests and the stream archive).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from freshcart.privacy.pseudonym import Pseudonymiser
from freshcart.schema import Event, format_time
from freshcart.storage import list_partitions, read_partition

ARRIVAL_KEY = "arrival_date"
ON_TIME_FILE = "events.parquet"
MAX_DAYS_LATE = 2


def arrival_dir(landing_dir: Path, arrival_date: date) -> Path:
    """The folder of the records that arrived on ``arrival_date``."""
    return Path(landing_dir) / f"{ARRIVAL_KEY}={arrival_date.isoformat()}"


def late_file_name(event_date: date) -> str:
    """The file, in a later arrival folder, of the late events of ``event_date``."""
    return f"late-{event_date.isoformat()}.parquet"


@dataclass
class LandingSummary:
    """What :func:`land_simulation` wrote."""

    landing_dir: Path
    events: int = 0
    late: int = 0
    arrival_dates: list[date] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def _write_parquet_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=256_000)
    os.replace(tmp, path)


def _late_mask(n: int, event_date: date, late_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(True for rows that arrive late, days late 1..MAX_DAYS_LATE), deterministic per seed and date."""
    rng = np.random.default_rng([seed, event_date.toordinal()])
    late = rng.random(n) < late_share
    delay = rng.integers(1, MAX_DAYS_LATE + 1, size=n)
    return late, delay


def land_simulation(sim_dir: Path, landing_dir: Path, late_share: float = 0.0, seed: int = 0,
                    pseudonymiser: Pseudonymiser | None = None) -> LandingSummary:
    """Copy a simulation's events into the landing zone, by arrival date.

    Each event date of ``sim_dir`` (the ``event_date=`` partitions; ``_truth`` is
    ignored) becomes ``arrival_date=<same date>/events.parquet``, except a
    deterministic ``late_share`` of its events, which arrive 1 or 2 days later in
    ``arrival_date=<later>/late-<event date>.parquet``. Every date from the first
    to the last arrival gets a folder (empty where nothing arrived). Re-landing the same
    simulation with the same arguments writes the same files; late files of an
    earlier landing of the same event date are removed first. With a ``pseudonymiser`` the user ids are
    replaced by their pseudonyms before anything is written.
    """
    if not 0.0 <= late_share <= 1.0:
        raise ValueError(f"late_share={late_share!r} is out of range; give a fraction between 0 and 1")
    started = time.perf_counter()
    sim_dir, landing_dir = Path(sim_dir), Path(landing_dir)
    days = list_partitions(sim_dir)
    if not days:
        raise FileNotFoundError(
            f"no event partitions (event_date=YYYY-MM-DD) under {sim_dir}; run `freshcart simulate` first"
        )
    summary = LandingSummary(landing_dir=landing_dir)
    arrivals: set[date] = set()
    for day in days:
        events = read_partition(sim_dir, day)
        if events is None:  # list_partitions only names folders with files
            continue
        if pseudonymiser is not None:
            events = pseudonymiser.table(events)
        for stale in landing_dir.glob(f"{ARRIVAL_KEY}=*/{late_file_name(day)}"):
            stale.unlink()
        late, delay = _late_mask(events.num_rows, day, late_share, seed)
        on_time_path = arrival_dir(landing_dir, day) / ON_TIME_FILE
        _write_parquet_atomic(events.filter(pa.array(~late)), on_time_path)
        summary.files.append(on_time_path)
        arrivals.add(day)
        for days_late in range(1, MAX_DAYS_LATE + 1):
            rows = events.filter(pa.array(late & (delay == days_late)))
            if rows.num_rows == 0:
                continue
            arrival = day + timedelta(days=days_late)
            path = arrival_dir(landing_dir, arrival) / late_file_name(day)
            _write_parquet_atomic(rows, path)
            summary.files.append(path)
            arrivals.add(arrival)
        summary.events += events.num_rows
        summary.late += int(late.sum())
    # A folder for every date in the span, empty where nothing arrived, so that any
    # interval inside it can be ingested (a missing folder means "not landed yet").
    span = range((max(arrivals) - min(arrivals)).days + 1)
    summary.arrival_dates = [min(arrivals) + timedelta(days=n) for n in span]
    for arrival in summary.arrival_dates:
        arrival_dir(landing_dir, arrival).mkdir(parents=True, exist_ok=True)
    summary.seconds = time.perf_counter() - started
    return summary


def _message_bytes(record: bytes | str | Mapping[str, Any] | Event, pseudonymiser: Pseudonymiser | None) -> bytes:
    """One record as a single line of message bytes (no line break inside)."""
    if pseudonymiser is not None:
        if isinstance(record, Event):
            record = dataclasses.replace(record, user_id=pseudonymiser.user_id(record.user_id))
        elif isinstance(record, Mapping):
            record = pseudonymiser.record(record)
        elif isinstance(record, (str, bytes)):
            record = pseudonymiser.message(None, record.encode() if isinstance(record, str) else record)[1]
    if isinstance(record, Event):
        value = record.to_json()
    elif isinstance(record, Mapping):
        row = {k: format_time(v) if isinstance(v, datetime) else v for k, v in record.items()}
        value = json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()
    elif isinstance(record, str):
        value = record.encode()
    elif isinstance(record, bytes):
        value = record
    else:
        raise TypeError(f"cannot land a {type(record).__name__}; give an Event, a dict, str or bytes")
    # A line break is whitespace to JSON, so replacing it keeps a valid message valid
    # and keeps a broken one on one line (one record, one reject).
    return value.replace(b"\r", b" ").replace(b"\n", b" ")


def write_landing_jsonl(
    records: Iterable[bytes | str | Mapping[str, Any] | Event],
    landing_dir: Path,
    arrival_date: date,
    name: str,
    pseudonymiser: Pseudonymiser | None = None,
) -> Path:
    """Write ``records`` as JSON Lines to ``arrival_date=<date>/<name>.jsonl`` (replacing it).

    Events and dicts are written as :meth:`Event.to_json` would; ``str``/``bytes``
    are raw message values, written as they are (malformed ones included), so
    the ingest sees exactly what the stream received. With a ``pseudonymiser`` each record's user id is
    replaced by its pseudonym (a raw value that is not a JSON object with a valid user id is written as it is).
    """
    file_name = name if name.endswith(".jsonl") else f"{name}.jsonl"
    if "/" in file_name or file_name.startswith((".", "_")):
        raise ValueError(f"name={name!r} must be a plain file name not starting with '.' or '_'")
    path = arrival_dir(landing_dir, arrival_date) / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{file_name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as handle:
        for record in records:
            handle.write(_message_bytes(record, pseudonymiser) + b"\n")
    os.replace(tmp, path)
    return path
