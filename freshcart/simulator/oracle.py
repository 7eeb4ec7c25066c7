"""The oracle: how well the simulator's own purchase probabilities rank views.

Labels come from the events alone (a view is positive when the same user buys
the same product within the horizon after it), so the same labelling judges a
trained model and the oracle alike.
"""

from __future__ import annotations

from pathlib import Path

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


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) statistic, ties given their average rank."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    positives = int(labels.sum())
    negatives = labels.shape[0] - positives
    if positives == 0 or negatives == 0:
        raise ValueError(f"AUC needs both classes; got {positives} positives and {negatives} negatives")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_scores[1:] != sorted_scores[:-1]]))
    ends = np.concatenate([starts[1:], [scores.shape[0]]])
    average_rank = (starts + ends + 1) / 2.0  # ranks are 1-based: a tie group spans starts+1 .. ends
    ranks = np.empty(scores.shape[0])
    ranks[order] = np.repeat(average_rank, ends - starts)
    rank_sum = float(ranks[labels].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def oracle_auc_from_dir(out_dir: Path, horizon_hours: float) -> float:
    """:func:`oracle_auc` of a simulation written by ``write_simulation`` under ``out_dir``."""
    from freshcart.simulator.writer import read_simulation

    events, truth = read_simulation(out_dir, columns=LABEL_COLUMNS)
    return oracle_auc(events, truth, horizon_hours)


def oracle_auc(events: pa.Table, truth: pa.Table, horizon_hours: float) -> float:
    """ROC AUC of the true ``purchase_proba`` of each view against its label from the events."""
    labels = label_views(events, horizon_hours)
    joined = labels.join(truth.select(["event_id", "purchase_proba"]), "event_id", join_type="inner")
    if joined.num_rows != labels.num_rows:
        raise ValueError(
            f"truth covers {joined.num_rows} of {labels.num_rows} views; "
            "pass the truth table of the same events"
        )
    return roc_auc(joined["purchase_proba"].to_numpy(), joined["label"].to_numpy())
