"""Ranking metrics of a replay: one relevant product per query (the product bought or carted).

With the 1-based rank ``r`` of that product in the recommender's full ranking:
HR@10 = [r <= 10], NDCG@10 = [r <= 10] / log2(r + 1) (the ideal DCG of one relevant item
is 1), MRR = 1 / r (over the whole ranking, no cut-off), candidate recall@N = [r <= N]
(the share of queries whose product a candidate list of N would contain). Of what is
shown (the top ``k`` of every query): catalogue coverage, the share of the catalogue shown
at least once, and popularity bias, the mean popularity percentile of the shown products
(1.0 = the most popular product of the fit period, 0.5 = the median).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from freshcart.recommendation.base import TieBreak

RECALL_AT = (100, 500)
CUTOFF = 10


@dataclass(frozen=True)
class QueryResults:
    """What a replay recorded for one recommender and one kind of query."""

    ranks: np.ndarray
    """1-based rank of the target product of each query."""
    shown: np.ndarray
    """Item indices shown (the top ``k``) of each query, shape (queries, k)."""


def hit_rate(ranks: np.ndarray, k: int = CUTOFF) -> float:
    return float(np.mean(ranks <= k)) if ranks.shape[0] else float("nan")


def ndcg(ranks: np.ndarray, k: int = CUTOFF) -> float:
    if ranks.shape[0] == 0:
        return float("nan")
    return float(np.mean(np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)))


def mrr(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / ranks)) if ranks.shape[0] else float("nan")


def coverage(shown: np.ndarray, catalogue: int) -> float:
    return float(np.unique(shown).shape[0] / catalogue) if catalogue else float("nan")


def popularity_bias(shown: np.ndarray, ties: TieBreak) -> float:
    return float(ties.percentile(shown.reshape(-1)).mean()) if shown.size else float("nan")


def summarise(results: QueryResults, catalogue: int, ties: TieBreak, k: int = CUTOFF) -> dict[str, float]:
    """The metrics of one recommender on one kind of query, by name."""
    ranks = results.ranks
    row = {f"hr@{k}": hit_rate(ranks, k), f"ndcg@{k}": ndcg(ranks, k), "mrr": mrr(ranks)}
    row.update({f"recall@{n}": hit_rate(ranks, n) for n in RECALL_AT})
    row.update({f"coverage@{k}": coverage(results.shown, catalogue),
                f"popularity_bias@{k}": popularity_bias(results.shown, ties)})
    return row
