"""Poison messages for the stream tests: valid records with faulty copies mixed in.

Each faulty message is tagged with the rejection reason the consumer must
report for it; all but ``oversized`` are the reasons
:func:`freshcart.schema.event_from_json` returns (``oversized`` is a value over
1 MiB, which a consumer rejects by size before parsing). Valid records pass
through unchanged and in order.
"""

from __future__ import annotations

import json
import random
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

from freshcart.schema import MAX_MESSAGE_BYTES, REQUIRED, Event, format_time

FAULT_REASONS: tuple[str, ...] = (
    "invalid_json",
    "missing_field",
    "wrong_type",
    "unknown_event_type",
    "negative_price",
    "future_time",
    "bad_time",
    "oversized",
)
FAR_FUTURE = "2999-01-01T00:00:00Z"
_WRONG_TYPES: tuple[tuple[str, Any], ...] = (
    ("product_id", "not-a-number"),
    ("category_id", 1.5),
    ("user_id", [1]),
    ("user_session", 12345),
)


class KafkaMessage(NamedTuple):
    """A message to produce; ``reason`` is None for a valid record, else the expected rejection."""

    key: bytes
    value: bytes
    reason: str | None


def _as_record(record: Mapping[str, Any] | Event) -> dict[str, Any]:
    """A JSON-ready dict of a canonical record (times as ISO strings)."""
    if isinstance(record, Event):
        return json.loads(record.to_json())
    out = dict(record)
    if isinstance(out.get("event_time"), datetime):
        out["event_time"] = format_time(out["event_time"])
    return out


def _encode(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def corrupt(record: Mapping[str, Any], reason: str, rng: random.Random) -> bytes:
    """The message value of a faulty copy of ``record`` that is rejected for ``reason``."""
    bad = dict(record)
    bad["event_id"] = f"{record.get('event_id')}-fault"
    if reason == "invalid_json":
        text = _encode(bad)
        return text[: max(1, len(text) // 2)]  # a cut-off JSON object never parses
    if reason == "missing_field":
        del bad[rng.choice(REQUIRED)]
    elif reason == "wrong_type":
        name, value = rng.choice(_WRONG_TYPES)
        bad[name] = value
    elif reason == "unknown_event_type":
        bad["event_type"] = rng.choice(("click", "checkout", "VIEW"))
    elif reason == "negative_price":
        bad["price"] = -round(abs(float(bad.get("price") or 0.0)) + 1.0, 2)
    elif reason == "future_time":
        bad["event_time"] = FAR_FUTURE
    elif reason == "bad_time":
        bad["event_time"] = rng.choice(("not a time", "2025-13-45 25:61:00", "yesterday"))
    elif reason == "oversized":
        bad["padding"] = "x" * (MAX_MESSAGE_BYTES + 50_000)
    else:
        raise ValueError(f"unknown fault reason {reason!r}; use one of {', '.join(FAULT_REASONS)}")
    return _encode(bad)


def inject_faults(
    records: Iterable[Mapping[str, Any] | Event],
    share: float,
    seed: int = 0,
    reasons: Sequence[str] = FAULT_REASONS,
) -> Iterator[KafkaMessage]:
    """Every record as a valid message, with faulty copies inserted so that about ``share``
    of all messages are faulty (deterministic for ``seed``), reasons drawn evenly from ``reasons``.

    Keys are the user id (as :attr:`freshcart.schema.Event.key`). Pass ``reasons``
    without "oversized" to keep the volume small when producing many messages.
    """
    if not 0.0 <= share <= 0.5:
        raise ValueError(f"share={share!r} is out of range; give a fraction between 0 and 0.5")
    unknown = sorted(set(reasons) - set(FAULT_REASONS))
    if unknown or not reasons:
        raise ValueError(f"reasons={list(reasons)!r} is invalid; choose from {', '.join(FAULT_REASONS)}")
    # bandit B311: a seeded generator for reproducible fault injection, no secret
    rng = random.Random(seed)  # nosec B311
    insert_chance = share / (1.0 - share)  # faulty / all = share
    for original in records:
        record = _as_record(original)
        key = str(record.get("user_id")).encode()
        if rng.random() < insert_chance:
            reason = rng.choice(tuple(reasons))
            yield KafkaMessage(key, corrupt(record, reason, rng), reason)
        yield KafkaMessage(key, _encode(record), None)
