"""Judging a ranker of the blend's candidates by replay, in the replay table's terms.

A ranker gives a score to every row of a :class:`~freshcart.recommendation.candidate_features.CandidateTable`.
Each query's full ranking is then its candidates in the ranker's order (ties: the blend's order),
followed by the rest of the catalogue in the replay's popularity tie-break; the 1-based rank of the
product bought or carted in that ranking and the top ``k`` shown give the same metrics as every
recommender of :func:`~freshcart.recommendation.replay.replay` (:func:`~freshcart.recommendation.metrics.summarise`),
one row per query kind.
"""

from __future__ import annotations

import numpy as np

from freshcart.recommendation.base import TieBreak
from freshcart.recommendation.candidate_features import CandidateTable
from freshcart.recommendation.log import EventLog
from freshcart.recommendation.metrics import QueryResults, ndcg, summarise
from freshcart.recommendation.replay import QUERY_KINDS


def ranked_order(table: CandidateTable, scores: np.ndarray) -> np.ndarray:
    """Row indices sorted by query, then score (descending), then blend position."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (table.query.shape[0],):
        raise ValueError(f"{scores.shape[0] if scores.ndim else 0} scores for {table.query.shape[0]} candidate "
                         "rows; give one score per row")
    return np.lexsort((table.position, -scores, table.query))


def target_ranks(log: EventLog, table: CandidateTable, scores: np.ndarray, ties: TieBreak,
                 k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """1-based rank of each query's target in its full ranking, and the ``k`` items shown (log indices)."""
    order = ranked_order(table, scores)
    offsets = table.offsets
    counts = np.diff(offsets)
    items = np.searchsorted(log.product_ids, table.product_id[order])
    place = np.arange(order.shape[0]) - offsets[table.query[order]]
    ranks = np.zeros(table.queries, dtype=np.int64)
    hit = table.label[order] == 1
    ranks[table.query[order][hit]] = place[hit] + 1
    target_items = np.searchsorted(log.product_ids, table.targets)
    known = (target_items < log.products) & (log.product_ids[np.minimum(target_items, log.products - 1)]
                                           == table.targets)
    shown = np.zeros((table.queries, min(k, log.products)), dtype=np.int64)
    for q in range(table.queries):
        mine = items[offsets[q]:offsets[q + 1]]
        if ranks[q] == 0:  # not a candidate: after them, in the tie-break order of the rest
            target_rank = ties.rank[target_items[q]] if known[q] else log.products
            ranks[q] = counts[q] + 1 + int(target_rank - np.count_nonzero(ties.rank[mine] < target_rank))
        head = mine[:k]
        if head.shape[0] < shown.shape[1]:
            rest = ties.order[~np.isin(ties.order, mine)][: shown.shape[1] - head.shape[0]]
            head = np.concatenate([head, rest])
        shown[q] = head
    return ranks, shown


def ranking_rows(name: str, log: EventLog, table: CandidateTable, scores: np.ndarray, ties: TieBreak,
                 k: int = 10, seconds: float = 0.0) -> list[dict[str, object]]:
    """Rows of the replay table (one per query kind) of the ranker ``name``'s ``scores``."""
    ranks, shown = target_ranks(log, table, scores, ties, k)
    rows: list[dict[str, object]] = []
    for kind, code in QUERY_KINDS.items():
        mask = table.kinds == code
        metrics = summarise(QueryResults(ranks=ranks[mask], shown=shown[mask]), log.products, ties, k)
        rows.append({"recommender": name, "event_type": kind, "queries": int(mask.sum()), **metrics,
                     "fit_seconds": seconds, "replay_seconds": 0.0, "ms_per_query": 0.0})
    return rows


def validation_ndcg(log: EventLog, table: CandidateTable, scores: np.ndarray, ties: TieBreak, k: int = 10) -> float:
    """NDCG@k over every query (purchases and carts together): the figure the ranker gate compares."""
    ranks, _ = target_ranks(log, table, scores, ties, k)
    return ndcg(ranks, k)
