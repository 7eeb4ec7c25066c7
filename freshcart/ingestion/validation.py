"""Columnar validation: the rules of :mod:`freshcart.schema`, applied to whole Arrow tables.

Loaders hand over a *raw* table: the canonical columns as text (as read from a
file) or already typed (our own Parquet). Each row either becomes a canonical
event or a reject with the first reason it fails, in the same order as
:func:`freshcart.schema.validate_record` checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshcart.schema import EVENT_TYPES, INT64_MAX, REQUIRED, TimeBounds, parse_time

INT_COLUMNS = ("product_id", "category_id", "user_id")
TEXT_COLUMNS = ("category_code", "brand")
_INT_RE = r"^-?[0-9]{1,19}$"
_FLOAT_RE = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"


@dataclass
class Checked:
    """The outcome of validating a raw table."""

    valid: pa.Table  # canonical columns (event_id as given, possibly null)
    rejects: pa.Table  # raw columns + reason + detail


def _blank(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where a value is null or empty text."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return pc.fill_null(pc.or_(pc.is_null(column), pc.equal(pc.utf8_trim_whitespace(column), "")), True)
    return pc.is_null(column)


def _coerce_int(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """(values as int64 or null, True where a present value is not a 64-bit integer)."""
    if pa.types.is_integer(column.type):
        return pc.cast(column, pa.int64()), pc.fill_null(pc.is_null(column), False)
    text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
    ok = pc.fill_null(pc.match_substring_regex(text, _INT_RE), False)
    magnitude = pc.replace_substring_regex(text, "^-", "")
    limit = pc.if_else(pc.starts_with(text, "-"), str(INT64_MAX + 1), str(INT64_MAX))  # -2^63 is an int64
    too_big = pc.and_(pc.equal(pc.utf8_length(magnitude), 19), pc.greater(magnitude, limit))
    ok = pc.and_(ok, pc.invert(pc.fill_null(too_big, False)))
    values = pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.int64())
    return values, pc.invert(ok)


def _coerce_price(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """(price as float64 or null, True where a present value is not a number)."""
    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
        values = pc.cast(column, pa.float64())
        return values, pc.fill_null(pc.is_nan(values), False)
    text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
    present = pc.fill_null(pc.not_equal(text, ""), False)
    ok = pc.fill_null(pc.match_substring_regex(text, _FLOAT_RE), False)
    values = pc.cast(pc.if_else(pc.and_(present, ok), text, pa.scalar(None, pa.string())), pa.float64())
    return values, pc.and_(present, pc.invert(ok))


def _coerce_time(column: pa.ChunkedArray, time_format: str | None) -> pa.ChunkedArray:
    """event_time as timestamp[us, UTC], null where it cannot be parsed."""
    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            column = pc.assume_timezone(column, "UTC")
        return pc.cast(column, pa.timestamp("us", tz="UTC"))
    if pa.types.is_integer(column.type):  # Unix seconds
        return pc.cast(pc.multiply(pc.cast(column, pa.int64()), 1_000_000), pa.timestamp("us", tz="UTC"))
    text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
    if time_format == "iso":
        try:
            return pc.cast(text, pa.timestamp("us", tz="UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            parsed = [parse_time(value) if value is not None else None for value in text.to_pylist()]
            return pa.chunked_array([pa.array(parsed, pa.timestamp("us", tz="UTC"))])
    if time_format is None:
        raise ValueError("a text event_time column needs a time format")
    parsed = pc.strptime(text, format=time_format, unit="us", error_is_null=True)
    if parsed.type.tz is None:
        parsed = pc.assume_timezone(parsed, "UTC")
    return pc.cast(parsed, pa.timestamp("us", tz="UTC"))


def validate_table(
    raw: pa.Table,
    bounds: TimeBounds,
    time_format: str | None = None,
    derived: tuple[str, ...] = (),
) -> Checked:
    """Split ``raw`` into canonical valid rows and rejects with a reason each.

    Columns named in ``derived`` (``event_id``, ``user_session``) may be blank:
    the loader fills them in after validation.
    """
    n = raw.num_rows
    reason = np.full(n, "", dtype=object)
    detail = np.full(n, "", dtype=object)

    def flag(mask: pa.ChunkedArray | np.ndarray, code: str, what: str) -> None:
        hit = np.asarray(mask, dtype=bool) & (reason == "")
        reason[hit] = code
        detail[hit] = what

    for name in REQUIRED:
        if name in derived:
            continue
        flag(_blank(raw[name]).to_numpy(zero_copy_only=False), "missing_field", f"{name} is missing")
    event_type = pc.cast(raw["event_type"], pa.string())
    flag(
        pc.invert(pc.fill_null(pc.is_in(event_type, pa.array(EVENT_TYPES)), False)).to_numpy(
            zero_copy_only=False
        ),
        "unknown_event_type",
        "event_type is not one of " + ", ".join(EVENT_TYPES),
    )
    typed: dict[str, pa.ChunkedArray] = {}
    for name in INT_COLUMNS:
        typed[name], bad = _coerce_int(raw[name])
        flag(bad.to_numpy(zero_copy_only=False), "wrong_type", f"{name} is not a 64-bit integer")
    price, bad_price = _coerce_price(raw["price"])
    flag(bad_price.to_numpy(zero_copy_only=False), "wrong_type", "price is not a number")
    flag(pc.fill_null(pc.less(price, 0.0), False).to_numpy(zero_copy_only=False), "negative_price", "price is below 0")
    event_time = _coerce_time(raw["event_time"], time_format)
    flag(pc.is_null(event_time).to_numpy(zero_copy_only=False), "bad_time", "event_time cannot be parsed")
    floor = pa.scalar(bounds.floor, pa.timestamp("us", tz="UTC"))
    latest = pa.scalar(bounds.latest, pa.timestamp("us", tz="UTC"))
    flag(pc.fill_null(pc.less(event_time, floor), False).to_numpy(zero_copy_only=False), "too_old",
         f"event_time is before {bounds.floor.isoformat()}")
    flag(pc.fill_null(pc.greater(event_time, latest), False).to_numpy(zero_copy_only=False), "future_time",
         f"event_time is after {bounds.latest.isoformat()}")

    ok = reason == ""
    keep = pa.array(ok)
    texts = {
        name: pc.if_else(_blank(raw[name]), pa.scalar(None, pa.string()), pc.cast(raw[name], pa.string()))
        for name in TEXT_COLUMNS
    }
    event_id = (
        pc.cast(raw["event_id"], pa.string())
        if "event_id" in raw.column_names
        else pa.nulls(n, pa.string())
    )
    valid = pa.table(
        {
            "event_id": event_id,
            "event_time": event_time,
            "event_type": event_type,
            "product_id": typed["product_id"],
            "category_id": typed["category_id"],
            "category_code": texts["category_code"],
            "brand": texts["brand"],
            "price": price,
            "user_id": typed["user_id"],
            "user_session": pc.cast(raw["user_session"], pa.string()),
        }
    ).filter(keep)
    bad = pa.array(~ok)
    rejects = raw.filter(bad)
    rejects = rejects.append_column("reason", pa.array(reason[~ok].tolist(), pa.string()))
    rejects = rejects.append_column("detail", pa.array(detail[~ok].tolist(), pa.string()))
    return Checked(valid=valid, rejects=rejects)
