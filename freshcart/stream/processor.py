"""The stream processor's per-partition logic, free of Kafka: decode, deduplicate, watermark, update.

Two stages share :class:`freshcart.features.stream.FeatureState`, the same
event-by-event feature update that the parity harness checks against the batch
computation:

- :class:`UserTask` owns one partition of the events topic (keyed by user_id). It
  validates each message, drops duplicates (same event_id), sends events older
  than the watermark to the dead letters as ``late``, updates the views keyed by
  user (user, session, user x category) and forwards each accepted event for the
  product stage.
- :class:`ProductTask` owns one partition of the re-partitioned topic (keyed by
  product_id) and updates the product view. It skips events it has already
  applied, by source partition and offset, so a replay after a crash counts
  each event once.

The co-occurrence neighbours (view ``product_neighbours``) take the same two hops: the user stage
turns each event into its session's contribution changes (:mod:`freshcart.stream.session_pairs`), forwarded
as deltas to the product stage, which sums them and writes the rows of the products they touch
(:mod:`freshcart.stream.neighbours`).

A task's state (features, seen event ids, watermark, next offset) is saved by
:mod:`freshcart.stream.checkpoint` together with the offset it reflects.
"""

from __future__ import annotations

import itertools
import json
import struct
import sys
from array import array
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from freshcart.features import spec
from freshcart.features.stream import FeatureRow, FeatureState
from freshcart.recommendation.cooccurrence import CooccurrenceConfig
from freshcart.schema import MAX_MESSAGE_BYTES, Event, Rejection, TimeBounds, event_from_json
from freshcart.stream.neighbours import BOUGHT, FOREIGN, SEEN, NeighbourItem, NeighbourState
from freshcart.stream.session_pairs import Delta, SessionPairs

NEVER = -(2**62)
USER, PRODUCT = "user", "product"
NEIGHBOUR_VIEW = spec.PRODUCT_NEIGHBOURS.name
"""The view of the neighbour rows; a product stage's changed key ``(NEIGHBOUR_VIEW, product_id)`` names one."""


@dataclass(frozen=True, slots=True)
class Forwarded:
    """An accepted event, as the product stage needs it."""

    src_partition: int
    src_offset: int
    event_id: str
    t_us: int
    event_type: str
    product_id: int
    price: float | None
    produced_ms: int

    def to_list(self) -> list[Any]:
        return [self.src_offset, self.event_id, self.t_us, self.event_type, self.product_id, self.price,
                self.produced_ms]


def encode_forwarded(src_partition: int, events: list[Forwarded]) -> bytes:
    """One message of the re-partitioned topic: many events of one source partition."""
    return json.dumps({"p": src_partition, "e": [e.to_list() for e in events]}, separators=(",", ":")).encode()


def decode_forwarded(value: bytes) -> list[Forwarded]:
    """The events of one re-partitioned message (written by :func:`encode_forwarded`)."""
    message = json.loads(value)
    partition = message["p"]
    return [Forwarded(partition, *row) for row in message.get("e", ())]


DELTA_FIELDS = 5  # src_offset, op, a, b, t_us
DELTA_MAGIC = b"N"  # a re-partitioned message of events is JSON (``{``); one of neighbour deltas starts so


def encode_deltas(src_partition: int, rows: array | list[list[int]]) -> bytes:
    """One message of neighbour deltas of one source partition: ``(src_offset, op, a, b, t_us)`` rows, as
    little-endian int64 (flat in an ``array('q')``, or a list of rows)."""
    flat = rows if isinstance(rows, array) else array("q", itertools.chain.from_iterable(rows))
    if sys.byteorder == "big":
        flat = array("q", flat)
        flat.byteswap()
    return DELTA_MAGIC + struct.pack("<i", src_partition) + flat.tobytes()


def decode_deltas(value: bytes) -> tuple[int, np.ndarray]:
    """The source partition and the ``(n, 5)`` rows of a message written by :func:`encode_deltas`."""
    return struct.unpack("<i", value[1:5])[0], np.frombuffer(value, dtype="<i8", offset=5).reshape(-1, DELTA_FIELDS)


def route_deltas(targets: list[array], offset: int, deltas: list[Delta]) -> None:
    """Append one event's neighbour deltas (source ``offset``) to the flat rows for each product partition
    (``targets``, one per partition): a pair to its row's product's partition; a normaliser to every
    partition, marked ``FOREIGN`` where the product's row is not kept."""
    partitions = len(targets)
    for op, a, b, t_us in deltas:
        home = targets[a % partitions]
        if op == SEEN or op == BOUGHT or op == -SEEN or op == -BOUGHT:
            foreign = (offset, op + FOREIGN if op > 0 else op - FOREIGN, a, b, t_us)
            for target in targets:
                target.extend(foreign if target is not home else (offset, op, a, b, t_us))
        else:
            home.extend((offset, op, a, b, t_us))


def decode_event(value: bytes | None, bounds: TimeBounds) -> Event | Rejection:
    """A message value as a valid event, or why it is rejected (size first, then JSON and schema)."""
    if value is None:
        return Rejection("invalid_json", "the message has no value")
    if len(value) > MAX_MESSAGE_BYTES:
        return Rejection("oversized", f"{len(value)} bytes > {MAX_MESSAGE_BYTES}")
    return event_from_json(value, bounds)


def micros(moment: datetime) -> int:
    """A UTC datetime as integer microseconds since the epoch."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


@dataclass
class Outcome:
    """What applying one message did."""

    rows: list[FeatureRow] = field(default_factory=list)  # rows computed right away (user x category)
    user_id: int | None = None  # whose user and session rows changed (computed when written: ``rows_of``)
    forwarded: Forwarded | None = None
    deltas: list[Delta] = field(default_factory=list)  # the neighbour contribution changes of its session
    rejection: Rejection | None = None  # the dead-letter reason, when rejected
    duplicate: bool = False


@dataclass
class TaskState:
    """What a task saves with its keyed state: its position, watermark and where its changelog stands."""

    next_offset: int = 0  # the first offset of the partition not yet applied
    max_event_us: int = NEVER  # latest event time applied (user stage)
    written_offset: int = 0  # offsets below this were already written to the online store
    applied: dict[int, int] = field(default_factory=dict)  # product stage: source partition -> next source offset
    checkpoint: int = 0  # checkpoints written to the changelog so far (names the batches of seen ids)
    seen_batches: dict[str, int] = field(default_factory=dict)  # user stage: live seen-id batch -> its latest time
    changelog_offset: int = -1  # offset of this position's record in the changelog (-1: not written there)
    applied_deltas: dict[int, int] = field(default_factory=dict)  # product stage: the same, for neighbour deltas
    neighbours: dict[str, int | None] = field(default_factory=dict)  # product stage: reference_us, day, latest_us

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TaskState:
        """A position saved as JSON (source partitions come back as ints; fields it lacks get their defaults)."""
        return cls(**{**saved, "applied": {int(k): v for k, v in saved.get("applied", {}).items()},
                      "applied_deltas": {int(k): v for k, v in saved.get("applied_deltas", {}).items()}})


class UserTask:
    """Stage 1: one partition of the events topic."""

    kind = USER

    def __init__(self, partition: int, lateness_us: int,
                 cooccurrence: CooccurrenceConfig = CooccurrenceConfig(), neighbours: bool = True) -> None:
        self.partition = partition
        self.neighbours = neighbours
        """Whether the session's co-occurrence deltas are sent on (``FRESHCART_STREAM_NEIGHBOURS``)."""
        self.lateness_us = lateness_us
        self.features = FeatureState()
        self.session_pairs = SessionPairs(cooccurrence)
        self.meta = TaskState()
        self.seen: dict[str, int] = {}  # event_id -> event time (us), for ids not older than the watermark
        self.new_seen: dict[str, int] = {}
        self.dirty_users: set[int] = set()
        self.dirty_pairs: set[tuple[int, int]] = set()

    @property
    def watermark_us(self) -> int:
        return self.meta.max_event_us - self.lateness_us

    def apply(self, offset: int, value: bytes | None, produced_ms: int, bounds: TimeBounds) -> Outcome:
        """Apply one message of this partition at ``offset``."""
        self.meta.next_offset = offset + 1
        event = decode_event(value, bounds)
        if isinstance(event, Rejection):
            return Outcome(rejection=event)
        t_us = micros(event.event_time)
        if event.event_id in self.seen:
            return Outcome(duplicate=True)
        if t_us < self.watermark_us:
            lag_s = (self.meta.max_event_us - t_us) / 1e6
            return Outcome(rejection=Rejection(
                "late", f"event_time is {lag_s:.0f}s before the partition's latest event; allowed lateness "
                        f"is {self.lateness_us / 1e6:.0f}s"))
        self.seen[event.event_id] = t_us
        self.new_seen[event.event_id] = t_us
        self.meta.max_event_us = max(self.meta.max_event_us, t_us)
        pair_rows = self.features.apply_user(event.event_id, t_us, event.event_type, event.product_id,
                                            event.category_id, event.price, event.user_id, event.user_session)
        self.dirty_users.add(event.user_id)
        self.dirty_pairs.add((event.user_id, event.category_id))
        forwarded = Forwarded(self.partition, offset, event.event_id, t_us, event.event_type, event.product_id,
                              event.price, produced_ms)
        deltas = self.session_pairs.update(event.user_id, event.user_session,
                                           self.features.users[event.user_id].sessions[event.user_session],
                                           (t_us, event.event_id)) if self.neighbours else []
        return Outcome(rows=pair_rows, user_id=event.user_id, forwarded=forwarded, deltas=deltas)

    def rows_of(self, user_id: int) -> list[FeatureRow]:
        """The user's current user_activity and user_session rows."""
        return self.features.user_rows(user_id)

    def prune_seen(self) -> int:
        """Forget event ids below the watermark (a copy of one would be late anyway); how many."""
        floor = self.watermark_us
        old = [event_id for event_id, t_us in self.seen.items() if t_us < floor]
        for event_id in old:
            del self.seen[event_id]
        self.session_pairs.prune(floor)
        return len(old)

    def changes(self) -> dict[str, Any]:
        """The state changed since the last call (for the checkpoint changelog); resets the change sets."""
        users, pairs = self.features.users, self.features.pairs
        delta = {"users": {k: users[k] for k in self.dirty_users if k in users},
                 "pairs": {k: pairs[k] for k in self.dirty_pairs if k in pairs},
                 "seen": self.new_seen}
        self.dirty_users, self.dirty_pairs, self.new_seen = set(), set(), {}
        return delta

    def snapshot(self) -> dict[str, Any]:
        """The whole state (for a compacted checkpoint)."""
        return {"users": self.features.users, "pairs": self.features.pairs, "seen": self.seen}

    def restore(self, parts: list[dict[str, Any]], meta: TaskState) -> None:
        """Rebuild from a snapshot followed by its changelog, in order."""
        for part in parts:
            self.features.users.update(part.get("users", {}))
            self.features.pairs.update(part.get("pairs", {}))
            self.seen.update(part.get("seen", {}))
        self.meta = meta
        self.prune_seen()


class ProductTask:
    """Stage 2: one partition of the re-partitioned topic."""

    kind = PRODUCT

    def __init__(self, partition: int, cooccurrence: CooccurrenceConfig = CooccurrenceConfig()) -> None:
        self.partition = partition
        self.features = FeatureState()
        self.neighbours = NeighbourState(cooccurrence)
        self.meta = TaskState()
        self.dirty_products: set[int] = set()

    def apply(self, offset: int, value: bytes) -> tuple[list[Forwarded], int]:
        """Apply one re-partitioned message; (the events applied, events skipped as already applied).

        The rows of the products they changed come from :meth:`rows_of`; a message of neighbour
        deltas applies none (its rows: :meth:`neighbour_keys`).
        """
        self.meta.next_offset = offset + 1
        if value[:1] == DELTA_MAGIC:
            self._apply_deltas(*decode_deltas(value))
            return [], 0
        message = json.loads(value)
        applied, skipped = [], 0
        for event in (Forwarded(message["p"], *row) for row in message["e"]):
            if event.src_offset < self.meta.applied.get(event.src_partition, 0):
                skipped += 1
                continue
            self.meta.applied[event.src_partition] = event.src_offset + 1
            self.features.apply_product(event.event_id, event.t_us, event.event_type, event.product_id, event.price)
            self.dirty_products.add(event.product_id)
            applied.append(event)
        return applied, skipped

    def _apply_deltas(self, src_partition: int, rows: np.ndarray) -> int:
        """Neighbour deltas of one source partition; how many were skipped as already applied. Every delta of
        one source offset is in one message, so a replayed message is skipped whole or applied whole."""
        start = self.meta.applied_deltas.get(src_partition, 0)
        new = rows[:, 0] >= start
        foreign = np.abs(rows[:, 1]) > FOREIGN
        self.neighbours.apply_rows(rows[new & ~foreign].tolist(), start)
        self.neighbours.defer(rows[new & foreign])
        if rows.shape[0]:
            self.meta.applied_deltas[src_partition] = max(start, int(rows[-1, 0]) + 1)
        return int(rows.shape[0] - np.count_nonzero(new))

    def neighbour_keys(self, checkpoint: bool = False, stale_limit: int | None = None) -> set[tuple[str, int]]:
        """The neighbour rows to write: the products whose pairs or normaliser changed, and at a checkpoint
        (``checkpoint``) also those whose neighbours' normalisers changed (at most ``stale_limit`` of those)."""
        products = self.neighbours.take_dirty()
        if checkpoint:
            products |= self.neighbours.take_stale(stale_limit)
        return {(NEIGHBOUR_VIEW, product) for product in products}

    def rows_of(self, key: int | tuple[str, int]) -> list[FeatureRow]:
        """The product's current product_activity row (for a key ``(NEIGHBOUR_VIEW, product)``: its
        product_neighbours row)."""
        if isinstance(key, tuple):
            return [FeatureRow(NEIGHBOUR_VIEW, (key[1],), self.neighbours.latest_us, self.neighbours.row(key[1]))]
        return [self.features.product_row(key)]

    def _sync_meta(self) -> None:
        state = self.neighbours
        self.meta.neighbours = {"reference_us": state.reference_us, "day": state.day, "latest_us": state.latest_us}

    def changes(self) -> dict[str, Any]:
        products = self.features.products
        delta = {"products": {k: products[k] for k in self.dirty_products if k in products},
                 "neighbours": self.neighbours.take_changes()}
        self.dirty_products = set()
        self._sync_meta()
        return delta

    def snapshot(self) -> dict[str, Any]:
        self.neighbours.take_changes()
        self._sync_meta()
        return {"products": self.features.products, "neighbours": self.neighbours.items}

    def restore(self, parts: list[dict[str, Any]], meta: TaskState) -> None:
        items: dict[int, NeighbourItem] = {}
        for part in parts:
            self.features.products.update(part.get("products", {}))
            items.update(part.get("neighbours", {}))
        self.meta = meta
        saved = meta.neighbours
        self.neighbours.restore(items, saved.get("reference_us"), saved.get("day"))
        self.neighbours.latest_us = saved.get("latest_us") or 0
