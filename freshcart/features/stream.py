"""Event-by-event feature update over keyed state: the stream path of the feature logic.

``FeatureState.update(...)`` takes one event and returns the rows of every
view it changed, with the same values :func:`freshcart.features.batch.compute_feature_rows`
computes for the key at its latest event time (see :mod:`freshcart.features.spec`
for the shared semantics). State per key is tiled, so memory is bounded by the
windows, not by the traffic. Events of one key may arrive somewhat out of
order; a key's row is always as of its latest event.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, fields
from datetime import datetime

from freshcart.features import spec

DAY = 86_400
VIEW, CART, PURCHASE, WISHLIST = "view", "cart", "purchase", "wishlist"
_MEASURES = {VIEW: 0, CART: 1, PURCHASE: 2}
_ACTIVITY = [(name, spec.WINDOWS[name]) for name in spec.ACTIVITY_WINDOWS]
_W30 = spec.WINDOWS["30d"]
_TILE_SIZES = sorted({w.tile_seconds for _, w in _ACTIVITY} | {_W30.tile_seconds})
# how far back (seconds) each tile size must reach: the longest window that uses it
_RETENTION = {size: max(int(w.length.total_seconds()) for w in spec.WINDOWS.values() if w.tile_seconds == size)
              for size in _TILE_SIZES}


def _lower(t_s: int, window: spec.Window) -> int:
    tile = window.tile_seconds
    return (t_s // tile) * tile - (window.tiles - 1) * tile


# (name, tile seconds, tiles) of the activity windows and of the 30-day window, as plain ints
_ACTIVITY_TILES = [(name, w.tile_seconds, w.tiles) for name, w in _ACTIVITY]
_W30_TILES = (_W30.tile_seconds, _W30.tiles)


class _Tiles:
    """Per tile size, tile start -> [views, carts, purchases, spend]; only tiles a window can still reach."""

    __slots__ = ("by_size",)

    def __init__(self) -> None:
        self.by_size: dict[int, dict[int, list[float]]] = {size: {} for size in _TILE_SIZES}

    def add(self, t_s: int, etype: str, spend: float) -> None:
        slot = _MEASURES.get(etype)
        if slot is None:
            return
        for size, tiles in self.by_size.items():
            start = t_s // size * size
            cell = tiles.get(start)
            if cell is None:
                cell = tiles[start] = [0, 0, 0, 0.0]
                reach = _RETENTION[size]
                for old in [s for s in tiles if s < start - reach]:
                    del tiles[old]
            cell[slot] += 1
            if slot == 2:
                cell[3] += spend

    def window(self, t_s: int, window: spec.Window) -> list[float]:
        """Totals over the window ending at ``t_s``."""
        return self.sums(t_s, window.tile_seconds, window.tiles)

    def sums(self, t_s: int, tile: int, tiles: int) -> list[float]:
        """Totals over the ``tiles`` tiles of ``tile`` seconds that end with the one holding ``t_s``."""
        lo = (t_s // tile) * tile - (tiles - 1) * tile
        totals = [0, 0, 0, 0.0]
        for start, cell in self.by_size[tile].items():
            if lo <= start <= t_s:
                totals[0] += cell[0]
                totals[1] += cell[1]
                totals[2] += cell[2]
                totals[3] += cell[3]
        return totals


class _LatestDays:
    """Distinct items by the day they were last seen, so "distinct items since a day" costs a few
    additions, however many items there are."""

    __slots__ = ("day_of", "per_day")

    def __init__(self) -> None:
        self.day_of: dict[int, int] = {}  # item -> latest day seen
        self.per_day: dict[int, int] = {}  # day -> items last seen that day

    def touch(self, item: int, day: int) -> None:
        old = self.day_of.get(item)
        if old is not None and old >= day:
            return
        if old is not None:
            self.per_day[old] -= 1
        self.day_of[item] = day
        self.per_day[day] = self.per_day.get(day, 0) + 1

    def count_since(self, day: int) -> int:
        """Items last seen on ``day`` or later."""
        return sum(n for d, n in self.per_day.items() if d >= day)

    def prune(self, before_day: int) -> None:
        """Forget items last seen before ``before_day``."""
        if not any(d < before_day for d in self.per_day):
            return
        self.day_of = {item: d for item, d in self.day_of.items() if d >= before_day}
        self.per_day = {d: n for d, n in self.per_day.items() if d >= before_day}


@dataclass
class _User:
    latest: tuple[int, str] = (-(2**62), "")
    tiles: _Tiles = field(default_factory=_Tiles)
    category_seen: dict[int, int] = field(default_factory=dict)  # category -> latest second seen
    products_seen: _LatestDays = field(default_factory=_LatestDays)
    day_wishlists: dict[int, int] = field(default_factory=dict)  # day -> wishlist events (rare: kept apart)
    day_views: dict[int, dict[int, int]] = field(default_factory=dict)  # day -> category -> views
    recent: list[tuple[int, str, int, int]] = field(default_factory=list)  # (t_us, id, product, category)
    session: str = ""  # the session of the latest event
    sessions: dict[str, list[tuple[int, str, int, str]]] = field(default_factory=dict)  # (t_us, id, product, type)
    top: tuple[int, list[int]] | None = None  # (day, top categories before it), cached
    pruned_day: int = -1
    view_times: list[tuple[int, str]] = field(default_factory=list)  # (t_us, id) of views, 31 days


@dataclass
class _Product:
    latest: tuple[int, str] = (-(2**62), "")
    tiles: _Tiles = field(default_factory=_Tiles)
    price_at: tuple[int, str] = (-(2**62), "")
    price: float | None = None


@dataclass
class _Pair:
    latest: tuple[int, str] = (-(2**62), "")
    day_views: dict[int, int] = field(default_factory=dict)
    day_carts: dict[int, int] = field(default_factory=dict)
    day_log_price: dict[int, list[float]] = field(default_factory=dict)  # day -> [sum of log1p(price), views]

    def __setstate__(self, state: dict[str, object]) -> None:
        """Unpickle, also a checkpoint written before carts were counted per pair (it has none yet); the
        fields keep their declared order, so a restored pair pickles to the same bytes as the original."""
        state = {"day_carts": {}, **state}
        self.__dict__.update({f.name: state[f.name] for f in fields(self)})


@dataclass
class FeatureRow:
    """One view's row for one key: what the online store should hold for it now."""

    view: str
    key: tuple[int, ...]
    timestamp_us: int
    values: dict[str, object]


def _top_categories(user: _User, day: int) -> list[int]:
    if user.top is not None and user.top[0] == day:
        return user.top[1]
    counts: dict[int, int] = {}
    for d, per_category in user.day_views.items():
        if day - 30 <= d < day:
            for category, n in per_category.items():
                counts[category] = counts.get(category, 0) + n
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    user.top = (day, [category for category, _ in ranked[: spec.TOP_CATEGORIES]])
    return user.top[1]


def _prune_user(user: _User, t_s: int) -> None:
    """Drop state no window can reach again (runs about once a day of the user's time)."""
    day = t_s // DAY
    if user.pruned_day == day:
        return
    user.pruned_day = day
    for d in [d for d in user.day_views if d < day - 31]:
        del user.day_views[d]
    for category in [c for c, seen in user.category_seen.items() if seen < t_s - 8 * DAY]:
        del user.category_seen[category]
    user.products_seen.prune(day - 31)
    for d in [d for d in user.day_wishlists if d < day - 31]:
        del user.day_wishlists[d]
    lo_us = (t_s - 31 * DAY) * 1_000_000
    for session in [s for s, events in user.sessions.items() if events[-1][0] < lo_us]:
        del user.sessions[session]
    del user.view_times[:bisect.bisect_left(user.view_times, (lo_us, ""))]


class FeatureState:
    """Keyed state of every view; ``update`` applies one event and returns the changed rows."""

    def __init__(self) -> None:
        self.users: dict[int, _User] = {}
        self.products: dict[int, _Product] = {}
        self.pairs: dict[tuple[int, int], _Pair] = {}

    def update_record(self, record: dict) -> list[FeatureRow]:
        """``update`` from a canonical event dict (``event_time`` a datetime)."""
        moment: datetime = record["event_time"]
        t_us = int(moment.timestamp()) * 1_000_000 + moment.microsecond
        return self.update(record["event_id"], t_us, record["event_type"], record["product_id"],
                           record["category_id"], record["price"], record["user_id"], record["user_session"])

    def update(self, event_id: str, t_us: int, event_type: str, product_id: int, category_id: int,
               price: float | None, user_id: int, session: str) -> list[FeatureRow]:
        """Apply one event to every view; the rows it changed (user, session, product, user x category)."""
        user_activity, user_session, *user_category = self.update_user(
            event_id, t_us, event_type, product_id, category_id, price, user_id, session)
        product_activity = self.update_product(event_id, t_us, event_type, product_id, price)
        return [user_activity, user_session, product_activity, *user_category]

    def update_user(self, event_id: str, t_us: int, event_type: str, product_id: int, category_id: int,
                    price: float | None, user_id: int, session: str) -> list[FeatureRow]:
        """Apply one event to the views keyed by user (user, session, user x category); their rows.

        A stream partitioned by user_id owns these keys whole; see :meth:`update_product`.
        """
        pair_rows = self.apply_user(event_id, t_us, event_type, product_id, category_id, price, user_id, session)
        return [*self.user_rows(user_id), *pair_rows]

    def apply_user(self, event_id: str, t_us: int, event_type: str, product_id: int, category_id: int,
                   price: float | None, user_id: int, session: str) -> list[FeatureRow]:
        """The state change of :meth:`update_user`, returning only the user x category rows: the event's
        pair, and, for a view older than the user's latest event, the user's later pairs (their share's
        denominator counts views up to their own time).

        The user and session rows depend only on the user's state, so a caller that applies
        many events can ask for them once, with :meth:`user_rows`, and get the same values.
        """
        t_s = t_us // 1_000_000
        spend = price if (event_type == PURCHASE and price is not None) else 0.0
        stamp = (t_us, event_id)

        user = self.users.get(user_id) or self.users.setdefault(user_id, _User())
        user.tiles.add(t_s, event_type, spend)
        user.category_seen[category_id] = max(user.category_seen.get(category_id, t_s), t_s)
        user.products_seen.touch(product_id, t_s // DAY)
        if event_type == WISHLIST:
            user.day_wishlists[t_s // DAY] = user.day_wishlists.get(t_s // DAY, 0) + 1
        if event_type == VIEW:
            per_day = user.day_views.setdefault(t_s // DAY, {})
            per_day[category_id] = per_day.get(category_id, 0) + 1
            if user.top is not None and t_s // DAY < user.top[0]:
                user.top = None  # a late view changes the days the cached top categories came from
            bisect.insort(user.view_times, stamp)
        bisect.insort(user.recent, (t_us, event_id, product_id, category_id))
        del user.recent[: -spec.RECENT_ITEMS]
        bisect.insort(user.sessions.setdefault(session, []), (t_us, event_id, product_id, event_type))
        if stamp > user.latest:
            user.latest, user.session = stamp, session

        pair = self.pairs.get((user_id, category_id)) or self.pairs.setdefault((user_id, category_id), _Pair())
        if event_type == VIEW:
            pair.day_views[t_s // DAY] = pair.day_views.get(t_s // DAY, 0) + 1
            if price is not None:
                cell = pair.day_log_price.setdefault(t_s // DAY, [0.0, 0])
                cell[0] += math.log1p(price)
                cell[1] += 1
        elif event_type == CART:
            pair.day_carts[t_s // DAY] = pair.day_carts.get(t_s // DAY, 0) + 1
        pair.latest = max(pair.latest, stamp)
        rows = [self._user_category(user_id, category_id, pair, user)]
        if event_type == VIEW and stamp < user.latest:  # out of order: later pairs of the user change too
            for other in user.category_seen:
                later = self.pairs.get((user_id, other))
                if other != category_id and later is not None and later.latest > stamp:
                    rows.append(self._user_category(user_id, other, later, user))
        return rows

    def user_rows(self, user_id: int) -> list[FeatureRow]:
        """The user's user_activity and user_session rows as of their latest event."""
        user = self.users[user_id]
        return [self._user_activity(user_id, user), self._user_session(user_id, user)]

    def update_product(self, event_id: str, t_us: int, event_type: str, product_id: int,
                       price: float | None) -> FeatureRow:
        """Apply one event to the view keyed by product; its row.

        A stream partitioned by user_id sees only part of a product's events, so the
        stream processor re-partitions events by product_id before this step.
        """
        self.apply_product(event_id, t_us, event_type, product_id, price)
        return self.product_row(product_id)

    def apply_product(self, event_id: str, t_us: int, event_type: str, product_id: int,
                      price: float | None) -> None:
        """The state change of :meth:`update_product`; :meth:`product_row` gives the row."""
        stamp = (t_us, event_id)
        product = self.products.get(product_id) or self.products.setdefault(product_id, _Product())
        product.tiles.add(t_us // 1_000_000, event_type, 0.0)
        product.latest = max(product.latest, stamp)
        if price is not None and stamp > product.price_at:
            product.price_at, product.price = stamp, price

    def product_row(self, product_id: int) -> FeatureRow:
        """The product's product_activity row as of its latest event."""
        return self._product_activity(product_id, self.products[product_id])

    def _user_activity(self, user_id: int, user: _User) -> FeatureRow:
        t_us = user.latest[0]
        t_s = t_us // 1_000_000
        values: dict[str, object] = {}
        for name, tile, tiles in _ACTIVITY_TILES:
            views, carts, purchases, spend = user.tiles.sums(t_s, tile, tiles)
            values.update({f"views_{name}": views, f"carts_{name}": carts,
                           f"purchases_{name}": purchases, f"spend_{name}": spend})
        views, carts, purchases, spend = user.tiles.sums(t_s, *_W30_TILES)
        lo_7d, lo_30d = _lower(t_s, spec.WINDOWS["7d"]), _lower(t_s, _W30)
        values["wishlists_7d"] = sum(n for d, n in user.day_wishlists.items() if d >= lo_7d // DAY)
        values["distinct_categories_7d"] = sum(1 for seen in user.category_seen.values() if seen >= lo_7d)
        values["distinct_products_7d"] = user.products_seen.count_since(lo_7d // DAY)
        values["purchases_30d"] = purchases
        values["views_30d"], values["carts_30d"] = views, carts
        values["wishlists_30d"] = sum(n for d, n in user.day_wishlists.items() if d >= lo_30d // DAY)
        values["distinct_products_30d"] = user.products_seen.count_since(lo_30d // DAY)
        values["avg_purchase_price_30d"] = spend / purchases if purchases else None
        values["last_event_ts"] = t_us / 1_000_000
        values["top_categories_30d"] = _top_categories(user, t_s // DAY)
        _prune_user(user, t_s)
        return FeatureRow("user_activity", (user_id,), t_us, values)

    def _user_session(self, user_id: int, user: _User) -> FeatureRow:
        t_us = user.latest[0]
        lo_us = _lower(t_us // 1_000_000, _W30) * 1_000_000
        upto = (t_us, user.latest[1])
        events = [e for e in user.sessions.get(user.session, ()) if lo_us <= e[0] and (e[0], e[1]) <= upto]
        recent = [r for r in user.recent if r[0] >= lo_us and (r[0], r[1]) <= upto]
        values = {
            "session_events": len(events),
            "session_products": len({e[2] for e in events}),
            "session_carts": sum(1 for e in events if e[3] == CART),
            "recent_product_ids": [r[2] for r in recent],
            "recent_category_ids": [r[3] for r in recent],
        }
        return FeatureRow("user_session", (user_id,), t_us, values)

    def _product_activity(self, product_id: int, product: _Product) -> FeatureRow:
        t_us = product.latest[0]
        t_s = t_us // 1_000_000
        values: dict[str, object] = {}
        for name, tile, tiles in (*_ACTIVITY_TILES, ("30d", *_W30_TILES)):
            views, carts, purchases, _ = product.tiles.sums(t_s, tile, tiles)
            values.update({f"views_{name}": views, f"carts_{name}": carts, f"purchases_{name}": purchases})
        k, rate = spec.CONVERSION_PRIOR_VIEWS, spec.CONVERSION_PRIOR_RATE
        values["conversion_rate_7d"] = (values["purchases_7d"] + k * rate) / (values["views_7d"] + k)
        values["current_price"] = product.price
        return FeatureRow("product_activity", (product_id,), t_us, values)

    def _user_category(self, user_id: int, category_id: int, pair: _Pair, user: _User) -> FeatureRow:
        t_us = pair.latest[0]
        day = t_us // 1_000_000 // DAY
        views = sum(n for d, n in pair.day_views.items() if day - 29 <= d <= day)
        carts = sum(n for d, n in pair.day_carts.items() if day - 29 <= d <= day)
        log_price_sum, priced_views = 0.0, 0
        for d, (day_sum, day_views) in pair.day_log_price.items():
            if day - 29 <= d <= day:
                log_price_sum += day_sum
                priced_views += day_views
        log_price = log_price_sum / priced_views if priced_views else None
        lo_us = _lower(t_us // 1_000_000, _W30) * 1_000_000
        times = user.view_times
        user_views = bisect.bisect_right(times, pair.latest) - bisect.bisect_left(times, (lo_us, ""))
        share = views / user_views if user_views > 0 else 0.0
        return FeatureRow("user_category", (user_id, category_id), t_us,
                          {"category_views_30d": views, "category_view_share_30d": share,
                           "category_carts_30d": carts, "category_log_price_30d": log_price})
