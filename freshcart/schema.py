"""The canonical FreshCart event: its fields, its validation rules and its JSON form.

One record per shopper action, in the public REES46 schema plus ``event_id``.
The rules live here once; :func:`validate_record` applies them to one record
(the stream path) and :mod:`freshcart.ingestion.validation` to whole Arrow tables (files).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import msgspec
import pyarrow as pa

EVENT_TYPES: tuple[str, ...] = ("view", "cart", "remove_from_cart", "purchase", "wishlist")

FIELDS: tuple[str, ...] = (
    "event_id",
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
)
REQUIRED: tuple[str, ...] = (
    "event_id", "event_time", "event_type", "product_id", "category_id", "user_id", "user_session"
)
NULLABLE: tuple[str, ...] = ("category_code", "brand", "price")

ARROW_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("product_id", pa.int64(), nullable=False),
        pa.field("category_id", pa.int64(), nullable=False),
        pa.field("category_code", pa.string()),
        pa.field("brand", pa.string()),
        pa.field("price", pa.float64()),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("user_session", pa.string(), nullable=False),
    ]
)

# Rejection reasons: code -> what it means. Stream-only reasons are added by the consumer.
REASONS: dict[str, str] = {
    "missing_field": "a required field is absent or null",
    "wrong_type": "a field has a value of the wrong type",
    "unknown_event_type": f"event_type is not one of {', '.join(EVENT_TYPES)}",
    "negative_price": "price is below 0",
    "bad_time": "event_time cannot be parsed as a time",
    "future_time": "event_time is too far in the future",
    "too_old": "event_time is before the configured floor",
    "invalid_json": "the message is not a JSON object",
    "oversized": "the message is larger than MAX_MESSAGE_BYTES",
}

# A canonical event is a few hundred bytes; a message above this is dead-lettered as
# "oversized". The local broker accepts up to BROKER_MAX_MESSAGE_BYTES so such
# messages reach the consumer instead of failing the producer.
MAX_MESSAGE_BYTES = 1 << 20
BROKER_MAX_MESSAGE_BYTES = 4 << 20

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INT_TEXT = re.compile(r"-?[0-9]{1,19}")
_FLOAT_TEXT = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
"""The number forms a record's text may take, the same the columnar validator accepts (ASCII digits only: no
``inf``, ``nan``, ``1_000`` or other scripts' digits)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One valid canonical event."""

    event_id: str
    event_time: datetime
    event_type: str
    product_id: int
    category_id: int
    category_code: str | None
    brand: str | None
    price: float | None
    user_id: int
    user_session: str

    def to_json(self) -> bytes:
        """The event as compact JSON bytes (the Kafka message value)."""
        record = asdict(self)
        record["event_time"] = format_time(self.event_time)
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def key(self) -> bytes:
        """The Kafka message key: the user id, so one user's events stay in order."""
        return str(self.user_id).encode()


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was not accepted."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """Plausible event times: not before ``floor``, not after ``latest``."""

    floor: datetime
    latest: datetime

    @classmethod
    def around(cls, now: datetime, floor: datetime, max_future_seconds: int) -> "TimeBounds":
        return cls(floor=floor, latest=now + timedelta(seconds=max_future_seconds))


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, microseconds only when present."""
    text = value.astimezone(timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


def parse_time(value: Any) -> datetime | None:
    """A UTC datetime from ISO 8601, REES46's ``2019-10-01 00:00:00 UTC`` or epoch seconds."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(" UTC"):
        text = text[:-4] + "+00:00"
    elif text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        parsed.astimezone(timezone.utc)  # a time whose UTC falls outside years 1-9999 is no time
        return parsed
    except (ValueError, OverflowError):
        return None


def _shown(value: Any, limit: int = 80) -> str:
    """A value for a rejection's detail: its repr, cut to ``limit`` characters (a huge field stays readable)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}... ({len(text):,} characters)"


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else None
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return _as_int(int(value))
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not _FLOAT_TEXT.fullmatch(value):
            return None
    elif not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


def validate_record(record: Mapping[str, Any], bounds: TimeBounds) -> Event | Rejection:
    """Check one record against the canonical schema; return the event or why not."""
    for name in REQUIRED:
        value = record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return Rejection("missing_field", f"{name} is missing")
    event_type = record["event_type"]
    if event_type not in EVENT_TYPES:
        return Rejection("unknown_event_type", f"event_type={_shown(event_type)}")
    ints: dict[str, int] = {}
    for name in ("product_id", "category_id", "user_id"):
        number = _as_int(record[name])
        if number is None:
            return Rejection("wrong_type", f"{name}={_shown(record[name])} is not a 64-bit integer")
        ints[name] = number
    for name in ("event_id", "user_session"):
        if not isinstance(record[name], str):
            return Rejection("wrong_type", f"{name}={_shown(record[name])} is not a string")
    texts: dict[str, str | None] = {}
    for name in ("category_code", "brand"):
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            return Rejection("wrong_type", f"{name}={_shown(value)} is not a string")
        texts[name] = value or None
    price = record.get("price")
    if price is not None and price != "":
        price = _as_float(price)
        if price is None:
            return Rejection("wrong_type", f"price={_shown(record.get('price'))} is not a finite number")
        if price < 0:
            return Rejection("negative_price", f"price={price}")
    else:
        price = None
    event_time = parse_time(record["event_time"])
    if event_time is None:
        return Rejection("bad_time", f"event_time={_shown(record['event_time'])}")
    if event_time < bounds.floor:
        return Rejection("too_old", f"event_time={format_time(event_time)} < {format_time(bounds.floor)}")
    if event_time > bounds.latest:
        return Rejection(
            "future_time", f"event_time={format_time(event_time)} > {format_time(bounds.latest)}"
        )
    return Event(
        event_id=record["event_id"],
        event_time=event_time,
        event_type=event_type,
        category_code=texts["category_code"],
        brand=texts["brand"],
        price=price,
        user_session=record["user_session"],
        **ints,
    )


_JSON = msgspec.json.Decoder()  # strict JSON (no NaN literals), several times faster than json.loads


def event_from_json(payload: bytes | str, bounds: TimeBounds) -> Event | Rejection:
    """Parse and validate one Kafka message value."""
    try:
        record = _JSON.decode(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return Rejection("invalid_json", f"not JSON: {exc}")
    except RecursionError:
        return Rejection("invalid_json", "not JSON this service reads: nested too deeply")
    if not isinstance(record, dict):
        return Rejection("invalid_json", f"expected a JSON object, got {type(record).__name__}")
    return validate_record(record, bounds)


def events_to_table(events: list[Event]) -> pa.Table:
    """Valid events as an Arrow table in the canonical schema."""
    columns = {name: [getattr(event, name) for event in events] for name in FIELDS}
    return pa.table(columns, schema=ARROW_SCHEMA)


def table_to_records(table: pa.Table) -> list[dict[str, Any]]:
    """Canonical rows as JSON-ready dicts (times as ISO strings)."""
    rows = table.select(list(FIELDS)).to_pylist()
    for row in rows:
        row["event_time"] = format_time(row["event_time"])
    return rows
