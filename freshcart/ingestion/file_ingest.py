"""`freshcart ingest-file`: a public-format file -> canonical events, Parquet by event date.

The file is streamed in chunks: each chunk is validated, given ids and sessions
where the source has none, and staged per date; at the end every touched date
partition is merged (one row per event_id) and replaced atomically. Memory is
bounded by one date's events, not by the file. Rejected rows go, with their
reason and source line, to ``<out>/_rejects/<file>.<format>.parquet``.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from freshcart import storage
from freshcart.ingestion.formats import DEFAULT_BLOCK_BYTES, SPECS, read_raw
from freshcart.schema import ARROW_SCHEMA, EVENT_TYPES, TimeBounds
from freshcart.ingestion.sessions import Sessionizer, row_hash_ids
from freshcart.ingestion.validation import validate_table
from freshcart.privacy.pseudonym import Pseudonymiser

MALFORMED_TEXT_LIMIT = 4096  # characters of a malformed row kept in the rejects file
REJECTS_SCHEMA = pa.schema(
    [("line", pa.int64()), ("reason", pa.string()), ("detail", pa.string()), ("record", pa.string())]
)


@dataclass
class IngestReport:
    """Counts of one ingest run."""

    source: Path
    fmt: str
    out_dir: Path
    rows_read: int = 0
    valid: int = 0
    rejected: int = 0
    repeated_in_file: int = 0
    already_present: int = 0
    reasons: Counter = field(default_factory=Counter)
    event_types: Counter = field(default_factory=Counter)
    partitions: list[date] = field(default_factory=list)
    rejects_path: Path | None = None
    seconds: float = 0.0

    @property
    def written(self) -> int:
        """Distinct new events this run added to the output."""
        return self.valid - self.repeated_in_file - self.already_present

    def funnel(self) -> dict[str, float]:
        """Share of each event type among this file's distinct valid events."""
        total = sum(self.event_types.values())
        return {kind: self.event_types.get(kind, 0) / total for kind in EVENT_TYPES} if total else {}


def _record_json(table: pa.Table) -> list[str]:
    raw = table.drop_columns([c for c in ("_line", "reason", "detail") if c in table.column_names])
    return [json.dumps(row, default=str) for row in raw.to_pylist()]


class _RejectsWriter:
    """Appends rejected rows to one Parquet file, created on the first reject."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: pq.ParquetWriter | None = None

    def write(self, rejects: pa.Table) -> None:
        if rejects.num_rows == 0:
            return
        self._open()
        table = pa.table(
            {
                "line": rejects["_line"],
                "reason": rejects["reason"],
                "detail": rejects["detail"],
                "record": pa.array(_record_json(rejects), pa.string()),
            },
            schema=REJECTS_SCHEMA,
        )
        self._writer.write_table(table)

    def write_malformed(self, rows: list[tuple[str, str]]) -> None:
        """Rows that could not be split into fields ((what is wrong, text)): reason ``malformed_row``, no line
        number (the CSV reader does not report it; a JSON Lines detail names it)."""
        if not rows:
            return
        self._open()
        self._writer.write_table(pa.table(
            {"line": pa.nulls(len(rows), pa.int64()), "reason": ["malformed_row"] * len(rows),
             "detail": [detail for detail, _ in rows],
             "record": [text[:MALFORMED_TEXT_LIMIT] for _, text in rows]},
            schema=REJECTS_SCHEMA))

    def _open(self) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, REJECTS_SCHEMA)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _add_event_ids(raw: pa.Table, fmt: str) -> pa.Table:
    """Event ids from a hash of the source row, where the format has none."""
    if SPECS[fmt].has_event_ids:
        return raw
    source_columns = [raw[name] for name in raw.column_names if name != "_line"]
    ids = row_hash_ids(source_columns, salt=fmt)
    return raw.append_column("event_id", ids)


def _fill_sessions(valid: pa.Table, sessionizer: Sessionizer) -> pa.Table:
    """Derive user_session where it is blank, from the inactivity gap."""
    sessions = valid["user_session"]
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(sessions), ""), True)
    if not pc.any(blank).as_py():
        return valid
    rows = valid.filter(blank)
    derived = sessionizer.assign(
        rows["user_id"].to_numpy(), rows["event_time"].cast(pa.int64()).to_numpy()
    )
    merged = np.asarray(sessions.to_pylist(), dtype=object)
    merged[np.asarray(blank.to_numpy(zero_copy_only=False), dtype=bool)] = derived.to_pylist()
    index = valid.column_names.index("user_session")
    return valid.set_column(index, "user_session", pa.array(merged, pa.string()))


def ingest_file(
    path: Path,
    fmt: str,
    out_dir: Path,
    bounds: TimeBounds,
    session_gap_seconds: int = 1800,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: Callable[[int], None] | None = None,
    pseudonymiser: Pseudonymiser | None = None,
) -> IngestReport:
    """Load ``path`` (in format ``fmt``) into date partitions under ``out_dir``.

    With a ``pseudonymiser`` every valid user id is replaced by its pseudonym as the rows are read, before
    event ids and sessions are derived from them, so neither the events nor the rejects hold a raw id.
    """
    started = time.perf_counter()
    spec = SPECS[fmt]
    report = IngestReport(source=path, fmt=fmt, out_dir=out_dir)
    staging = out_dir / "_staging" / uuid.uuid4().hex
    rejects = _RejectsWriter(out_dir / "_rejects" / f"{path.name}.{fmt}.parquet")
    sessionizer = Sessionizer(session_gap_seconds, prefix=fmt)
    # Blank sessions are derived from the inactivity gap; ids from the row when the format has none.
    derived = ("user_session",) if spec.has_event_ids else ("user_session", "event_id")
    staged: dict[date, list[Path]] = {}
    malformed: list[tuple[str, str]] = []

    def drain_malformed() -> None:
        if pseudonymiser is not None:  # the row's text may hold a raw id: keep only the counts
            malformed[:] = [(detail, "(withheld: pseudonymisation is on)") for detail, _ in malformed]
        rejects.write_malformed(malformed)
        report.rows_read += len(malformed)
        report.rejected += len(malformed)
        report.reasons.update({"malformed_row": len(malformed)} if malformed else {})
        malformed.clear()

    try:
        for chunk_no, raw in enumerate(read_raw(path, fmt, block_bytes, progress,
                                                lambda *row: malformed.append(row))):
            drain_malformed()
            report.rows_read += raw.num_rows
            if pseudonymiser is not None:
                raw = pseudonymiser.table(raw)
            raw = _add_event_ids(raw, fmt)
            checked = validate_table(raw, bounds, spec.time_format, derived=derived)
            rejects.write(checked.rejects)
            report.rejected += checked.rejects.num_rows
            report.reasons.update(checked.rejects["reason"].to_pylist())
            valid = _fill_sessions(checked.valid, sessionizer)
            report.valid += valid.num_rows
            for day, rows in storage.split_by_date(valid).items():
                part = storage.partition_dir(staging, day) / f"part-{chunk_no:06d}.parquet"
                part.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(rows.cast(ARROW_SCHEMA), part)
                staged.setdefault(day, []).append(part)
        drain_malformed()
        rejects.close()
        for day in sorted(staged):
            incoming = pa.concat_tables([pq.read_table(p, schema=ARROW_SCHEMA) for p in staged[day]])
            unique = storage.dedupe_sorted(incoming)
            report.repeated_in_file += incoming.num_rows - unique.num_rows
            report.event_types.update(
                dict(zip(*np.unique(unique["event_type"].to_numpy(zero_copy_only=False), return_counts=True)))
            )
            merged = storage.upsert_partition(out_dir, day, unique)
            report.already_present += merged.duplicates
            report.partitions.append(day)
    finally:
        rejects.close()
        shutil.rmtree(staging, ignore_errors=True)
        if (out_dir / "_staging").is_dir() and not any((out_dir / "_staging").iterdir()):
            (out_dir / "_staging").rmdir()
    report.rejects_path = rejects.path if report.rejected else None
    report.event_types = Counter({str(k): int(v) for k, v in report.event_types.items()})
    report.seconds = time.perf_counter() - started
    return report
