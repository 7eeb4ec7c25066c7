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

from freshcart.labels import LABEL_COLUMNS, label_views  # noqa: F401  (re-exported)


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
