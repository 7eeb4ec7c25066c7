"""The replay's event log: canonical events as integer numpy columns in event-time order.

Products, users and sessions become dense indices (``item``, ``user``, ``session``),
so a recommender's scores are one float vector over the catalogue. For each user,
session and item the log keeps its events' positions in time order (:class:`Groups`),
so "what this user (session, item) did strictly before ``t``" is one binary search:
the replay never has to remove anything a recommender must not see yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshcart.schema import EVENT_TYPES
from freshcart.storage import read_events

VIEW, CART, REMOVE, PURCHASE, WISHLIST = (EVENT_TYPES.index(name) for name in
                                         ("view", "cart", "remove_from_cart", "purchase", "wishlist"))
LOG_COLUMNS = ["event_id", "event_time", "event_type", "product_id", "category_id", "user_id", "user_session"]


@dataclass(frozen=True)
class Groups:
    """Event positions grouped by a key (user, session or item), each group in time order.

    The events of group ``g`` are ``order[offsets[g]:offsets[g + 1]]``; ``times`` is
    ``time[order]``, so the events before ``t`` are a prefix found by binary search.
    """

    order: np.ndarray
    offsets: np.ndarray
    times: np.ndarray

    @classmethod
    def of(cls, keys: np.ndarray, time: np.ndarray, count: int) -> "Groups":
        order = np.argsort(keys, kind="stable")  # positions are in time order already
        offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys, minlength=count), out=offsets[1:])
        return cls(order=order, offsets=offsets, times=time[order])

    def before(self, group: int, t: int) -> np.ndarray:
        """Positions of the group's events strictly before ``t``, oldest first."""
        lo, hi = int(self.offsets[group]), int(self.offsets[group + 1])
        return self.order[lo: lo + int(np.searchsorted(self.times[lo:hi], t, side="left"))]

    def last_before(self, group: int, t: int, n: int) -> np.ndarray:
        """Positions of the group's last ``n`` events strictly before ``t``, oldest first."""
        lo, hi = int(self.offsets[group]), int(self.offsets[group + 1])
        stop = lo + int(np.searchsorted(self.times[lo:hi], t, side="left"))
        return self.order[max(lo, stop - n): stop]

    def many_before(self, groups: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(index into ``groups``, position) of every event of ``groups`` strictly before ``t``."""
        lengths = self.offsets[groups + 1] - self.offsets[groups]
        owner = np.repeat(np.arange(groups.shape[0]), lengths)
        index = self.offsets[groups][owner] + np.arange(owner.shape[0]) - (np.cumsum(lengths) - lengths)[owner]
        keep = self.times[index] < t
        return owner[keep], self.order[index[keep]]


@dataclass(frozen=True)
class EventLog:
    """Events sorted by (event_time, event_id) as dense integer columns."""

    time: np.ndarray
    """Event time, microseconds since the epoch (int64), ascending."""
    kind: np.ndarray
    """Position of the event type in ``schema.EVENT_TYPES`` (int8)."""
    item: np.ndarray
    user: np.ndarray
    session: np.ndarray
    event_id: pa.Array
    """The events' ids (strings), in log order."""
    product_ids: np.ndarray
    """Product id of each item index."""
    user_ids: np.ndarray
    item_category: np.ndarray
    """Category index of each item (the category of its latest event)."""
    by_user: Groups
    by_session: Groups
    by_item: Groups

    @property
    def size(self) -> int:
        return int(self.time.shape[0])

    @property
    def products(self) -> int:
        return int(self.product_ids.shape[0])

    @property
    def categories(self) -> int:
        return int(self.item_category.max()) + 1 if self.products else 0

    def position(self, t: int) -> int:
        """Number of events strictly before ``t``: the prefix a recommender may know at ``t``."""
        return int(np.searchsorted(self.time, t, side="left"))

    def recent_items(self, user: int, t: int, n: int = 10, scan: int = 60) -> np.ndarray:
        """The user's last ``n`` distinct items before ``t``, newest first (from their last ``scan`` events)."""
        items = self.item[self.by_user.last_before(user, t, scan)][::-1]
        _, first = np.unique(items, return_index=True)
        return items[np.sort(first)][:n]

    def session_items(self, session: int, t: int) -> np.ndarray:
        """The distinct items of a session's events before ``t``, in the order first seen."""
        items = self.item[self.by_session.before(session, t)]
        _, first = np.unique(items, return_index=True)
        return items[np.sort(first)]


def to_micros(value: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch."""
    if value.tzinfo is None:
        raise ValueError(f"time {value.isoformat()} has no timezone; pass UTC times")
    return int(round(value.timestamp() * 1_000_000))


def build_log(table: pa.Table) -> EventLog:
    """An :class:`EventLog` of canonical events (any order; ``LOG_COLUMNS`` are needed)."""
    missing = [name for name in LOG_COLUMNS if name not in table.column_names]
    if missing:
        raise ValueError(f"events lack the columns {missing}; pass canonical events (freshcart.schema)")
    if table.num_rows == 0:
        raise ValueError("no events to replay: the event table is empty")
    table = table.select(LOG_COLUMNS).sort_by([("event_time", "ascending"), ("event_id", "ascending")])
    table = table.combine_chunks()  # one dictionary for the session codes
    time = pc.cast(table["event_time"], pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
    kinds = pc.index_in(table["event_type"], value_set=pa.array(EVENT_TYPES))
    if kinds.null_count:
        bad = pc.filter(table["event_type"], pc.is_null(kinds))[0].as_py()
        raise ValueError(f"event_type {bad!r} is not one of {list(EVENT_TYPES)}; validate the events first")
    product_ids, item = np.unique(table["product_id"].to_numpy(), return_inverse=True)
    user_ids, user = np.unique(table["user_id"].to_numpy(), return_inverse=True)
    session_codes = pc.dictionary_encode(table["user_session"]).combine_chunks()
    session = session_codes.indices.to_numpy().astype(np.int64)
    _, category = np.unique(table["category_id"].to_numpy(), return_inverse=True)
    item_category = np.zeros(product_ids.shape[0], dtype=np.int64)
    item_category[item] = category  # the last write wins: events are in time order
    n_sessions = int(session.max()) + 1
    return EventLog(
        time=time, kind=kinds.to_numpy().astype(np.int8), item=item.astype(np.int64),
        user=user.astype(np.int64), session=session,
        event_id=table["event_id"].chunk(0), product_ids=product_ids, user_ids=user_ids,
        item_category=item_category,
        by_user=Groups.of(user, time, user_ids.shape[0]),
        by_session=Groups.of(session, time, n_sessions),
        by_item=Groups.of(item, time, product_ids.shape[0]),
    )


def load_log(events_dir: Path, end: datetime, history_start: datetime | None = None) -> EventLog:
    """The events of the offline store before ``end`` (from ``history_start`` on, when given)."""
    table = read_events(Path(events_dir), columns=LOG_COLUMNS)
    keep = pc.less(table["event_time"], pa.scalar(end, pa.timestamp("us", tz="UTC")))
    if history_start is not None:
        keep = pc.and_(keep, pc.greater_equal(table["event_time"],
                                              pa.scalar(history_start, pa.timestamp("us", tz="UTC"))))
    return build_log(table.filter(keep))
