"""Readers of landing-zone files, streamed in chunks, each chunk validated.

Every reader yields :class:`CheckedChunk` objects: the valid rows as canonical
events, and the rejected records with their source line, reason, detail and
raw text. Validation is the project's single implementation:

- ``*.jsonl``: one Kafka message value per line, checked by
  :func:`freshcart.schema.event_from_json` exactly as the stream consumer does
  (a line above ``MAX_MESSAGE_BYTES`` is ``oversized``);
- ``*.parquet``: canonical columns, read row group by row group and checked by
  :func:`freshcart.ingestion.validation.validate_table`.

A file that cannot be read at all (corrupt Parquet, a column of an unusable
type) ends in one reject with the reason ``unreadable_file``; the rows before
the failure are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from freshcart.schema import (
    ARROW_SCHEMA,
    FIELDS,
    MAX_MESSAGE_BYTES,
    Event,
    Rejection,
    TimeBounds,
    event_from_json,
    events_to_table,
    format_time,
)
from freshcart.ingestion.validation import validate_table

# Reasons only the offline ingest gives, beside freshcart.schema.REASONS.
OFFLINE_REASONS: dict[str, str] = {
    "unreadable_file": "the file cannot be read as canonical events (corrupt, or a column of an unusable type)",
}
LANDING_SUFFIXES = (".jsonl", ".parquet")
REJECT_TEXT_LIMIT = 4096  # characters of an oversized record kept in the rejects file
CHUNK_BYTES = 64 << 20  # a JSON Lines chunk holds at most about this many bytes of records

REJECTS_SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string()),  # relative to the landing dir
        pa.field("line", pa.int64()),  # JSONL line or Parquet row, from 1; null for a whole file
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("record", pa.string()),  # the raw record text
    ]
)


@dataclass
class CheckedChunk:
    """One validated chunk of a landing file."""

    valid: pa.Table  # canonical schema
    rejects: pa.Table  # REJECTS_SCHEMA
    rows: int  # records read (valid + rejected)


def _rejects_table(source: str, rows: Sequence[tuple[int | None, str, str, str]]) -> pa.Table:
    lines, reasons, details, records = (list(column) for column in zip(*rows)) if rows else ([], [], [], [])
    return pa.table(
        {"source_file": [source] * len(rows), "line": lines, "reason": reasons, "detail": details,
         "record": records},
        schema=REJECTS_SCHEMA,
    )


def _iter_lines(handle: BinaryIO) -> Iterator[tuple[int, bytes, int]]:
    """(line number from 1, content without the line break, content size in bytes).

    Memory stays bounded: of a line above ``MAX_MESSAGE_BYTES`` only the first
    ``MAX_MESSAGE_BYTES + 1`` bytes are returned, the rest is counted and skipped.
    """
    number = 0
    while True:
        head = handle.readline(MAX_MESSAGE_BYTES + 1)
        if not head:
            return
        number += 1
        size, tail = len(head), head
        while not tail.endswith(b"\n"):
            tail = handle.readline(1 << 20)
            if not tail:
                break
            size += len(tail)
        size -= 2 if tail.endswith(b"\r\n") else 1 if tail.endswith(b"\n") else 0
        yield number, head.rstrip(b"\r\n"), size


def _jsonl_chunk(source: str, lines: list[tuple[int, bytes, int]], bounds: TimeBounds) -> CheckedChunk:
    events: list[Event] = []
    rejected: list[tuple[int, str, str, str]] = []
    for number, payload, size in lines:
        if size > MAX_MESSAGE_BYTES:
            outcome: Event | Rejection = Rejection(
                "oversized", f"{size:,} bytes > {MAX_MESSAGE_BYTES:,}; record cut to {REJECT_TEXT_LIMIT} characters"
            )
            text = payload[:REJECT_TEXT_LIMIT].decode("utf-8", "replace")
        else:
            outcome = event_from_json(payload, bounds)
            text = payload.decode("utf-8", "replace")
        if isinstance(outcome, Event):
            events.append(outcome)
        else:
            rejected.append((number, outcome.reason, outcome.detail, text))
    return CheckedChunk(events_to_table(events), _rejects_table(source, rejected), len(lines))


def read_jsonl(path: Path, source: str, bounds: TimeBounds, chunk_rows: int) -> Iterator[CheckedChunk]:
    """Validated chunks of a JSON Lines file (at most ``chunk_rows`` lines or about
    ``CHUNK_BYTES`` each); blank lines are skipped."""
    with open(path, "rb") as handle:
        lines: list[tuple[int, bytes, int]] = []
        held = 0
        for number, payload, size in _iter_lines(handle):
            if size <= MAX_MESSAGE_BYTES and not payload.strip():
                continue
            lines.append((number, payload, size))
            held += len(payload)
            if len(lines) >= chunk_rows or held >= CHUNK_BYTES:
                yield _jsonl_chunk(source, lines, bounds)
                lines, held = [], 0
        if lines:
            yield _jsonl_chunk(source, lines, bounds)


def _json_value(value: Any) -> Any:
    return format_time(value) if isinstance(value, datetime) else str(value)


def _parquet_chunk(source: str, batch: pa.RecordBatch, first_row: int, bounds: TimeBounds) -> CheckedChunk:
    raw = pa.Table.from_batches([batch])
    for name in FIELDS:
        if name not in raw.column_names:
            raw = raw.append_column(name, pa.nulls(raw.num_rows, ARROW_SCHEMA.field(name).type))
    raw = raw.select(list(FIELDS)).append_column(
        "_line", pa.array(range(first_row, first_row + raw.num_rows), pa.int64())
    )
    checked = validate_table(raw, bounds, time_format="iso")
    bad = checked.rejects
    records = [json.dumps(row, default=_json_value) for row in bad.select(list(FIELDS)).to_pylist()]
    rejects = pa.table(
        {"source_file": [source] * bad.num_rows, "line": bad["_line"], "reason": bad["reason"],
         "detail": bad["detail"], "record": records},
        schema=REJECTS_SCHEMA,
    )
    return CheckedChunk(checked.valid.cast(ARROW_SCHEMA), rejects, raw.num_rows)


def read_parquet(path: Path, source: str, bounds: TimeBounds, chunk_rows: int) -> Iterator[CheckedChunk]:
    """Validated chunks of a Parquet file, read in batches of at most ``chunk_rows`` rows."""
    parquet = pq.ParquetFile(path)
    present = [name for name in FIELDS if name in parquet.schema_arrow.names]
    first_row = 1
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=present):
        yield _parquet_chunk(source, batch, first_row, bounds)
        first_row += batch.num_rows


def read_landing_file(path: Path, source: str, bounds: TimeBounds, chunk_rows: int) -> Iterator[CheckedChunk]:
    """Validated chunks of one landing file; an unreadable file ends in one ``unreadable_file`` reject."""
    reader = read_jsonl if path.suffix == ".jsonl" else read_parquet
    records = 0
    try:
        for chunk in reader(path, source, bounds, chunk_rows):
            records += chunk.rows
            yield chunk
    except (OSError, pa.ArrowException) as exc:
        detail = f"{type(exc).__name__}: {exc}; {records:,} records were read before the failure"
        yield CheckedChunk(
            ARROW_SCHEMA.empty_table(),
            _rejects_table(source, [(None, "unreadable_file", detail[:REJECT_TEXT_LIMIT], "")]),
            1,
        )
