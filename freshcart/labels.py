"""Propensity labels: a view is positive when its user buys its product within the horizon after it.

Labels come from the events alone, so the same labelling judges a trained
model, the simulator's oracle and the training sets alike.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LABEL_COLUMNS = ["event_id", "event_time", "event_type", "product_id", "user_id"]


def _microseconds(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    as_us = pc.cast(column, pa.timestamp("us", tz="UTC"))
    return pc.cast(as_us, pa.int64()).to_numpy(zero_copy_only=False)


def label_views(events: pa.Table, horizon_hours: float) -> pa.Table:
    """Every view with ``label`` = 1 when its user buys its product in (view time, view time + H].

    Returns a table with ``event_id``, ``event_time`` and ``label`` (int8), in input order.
    """
    kind = events["event_type"]
    view_rows = np.flatnonzero(pc.equal(kind, "view").to_numpy(zero_copy_only=False))
    buy_rows = np.flatnonzero(pc.equal(kind, "purchase").to_numpy(zero_copy_only=False))
    rows = np.concatenate([view_rows, buy_rows])
    users = events["user_id"].to_numpy()[rows]
    products = events["product_id"].to_numpy()[rows]
    times = _microseconds(events["event_time"])[rows]
    is_buy = np.arange(rows.shape[0]) >= view_rows.shape[0]

    _, user_code = np.unique(users, return_inverse=True)
    product_values, product_code = np.unique(products, return_inverse=True)
    pair = user_code.astype(np.int64) * product_values.shape[0] + product_code
    # Within a pair by time; at equal times the purchase sorts first (it is not "after" the view).
    order = np.lexsort((~is_buy, times, pair))
    sorted_buy = is_buy[order]
    position = np.arange(order.shape[0])
    next_buy = np.where(sorted_buy, position, order.shape[0])
    next_buy = np.minimum.accumulate(next_buy[::-1])[::-1]
    # The next purchase strictly after each row (a row that is a purchase looks past itself).
    after = np.full(order.shape[0], order.shape[0])
    after[:-1] = next_buy[1:]
    candidate = np.minimum(after, order.shape[0] - 1)
    horizon_us = int(round(horizon_hours * 3_600_000_000))
    hit = (
        (after < order.shape[0])
        & (pair[order][candidate] == pair[order])
        & (times[order][candidate] <= times[order] + horizon_us)
        & (times[order][candidate] > times[order])
    )
    label = np.empty(order.shape[0], dtype=np.int8)
    label[order] = hit
    return pa.table(
        {
            "event_id": events["event_id"].take(pa.array(view_rows)),
            "event_time": events["event_time"].take(pa.array(view_rows)),
            "label": pa.array(label[: view_rows.shape[0]]),
        }
    )
