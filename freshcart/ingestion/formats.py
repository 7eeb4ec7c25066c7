"""Readers for the public event formats, streamed in chunks into raw Arrow batches.

Each reader yields *raw* tables with the canonical columns (text as published,
or typed for our own Parquet) plus ``_line`` (the source line or row number);
:mod:`freshcart.ingestion.file_ingest` validates them and writes the partitions.

- ``rees46``: the REES46 "eCommerce behavior data from multi category store" CSV.
- ``taobao``: the Alibaba Tianchi UserBehavior CSV (no header).
- ``native``: FreshCart's own canonical events as Parquet (a file or a folder) or JSON Lines.

A CSV row with too few or too many fields (a truncated line, an extra column), or a JSON Lines line
that is not a JSON object, is not a reason to refuse the file: it is handed to ``malformed`` (when
given) and skipped, and every other row is read.
Quote characters have no special meaning in either CSV format (neither publishes quoted fields), so a
stray ``"`` cannot join a line to the next one. A CSV line that is not UTF-8 text goes to
``malformed`` too (without it, the file is refused with a :class:`LoadError` that says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.dataset as ds

from freshcart.schema import FIELDS

REES46_HEADER = (
    "event_time", "event_type", "product_id", "category_id", "category_code",
    "brand", "price", "user_id", "user_session",
)
REES46_TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
TAOBAO_COLUMNS = ("user_id", "item_id", "category_id", "behavior", "timestamp")
TAOBAO_BEHAVIORS = {"pv": "view", "fav": "wishlist", "cart": "cart", "buy": "purchase"}
FORMATS = ("rees46", "taobao", "native")
DEFAULT_BLOCK_BYTES = 16 << 20
Malformed = Callable[[str, str], None]
"""Called for each row that cannot be split into fields: (what is wrong, the row's text)."""
JSONL_CHUNK_ROWS = 100_000


class LoadError(ValueError):
    """A source file cannot be read as the format it was given as."""


@dataclass(frozen=True)
class SourceSpec:
    """How the validator must read a format's raw columns."""

    time_format: str | None
    has_event_ids: bool


SPECS = {
    "rees46": SourceSpec(time_format=REES46_TIME_FORMAT, has_event_ids=False),
    "taobao": SourceSpec(time_format=None, has_event_ids=False),
    "native": SourceSpec(time_format="iso", has_event_ids=True),
}


def _parse_options(malformed: Optional[Malformed]) -> pv.ParseOptions:
    def handler(row: pv.InvalidRow) -> str:
        if malformed is None:
            return "error"
        malformed(f"{row.actual_columns} fields, expected {row.expected_columns}", row.text)
        return "skip"

    return pv.ParseOptions(quote_char=False, invalid_row_handler=handler)


def _all_text(names: tuple[str, ...]) -> pv.ConvertOptions:
    return pv.ConvertOptions(
        column_types={name: pa.string() for name in names}, strings_can_be_null=False
    )


class _Utf8Lines:
    """A binary file wrapper for the CSV reader that passes only UTF-8 lines on: a line that is not UTF-8 text
    goes to ``malformed`` and is passed on as an empty line (which the reader skips). Whole blocks are
    checked at once; line by line only in a block that holds a bad one."""

    def __init__(self, handle: BinaryIO, path: Path, progress: Callable[[int], None] | None,
                 malformed: Optional[Malformed]) -> None:
        self._handle = handle
        self._path = path
        self._progress = progress
        self._malformed = malformed
        self._carry = b""  # the start of a line whose end is not read yet
        self._ready = b""  # checked bytes not handed out yet
        self._line = 0  # lines checked so far
        self._eof = False
        self.closed = False

    def _check(self, block: bytes) -> bytes:
        try:
            block.decode("utf-8")
            self._line += block.count(b"\n")
            return block
        except UnicodeDecodeError:
            pass
        kept = []
        for line in block.splitlines(keepends=True):
            self._line += 1
            try:
                line.decode("utf-8")
                kept.append(line)
            except UnicodeDecodeError:
                if self._malformed is None:
                    raise LoadError(f"{self._path}: line {self._line} is not UTF-8 text; convert the file first, e.g. "
                                    f"`iconv -f latin1 -t utf-8 {self._path.name} > {self._path.stem}.utf8"
                                    f"{self._path.suffix}`") from None
                self._malformed(f"line {self._line}: not UTF-8 text", line.rstrip(b"\r\n").decode("utf-8", "replace"))
                kept.append(b"\n")
        return b"".join(kept)

    def read(self, size: int = -1) -> bytes:
        want = size if size and size > 0 else 1 << 62
        while len(self._ready) < want and not self._eof:
            data = self._handle.read(max(want - len(self._ready), 1 << 20) if size and size > 0 else -1)
            if self._progress is not None and data:
                self._progress(len(data))
            if not data:
                self._eof = True
                block, self._carry = self._carry, b""
            else:
                buffer = self._carry + data
                cut = buffer.rfind(b"\n") + 1
                block, self._carry = buffer[:cut], buffer[cut:]
            if block:
                self._ready += self._check(block)
        out, self._ready = self._ready[:want], self._ready[want:]
        return out

    def __getattr__(self, name: str):  # seekable(), tell(), ... come from the real file
        return getattr(self._handle, name)


def _with_lines(batch: pa.RecordBatch, first_line: int) -> pa.Table:
    table = pa.Table.from_batches([batch])
    lines = pa.array(np.arange(first_line, first_line + batch.num_rows, dtype=np.int64))
    return table.append_column("_line", lines)


def read_rees46(path: Path, block_bytes: int, progress: Callable[[int], None] | None,
                malformed: Optional[Malformed] = None) -> Iterator[pa.Table]:
    with open(path, "rb") as handle:
        header = handle.readline().decode("utf-8", "replace").strip().split(",")
        if tuple(header) != REES46_HEADER:
            raise LoadError(
                f"{path}: header {','.join(header)!r} is not the REES46 header "
                f"{','.join(REES46_HEADER)!r}; is this the right --format?"
            )
        handle.seek(0)
        reader = pv.open_csv(
            _Utf8Lines(handle, path, progress, malformed),
            read_options=pv.ReadOptions(block_size=block_bytes),
            parse_options=_parse_options(malformed),
            convert_options=_all_text(REES46_HEADER),
        )
        line = 2
        for batch in reader:
            yield _with_lines(batch, line)
            line += batch.num_rows


def _taobao_to_canonical(table: pa.Table) -> pa.Table:
    behavior = table["behavior"]
    known = pa.array(list(TAOBAO_BEHAVIORS))
    index = pc.index_in(behavior, value_set=known)
    mapped = pc.take(pa.array(list(TAOBAO_BEHAVIORS.values())), index)
    event_type = pc.if_else(pc.is_null(index), behavior, mapped)
    stamp = pc.utf8_trim_whitespace(table["timestamp"])
    is_int = pc.fill_null(pc.match_substring_regex(stamp, r"^[0-9]{1,12}$"), False)
    seconds = pc.cast(pc.if_else(is_int, stamp, pa.scalar(None, pa.string())), pa.int64())
    n = table.num_rows
    empty = pa.nulls(n, pa.string())
    return pa.table(
        {
            "event_time": seconds,
            "event_type": event_type,
            "product_id": table["item_id"],
            "category_id": table["category_id"],
            "category_code": empty,
            "brand": empty,
            "price": empty,
            "user_id": table["user_id"],
            "user_session": empty,
            "_source_time": table["timestamp"],
            "_line": table["_line"],
        }
    )


def read_taobao(path: Path, block_bytes: int, progress: Callable[[int], None] | None,
                malformed: Optional[Malformed] = None) -> Iterator[pa.Table]:
    with open(path, "rb") as handle:
        first = handle.readline().decode("utf-8", "replace").strip()
        if first and not first.split(",")[0].strip().isdigit():
            raise LoadError(
                f"{path}: first line {first[:80]!r} is not a Taobao UserBehavior row "
                f"({','.join(TAOBAO_COLUMNS)}, no header); is this the right --format?"
            )
        handle.seek(0)
        reader = pv.open_csv(
            _Utf8Lines(handle, path, progress, malformed),
            read_options=pv.ReadOptions(block_size=block_bytes, column_names=list(TAOBAO_COLUMNS)),
            parse_options=_parse_options(malformed),
            convert_options=_all_text(TAOBAO_COLUMNS),
        )
        line = 1
        for batch in reader:
            yield _taobao_to_canonical(_with_lines(batch, line))
            line += batch.num_rows


def read_native(path: Path, block_bytes: int, progress: Callable[[int], None] | None,
                malformed: Optional[Malformed] = None) -> Iterator[pa.Table]:
    if path.suffix in (".jsonl", ".ndjson", ".json"):
        yield from _read_jsonl(path, progress, malformed)
        return
    dataset = ds.dataset(path, format="parquet", partitioning="hive", exclude_invalid_files=True)
    missing = [name for name in FIELDS if name not in dataset.schema.names]
    if missing:
        raise LoadError(f"{path}: not canonical FreshCart events, columns missing: {', '.join(missing)}")
    row = 0
    for batch in dataset.to_batches(columns=list(FIELDS), batch_size=1 << 20):
        yield _with_lines(batch, row)
        row += batch.num_rows
        if progress is not None:
            progress(batch.nbytes)


_JSON = msgspec.json.Decoder()


def _cell(value: object) -> str | None:
    """A JSON value as the text the columnar validator checks (a number as its JSON text, so a float id stays
    a wrong type); null stays null."""
    if value is None or isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _jsonl_table(rows: list[dict], lines: list[int]) -> pa.Table:
    columns = {name: pa.array([_cell(row.get(name)) for row in rows], pa.string()) for name in FIELDS}
    columns["_line"] = pa.array(lines, pa.int64())
    return pa.table(columns)


def _read_jsonl(path: Path, progress: Callable[[int], None] | None,
                malformed: Optional[Malformed]) -> Iterator[pa.Table]:
    """Native JSON Lines, line by line: each object's fields as text; a line that is no JSON object goes to
    ``malformed`` (without it: a :class:`LoadError`); missing fields are null."""
    rows: list[dict] = []
    lines: list[int] = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if progress is not None:
                progress(len(line))
            if not line.strip():
                continue
            try:
                record = _JSON.decode(line)
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                record, problem = None, f"not JSON: {exc}"
            else:
                problem = "" if isinstance(record, dict) else f"a JSON {type(record).__name__}, not an object"
            if problem:
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if malformed is None:
                    raise LoadError(f"{path}: line {number} is {problem}")
                malformed(f"line {number}: {problem}", text)
                continue
            rows.append(record)
            lines.append(number)
            if len(rows) >= JSONL_CHUNK_ROWS:
                yield _jsonl_table(rows, lines)
                rows, lines = [], []
    if rows:
        yield _jsonl_table(rows, lines)


READERS = {"rees46": read_rees46, "taobao": read_taobao, "native": read_native}


def read_raw(
    path: Path, fmt: str, block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: Callable[[int], None] | None = None,
    malformed: Optional[Malformed] = None,
) -> Iterator[pa.Table]:
    """Raw chunks of ``path`` read as ``fmt``; errors name the file and what to do. CSV rows of the wrong
    width go to ``malformed`` (without it they end the read with a :class:`LoadError`)."""
    if fmt not in READERS:
        raise LoadError(f"--format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    if not path.exists():
        raise LoadError(f"{path}: no such file")
    try:
        yield from READERS[fmt](path, block_bytes, progress, malformed)
    except pa.ArrowInvalid as exc:
        if "invalid UTF8" in str(exc):
            raise LoadError(f"{path}: is not UTF-8 text ({exc}); convert it first, e.g. "
                            f"`iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`") from None
        raise LoadError(f"{path}: cannot be read as {fmt}: {exc}") from None
