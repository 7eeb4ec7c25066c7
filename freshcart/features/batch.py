"""Batch feature computation: offline events -> feature rows of every view, vectorised.

``compute_feature_rows(events, start, end)`` returns, for each view of
:mod:`freshcart.features.spec`, one row per key and distinct event time in
``[start, end)``, holding the key's features right after its events at that
time. The events must include the :data:`~freshcart.features.spec.LOOKBACK`
before ``start``. :mod:`freshcart.features.stream` computes the same values
event by event; :mod:`freshcart.features.parity` checks that they agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from freshcart.features import spec
from freshcart.features.windows import (
    DAY,
    Order,
    first_in_window,
    last_valid_index,
    window_distinct,
    window_lower_bound,
    window_sum,
)

EVENT_CODES = {"view": 0, "cart": 1, "remove_from_cart": 2, "purchase": 3, "wishlist": 4}
VIEW, CART, PURCHASE = EVENT_CODES["view"], EVENT_CODES["cart"], EVENT_CODES["purchase"]
WISHLIST = EVENT_CODES["wishlist"]


@dataclass
class EventArrays:
    """The columns the features need, as numpy arrays, plus each event's (time, event_id) rank."""

    t_us: np.ndarray
    t_s: np.ndarray
    etype: np.ndarray
    product: np.ndarray
    category: np.ndarray
    price: np.ndarray  # NaN where unknown
    user: np.ndarray
    session: np.ndarray  # integer code of user_session
    rank: np.ndarray

    @classmethod
    def from_table(cls, events: pa.Table) -> "EventArrays":
        t_us = pc.cast(events["event_time"], pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
        codes = pa.array(list(EVENT_CODES), pa.string())
        etype = pc.index_in(events["event_type"], value_set=codes).to_numpy(zero_copy_only=False)
        order = pc.sort_indices(events, sort_keys=[("event_time", "ascending"), ("event_id", "ascending")])
        rank = np.empty(events.num_rows, dtype=np.int64)
        rank[order.to_numpy()] = np.arange(events.num_rows)
        session = pc.dictionary_encode(events["user_session"]).combine_chunks().indices
        return cls(
            t_us=t_us,
            t_s=np.floor_divide(t_us, 1_000_000),
            etype=np.asarray(etype, dtype=np.int8),
            product=events["product_id"].to_numpy(),
            category=events["category_id"].to_numpy(),
            price=pc.fill_null(events["price"], np.nan).to_numpy(),
            user=events["user_id"].to_numpy(),
            session=session.to_numpy().astype(np.int64),
            rank=rank,
        )


def _us(value: datetime | None, default: int) -> int:
    return default if value is None else int(value.timestamp() * 1_000_000)


def _emitted(order: Order, t_us: np.ndarray, start_us: int, end_us: int) -> np.ndarray:
    """Positions that carry a row: the last of each (key, time), inside the interval."""
    return np.flatnonzero(order.last_of_run(t_us) & (t_us >= start_us) & (t_us < end_us))


def _window(order: Order, t_s: np.ndarray, name: str) -> np.ndarray:
    window = spec.WINDOWS[name]
    return first_in_window(order, t_s, window_lower_bound(t_s, window.tile_seconds, window.tiles))


def _lookback_30d(t_s: np.ndarray) -> np.ndarray:
    window = spec.WINDOWS["30d"]
    return window_lower_bound(t_s, window.tile_seconds, window.tiles)


def _table(view: spec.ViewSpec, columns: dict[str, object]) -> pa.Table:
    arrays = []
    for field in view.schema:
        value = columns[field.name]
        if isinstance(value, (pa.Array, pa.ChunkedArray)):
            arrays.append(value.cast(field.type))
        elif field.type.equals(pa.float64()):
            arrays.append(pa.array(value, type=pa.float64(), from_pandas=True))  # NaN -> null
        else:
            arrays.append(pa.array(value).cast(field.type))
    return pa.Table.from_arrays(arrays, schema=view.schema)


def _timestamps(t_us: np.ndarray) -> pa.Array:
    return pa.array(t_us, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _top_categories(ev: EventArrays, users: np.ndarray, days: np.ndarray) -> pa.Array:
    """For each (user, day), the user's top categories by views over the 30 full days before it."""
    views = ev.etype == VIEW
    counts = (
        pd.DataFrame({"user": ev.user[views], "cat": ev.category[views], "day": ev.t_s[views] // DAY})
        .groupby(["user", "cat", "day"], sort=False).size().rename("n").reset_index()
    )
    wanted = pd.DataFrame({"user": users, "D": days})
    pairs = wanted.drop_duplicates().merge(counts, on="user")
    pairs = pairs[(pairs["day"] >= pairs["D"] - 30) & (pairs["day"] < pairs["D"])]
    ranked = (
        pairs.groupby(["user", "D", "cat"], sort=False)["n"].sum().reset_index()
        .sort_values(["user", "D", "n", "cat"], ascending=[True, True, False, True])
    )
    top = ranked.groupby(["user", "D"], sort=False).head(spec.TOP_CATEGORIES)
    # one list per (user, day) group, in rank order; then each wanted row takes its group's list
    new_group = np.ones(len(top), dtype=bool)
    new_group[1:] = (top["user"].to_numpy()[1:] != top["user"].to_numpy()[:-1]) | \
                    (top["D"].to_numpy()[1:] != top["D"].to_numpy()[:-1])
    starts = np.flatnonzero(new_group)
    offsets = np.append(starts, len(top)).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(top["cat"].to_numpy(), pa.int64()))
    groups = pd.DataFrame({"user": top["user"].to_numpy()[starts], "D": top["D"].to_numpy()[starts],
                           "g": np.arange(len(starts))})
    index = wanted.merge(groups, on=["user", "D"], how="left")["g"].to_numpy()
    have = ~np.isnan(index)
    taken = lists.take(pa.array(np.where(have, index, 0).astype(np.int64), mask=~have))
    return pc.if_else(pc.is_null(taken), pa.scalar([], pa.list_(pa.int64())), taken)


def _recent(order: Order, ev: EventArrays, rows: np.ndarray, lo_s: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """The last RECENT_ITEMS products and categories up to each row position, oldest first."""
    back = np.arange(spec.RECENT_ITEMS - 1, -1, -1)
    idx = rows[:, None] - back[None, :]
    safe = np.maximum(idx, 0)
    t_s = ev.t_s[order.perm]
    valid = (idx >= order.group_start[rows][:, None]) & (t_s[safe] >= lo_s[rows][:, None])
    offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int32)
    picked = order.perm[safe[valid]]
    products = pa.ListArray.from_arrays(pa.array(offsets), pa.array(ev.product[picked], pa.int64()))
    categories = pa.ListArray.from_arrays(pa.array(offsets), pa.array(ev.category[picked], pa.int64()))
    return products, categories


def _user_views(ev: EventArrays, user_order: Order, start_us: int, end_us: int) -> dict[str, pa.Table]:
    perm = user_order.perm
    t_s, t_us, etype = ev.t_s[perm], ev.t_us[perm], ev.etype[perm]
    spend = np.where(etype == PURCHASE, np.nan_to_num(ev.price[perm], nan=0.0), 0.0)
    rows = _emitted(user_order, t_us, start_us, end_us)
    activity: dict[str, object] = {"user_id": ev.user[perm][rows], spec.TIMESTAMP: _timestamps(t_us[rows])}
    measures = {"views": etype == VIEW, "carts": etype == CART, "purchases": etype == PURCHASE}
    for window in (*spec.ACTIVITY_WINDOWS, "30d"):
        first = _window(user_order, t_s, window)
        for name, mask in measures.items():
            activity[f"{name}_{window}"] = window_sum(mask, first)[rows]
        activity[f"spend_{window}"] = window_sum(spend, first)[rows]
        if window in ("7d", "30d"):
            activity[f"wishlists_{window}"] = window_sum(etype == WISHLIST, first)[rows]
    lo_7d = window_lower_bound(t_s, DAY, spec.WINDOWS["7d"].tiles)
    activity["distinct_categories_7d"] = window_distinct(user_order, ev.category[perm], t_s, lo_7d,
                                                         ev.rank)[rows]
    activity["distinct_products_7d"] = window_distinct(user_order, ev.product[perm], t_s, lo_7d, ev.rank)[rows]
    activity["distinct_products_30d"] = window_distinct(user_order, ev.product[perm], t_s, _lookback_30d(t_s),
                                                        ev.rank)[rows]
    purchases, spent = activity["purchases_30d"], activity["spend_30d"]
    with np.errstate(invalid="ignore", divide="ignore"):
        activity["avg_purchase_price_30d"] = np.where(purchases > 0, spent / np.maximum(purchases, 1), np.nan)
    activity["last_event_ts"] = t_us[rows] / 1_000_000
    activity["top_categories_30d"] = _top_categories(ev, ev.user[perm][rows], t_s[rows] // DAY)

    session_order = Order.by([ev.user, ev.session], ev.rank)
    s_perm, s_t = session_order.perm, ev.t_s[session_order.perm]
    first = first_in_window(session_order, s_t, _lookback_30d(s_t))
    at_event = session_order.inverse[perm[rows]]  # each row's event, as a position in session order
    lo_30 = _lookback_30d(t_s)
    products, categories = _recent(user_order, ev, rows, lo_30)
    session = {
        "user_id": activity["user_id"], spec.TIMESTAMP: activity[spec.TIMESTAMP],
        "session_events": window_sum(np.ones(len(s_perm), np.int64), first)[at_event],
        "session_products": window_distinct(session_order, ev.product[s_perm], s_t, _lookback_30d(s_t),
                                            ev.rank)[at_event],
        "session_carts": window_sum(ev.etype[s_perm] == CART, first)[at_event],
        "recent_product_ids": products, "recent_category_ids": categories,
    }
    return {"user_activity": _table(spec.USER_ACTIVITY, activity),
            "user_session": _table(spec.USER_SESSION, session)}


def _product_view(ev: EventArrays, start_us: int, end_us: int) -> pa.Table:
    order = Order.by([ev.product], ev.rank)
    perm = order.perm
    t_s, t_us, etype = ev.t_s[perm], ev.t_us[perm], ev.etype[perm]
    rows = _emitted(order, t_us, start_us, end_us)
    columns: dict[str, object] = {"product_id": ev.product[perm][rows], spec.TIMESTAMP: _timestamps(t_us[rows])}
    measures = {"views": etype == VIEW, "carts": etype == CART, "purchases": etype == PURCHASE}
    for window in (*spec.ACTIVITY_WINDOWS, "30d"):
        first = _window(order, t_s, window)
        for name, mask in measures.items():
            columns[f"{name}_{window}"] = window_sum(mask, first)[rows]
    k, rate = spec.CONVERSION_PRIOR_VIEWS, spec.CONVERSION_PRIOR_RATE
    columns["conversion_rate_7d"] = (columns["purchases_7d"] + k * rate) / (columns["views_7d"] + k)
    price = ev.price[perm]
    last = last_valid_index(order, ~np.isnan(price))[rows]
    columns["current_price"] = np.where(last >= 0, price[np.maximum(last, 0)], np.nan)
    return _table(spec.PRODUCT_ACTIVITY, columns)


def _user_category_view(ev: EventArrays, user_order: Order, start_us: int, end_us: int) -> pa.Table:
    is_view = ev.etype == VIEW
    user_t = ev.t_s[user_order.perm]
    user_views = window_sum(is_view[user_order.perm], first_in_window(user_order, user_t, _lookback_30d(user_t)))
    user_views_at_event = user_views[user_order.inverse]

    order = Order.by([ev.user, ev.category], ev.rank)
    perm = order.perm
    t_s, t_us = ev.t_s[perm], ev.t_us[perm]
    rows = _emitted(order, t_us, start_us, end_us)
    first = first_in_window(order, t_s, _lookback_30d(t_s))
    views = window_sum(is_view[perm], first)[rows]
    carts = window_sum(ev.etype[perm] == CART, first)[rows]
    of_user = user_views_at_event[perm[rows]]
    share = np.where(of_user > 0, views / np.maximum(of_user, 1), 0.0)
    priced = is_view & ~np.isnan(ev.price)
    priced_views = window_sum(priced[perm], first)[rows]
    log_price = np.where(priced, np.log1p(np.where(priced, ev.price, 0.0)), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_log_price = np.where(priced_views > 0, window_sum(log_price[perm], first)[rows] / priced_views, np.nan)
    return _table(spec.USER_CATEGORY, {
        "user_id": ev.user[perm][rows], "category_id": ev.category[perm][rows],
        spec.TIMESTAMP: _timestamps(t_us[rows]),
        "category_views_30d": views, "category_view_share_30d": share, "category_carts_30d": carts,
        "category_log_price_30d": mean_log_price,
    })


def compute_feature_rows(events: pa.Table, start: datetime | None = None,
                         end: datetime | None = None) -> dict[str, pa.Table]:
    """Feature rows of every view for keys with events in ``[start, end)`` (open bounds: all).

    ``events`` must hold the canonical columns and, for exact windows, every
    event of the :data:`~freshcart.features.spec.LOOKBACK` before ``start``.
    """
    ev = EventArrays.from_table(events)
    start_us, end_us = _us(start, -(2**62)), _us(end, 2**62)
    user_order = Order.by([ev.user], ev.rank)
    tables = _user_views(ev, user_order, start_us, end_us)
    tables["product_activity"] = _product_view(ev, start_us, end_us)
    tables["user_category"] = _user_category_view(ev, user_order, start_us, end_us)
    return {name: tables[name] for name in spec.VIEWS}
