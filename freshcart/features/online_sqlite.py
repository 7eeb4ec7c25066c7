"""Feature rows straight into Feast's SQLite online store, byte for byte as Feast writes them.

Feast's SQLite store keeps one row per (entity key, feature) in ``<project>_<view>``:
``entity_key`` (``serialize_entity_key``), ``feature_name``, ``value`` (a serialised
``ValueProto``), ``value_text`` (``str`` of a number, else NULL), ``event_ts`` (Unix
seconds, via the adapter Feast registers) and ``created_ts``. Its own writer builds
a protobuf and binds six parameters per row from Python; here whole columns are
encoded with numpy into a few large buffers, and one ``INSERT ... SELECT`` per chunk
slices them apart inside SQLite, with Feast's upsert, except that a row older than the
one stored (``event_ts``) does not replace it, as in Feast's Redis store: a back-fill of an
older interval never takes the online store back in time. Every column is checked against
Feast's own encoding on a sample first and falls back to it if they ever differ.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import numpy as np
import pyarrow as pa
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.infra.online_stores.sqlite import adapt_datetime_epoch
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Int64List
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000  # entity rows per INSERT statement (bounds the buffers' memory)
SAMPLE = 256  # cells per column compared with Feast's encoding before writing
_INDEX = (12, 6)  # ASCII digits of a cell's (start, length) in the value and text buffers
_TS_DIGITS = 12
_TAG_INT64 = ValueProto(int64_val=0).SerializeToString()[0]
_TAG_DOUBLE = ValueProto(double_val=0.0).SerializeToString()[0]
_TAG_INT64_LIST = ValueProto(int64_list_val=Int64List()).SerializeToString()[0]
_TAG_PACKED = Int64List(val=[1]).SerializeToString()[0]
_END = object()
T = TypeVar("T")


@dataclass
class Column:
    """One feature's cells: value bytes and text bytes in flat buffers, addressed per row."""

    values: bytes
    value_start: np.ndarray
    value_len: np.ndarray
    texts: bytes
    text_start: np.ndarray
    text_len: np.ndarray  # 0 = NULL value_text


def _varint_sizes(u: np.ndarray) -> np.ndarray:
    sizes = np.ones(len(u), np.int64)
    for j in range(1, 10):
        sizes += u >= np.uint64(1 << (7 * j))
    return sizes


def _put_varints(out: np.ndarray, pos: np.ndarray, u: np.ndarray, sizes: np.ndarray) -> None:
    for j in range(int(sizes.max(initial=0))):
        m = sizes > j
        byte = (u[m] >> np.uint64(7 * j)) & np.uint64(0x7F)
        out[pos[m] + j] = (byte | np.where(sizes[m] > j + 1, 0x80, 0).astype(np.uint64)).astype(np.uint8)


def _texts(unique: list[object]) -> tuple[bytes, np.ndarray, np.ndarray]:
    encoded = [str(x).encode() for x in unique]
    lengths = np.fromiter((len(e) for e in encoded), np.int64, len(encoded))
    return b"".join(encoded), np.cumsum(lengths) - lengths, lengths


def _scalar_column(arr: pa.Array, double: bool) -> Column:
    """int64 / float64: each distinct value (bit pattern) encoded once; cells point at it."""
    n = len(arr)
    valid = ~np.asarray(arr.is_null())
    raw = arr.fill_null(0).to_numpy(zero_copy_only=False)  # exact: int64 stays int64
    if double:
        valid &= ~np.isnan(raw)  # Feast stores NaN as null
        raw = np.where(valid, raw, 0.0)
    bits = raw.astype(np.float64 if double else np.int64).view(np.int64)
    uniq, inverse = np.unique(bits[valid], return_inverse=True)
    if double:
        width = np.full(len(uniq), 9, np.int64)
        buf = np.empty((len(uniq), 9), np.uint8)
        buf[:, 0] = _TAG_DOUBLE
        buf[:, 1:] = uniq.astype("<i8").view(np.uint8).reshape(-1, 8)
        values, vstart = buf.tobytes(), np.arange(len(uniq), dtype=np.int64) * 9
        texts = _texts(uniq.view(np.float64).tolist())
    else:
        u = uniq.view(np.uint64)
        width = 1 + _varint_sizes(u)
        vstart = np.cumsum(width) - width
        out = np.empty(int(width.sum()), np.uint8)
        out[vstart] = _TAG_INT64
        _put_varints(out, vstart + 1, u, width - 1)
        values = out.tobytes()
        texts = _texts(uniq.tolist())
    col = Column(values, np.zeros(n, np.int64), np.zeros(n, np.int64), texts[0],
                 np.zeros(n, np.int64), np.zeros(n, np.int64))
    col.value_start[valid], col.value_len[valid] = vstart[inverse], width[inverse]
    col.text_start[valid], col.text_len[valid] = texts[1][inverse], texts[2][inverse]
    return col


def _int64_list_column(arr: pa.ListArray) -> Column:
    """list<int64>: ValueProto.int64_list_val with packed varints, built for all rows at once."""
    n = len(arr)
    valid = ~np.asarray(arr.is_null())
    offsets = arr.offsets.to_numpy().astype(np.int64)
    elems = arr.values.to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64)
    elem_size = _varint_sizes(elems)
    cum = np.concatenate([[0], np.cumsum(elem_size)])
    packed = cum[offsets[1:]] - cum[offsets[:-1]]
    inner = np.where(packed > 0, 1 + _varint_sizes(packed.astype(np.uint64)) + packed, 0)
    total = np.where(valid, 1 + _varint_sizes(inner.astype(np.uint64)) + inner, 0)
    start = np.cumsum(total) - total
    out = np.zeros(int(total.sum()), np.uint8)
    out[start[valid]] = _TAG_INT64_LIST
    inner_size = _varint_sizes(inner.astype(np.uint64))
    _put_varints(out, start[valid] + 1, inner[valid].astype(np.uint64), inner_size[valid])
    has = valid & (packed > 0)
    p = start + 1 + inner_size
    out[p[has]] = _TAG_PACKED
    packed_size = _varint_sizes(packed.astype(np.uint64))
    _put_varints(out, p[has] + 1, packed[has].astype(np.uint64), packed_size[has])
    lengths = offsets[1:] - offsets[:-1]
    row_of = np.repeat(np.arange(n), lengths)
    first = p + 1 + packed_size
    pos = first[row_of] + (cum[:-1][offsets[0]:offsets[-1]] - cum[offsets[:-1]][row_of])
    keep = valid[row_of]
    _put_varints(out, pos[keep], elems[offsets[0]:offsets[-1]][keep], elem_size[offsets[0]:offsets[-1]][keep])
    zeros = np.zeros(n, np.int64)
    return Column(out.tobytes(), start, total, b"", zeros, zeros.copy())


def _feast_column(arr: pa.Array, value_type: ValueType) -> Column:
    """Any type, exactly as Feast encodes it (``python_values_to_proto_values``), one value at a time."""
    protos = python_values_to_proto_values(arr.to_numpy(zero_copy_only=False), value_type)
    values = [p.SerializeToString() for p in protos]
    texts = [(extract_text_and_num(p, False)[0] or "").encode() for p in protos]
    vlen = np.fromiter(map(len, values), np.int64, len(values))
    tlen = np.fromiter(map(len, texts), np.int64, len(texts))
    return Column(b"".join(values), np.cumsum(vlen) - vlen, vlen, b"".join(texts), np.cumsum(tlen) - tlen, tlen)


def _cell(col: Column, i: int) -> tuple[bytes, str | None]:
    value = col.values[col.value_start[i]:col.value_start[i] + col.value_len[i]]
    text = col.texts[col.text_start[i]:col.text_start[i] + col.text_len[i]].decode()
    return value, text or None


def encode_column(arr: pa.Array, value_type: ValueType, name: str = "?", check: bool = True) -> Column:
    """Encode a column; fast for int64, float64 and list<int64>, checked against Feast on a sample
    (unless ``check`` is false: for a caller that checked the same column before)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if pa.types.is_int64(arr.type) and value_type == ValueType.INT64:
        col = _scalar_column(arr, double=False)
    elif pa.types.is_float64(arr.type) and value_type == ValueType.DOUBLE:
        col = _scalar_column(arr, double=True)
    elif pa.types.is_list(arr.type) and pa.types.is_int64(arr.type.value_type) \
            and value_type == ValueType.INT64_LIST and arr.values.null_count == 0:
        col = _int64_list_column(arr)
    else:
        return _feast_column(arr, value_type)
    if not check:
        return col
    sample = np.unique(np.concatenate([np.arange(min(len(arr), SAMPLE)),
                                       np.linspace(0, len(arr) - 1, min(len(arr), SAMPLE)).astype(np.int64)]))
    reference = _feast_column(arr.take(pa.array(sample)), value_type)
    if any(_cell(col, int(i)) != _cell(reference, k) for k, i in enumerate(sample)):
        log.warning("feature %s: fast encoding differs from Feast's; using Feast's encoding", name)
        return _feast_column(arr, value_type)
    return col


def entity_keys(keys: dict[str, np.ndarray], version: int) -> np.ndarray:
    """Serialised int64 entity keys as an (n, width) byte matrix, as ``serialize_entity_key`` writes them."""
    names = sorted(keys)
    n = len(keys[names[0]])
    if n == 0:
        return np.empty((0, 0), np.uint8)
    first = serialize_entity_key(
        EntityKeyProto(join_keys=names, entity_values=[ValueProto(int64_val=int(keys[k][0])) for k in names]), version)
    prefix = first[:len(first) - 16 * len(names)]  # count and key names; then (type, size, value) per key
    out = np.empty((n, len(first)), np.uint8)
    out[:, :len(prefix)] = np.frombuffer(prefix, np.uint8)
    for j, key in enumerate(names):
        at = len(prefix) + 16 * j
        out[:, at:at + 8] = np.frombuffer(first[at:at + 8], np.uint8)  # value type and size
        out[:, at + 8:at + 16] = keys[key].astype("<i8").view(np.uint8).reshape(n, 8)
    if out[0].tobytes() != first:
        raise RuntimeError("entity key encoding differs from Feast's serialize_entity_key")
    return out


def epoch_seconds(micros: np.ndarray) -> np.ndarray:
    """``event_ts`` as Feast's SQLite adapter stores it: ``int(naive_utc.timestamp())``."""
    seconds = np.where(micros < 0, -(-micros // 1_000_000), micros // 1_000_000)
    probe = datetime(1970, 1, 1) + timedelta(microseconds=int(micros[0])) if len(micros) else None
    if probe is not None and adapt_datetime_epoch(probe) != seconds[0]:  # local time zone is not UTC
        seconds = np.array([adapt_datetime_epoch(datetime(1970, 1, 1) + timedelta(microseconds=int(m)))
                            for m in micros.tolist()], np.int64)
    return seconds


_DIGITS3 = np.array([list(f"{i:03d}".encode()) for i in range(1000)], np.uint8)  # "000" .. "999"


def _digits(x: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded ASCII decimal digits of non-negative ints, ``width`` (a multiple of 3) per value."""
    powers = 1000 ** np.arange(width // 3 - 1, -1, -1, dtype=np.int64)
    return _DIGITS3[(x[..., None] // powers) % 1000].reshape(*x.shape, width)


def prefetched(items: Iterable[T]) -> Iterator[T]:
    """The items of ``items`` in order, each next one computed in a background thread meanwhile.

    SQLite and numpy release the GIL, so preparing the next chunk overlaps with
    executing the current one on a second core.
    """
    source = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="freshcart-prefetch") as pool:
        pending = pool.submit(next, source, _END)
        while (item := pending.result()) is not _END:
            pending = pool.submit(next, source, _END)
            yield item


def _index(start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """(n, 18) ASCII digits: 12 for where a cell starts in its buffer, 6 for its length."""
    if len(length) and (length.max() >= 10 ** _INDEX[1] or start.max() >= 10 ** _INDEX[0]):
        raise ValueError("a feature value is too large for the fast SQLite writer")
    return np.concatenate([_digits(start, _INDEX[0]), _digits(length, _INDEX[1])], axis=1)


def write_rows(conn: sqlite3.Connection, table: str, keys: np.ndarray, seconds: np.ndarray,
               columns: dict[str, Column]) -> int:
    """Upsert rows (keys sorted by bytes) into a Feast SQLite table; the caller commits. Returns cells.

    With several chunks, the next chunk's statement is prepared while SQLite executes the current one.
    """
    statements = upsert_statements(table, keys, seconds, columns)
    for sql, params in prefetched(statements) if len(keys) > CHUNK_ROWS else statements:
        conn.execute(sql, params)
    return len(keys) * len(columns)


def upsert_statements(table: str, keys: np.ndarray, seconds: np.ndarray,
                      columns: dict[str, Column]) -> Iterator[tuple[str, dict[str, object]]]:
    """The SQL and parameters that upsert the rows, one statement per chunk of :data:`CHUNK_ROWS` rows."""
    names = sorted(columns)
    cols = [columns[name] for name in names]
    width = max(map(len, names))
    name_buf = "".join(name.ljust(width) for name in names).encode()
    # one output row per (entity row i, feature j), in key then feature order: appends to the indexes
    # (bandit B608: the table name is a Feast view's, quoted; every value is a bound parameter)
    sql = f"""WITH RECURSIVE row(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM row WHERE i + 1 < :rows),
feature(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM feature WHERE j + 1 < :nf)
INSERT INTO "{table.replace('"', '""')}" (entity_key, feature_name, value, value_text, event_ts, created_ts)
SELECT substr(:keys, i * :kw + 1, :kw),
       rtrim(CAST(substr(:names, j * :nw + 1, :nw) AS TEXT)),
       substr(:vals, CAST(substr(:vidx, (i * :nf + j) * 18 + 1, 12) AS INTEGER) + 1,
              CAST(substr(:vidx, (i * :nf + j) * 18 + 13, 6) AS INTEGER)),
       NULLIF(CAST(substr(:texts, CAST(substr(:tidx, (i * :nf + j) * 18 + 1, 12) AS INTEGER) + 1,
                          CAST(substr(:tidx, (i * :nf + j) * 18 + 13, 6) AS INTEGER)) AS TEXT), ''),
       CAST(substr(:ts, i * {_TS_DIGITS} + 1, {_TS_DIGITS}) AS INTEGER), NULL
FROM row CROSS JOIN feature WHERE true
ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value,
    value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts
WHERE excluded.event_ts >= event_ts"""  # nosec B608
    vbase = np.cumsum([0] + [len(c.values) for c in cols])[:-1]
    tbase = np.cumsum([0] + [len(c.texts) for c in cols])[:-1]
    values, texts = b"".join(c.values for c in cols), b"".join(c.texts for c in cols)
    n, nf = len(keys), len(cols)
    if n and (seconds.min() < 0 or seconds.max() >= 10 ** _TS_DIGITS):
        raise ValueError("event timestamps before 1970 are not supported by the fast SQLite writer")

    def chunk(lo: int) -> dict[str, object]:
        hi = min(n, lo + CHUNK_ROWS)
        vidx = np.stack([_index(c.value_start[lo:hi] + b, c.value_len[lo:hi]) for c, b in zip(cols, vbase)], axis=1)
        tidx = np.stack([_index(c.text_start[lo:hi] + b, c.text_len[lo:hi]) for c, b in zip(cols, tbase)], axis=1)
        return {"rows": hi - lo, "keys": keys[lo:hi].tobytes(), "kw": keys.shape[1], "nf": nf,
                "names": name_buf, "nw": width, "vals": values, "vidx": vidx.tobytes(),
                "texts": texts, "tidx": tidx.tobytes(), "ts": _digits(seconds[lo:hi], _TS_DIGITS).tobytes()}

    for lo in range(0, n, CHUNK_ROWS):
        yield sql, chunk(lo)
