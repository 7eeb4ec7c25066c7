"""The hook for a model as ranker: candidates from a recommender, re-ordered by a scoring model.

A :class:`CandidateRanker` scores a shopper's candidate products at a moment (the
champion propensity model over point-in-time feature rows, or a learning-to-rank
model). :class:`Reranked` makes it a recommender the replay can judge like any
baseline: the candidate recommender's top ``pool`` products are ranked by the model
and put first, in the model's order; the rest of the catalogue follows in the
candidate recommender's order.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from freshcart.recommendation.base import Recommender, TieBreak, top_k
from freshcart.recommendation.log import EventLog


class CandidateRanker(Protocol):
    """Scores candidate products (product ids) for a shopper (user id) at ``now``; higher is better."""

    name: str

    def rank(self, user_id: int, product_ids: np.ndarray, now: int) -> np.ndarray: ...


class Reranked(Recommender):
    """``candidates``' top ``pool`` items re-ordered by ``ranker``, ahead of the rest."""

    def __init__(self, candidates: Recommender, ranker: CandidateRanker, pool: int = 100) -> None:
        super().__init__()
        self.candidates, self.ranker, self.pool = candidates, ranker, pool
        self.name = f"{ranker.name} over {candidates.name}"

    def fit(self, log: EventLog, stop: int, ties: TieBreak | None = None) -> None:
        super().fit(log, stop, ties)
        self.candidates.fit(log, stop, self.ties)

    def update(self, stop: int) -> None:
        super().update(stop)
        self.candidates.update(stop)

    def scores(self, user: int, now: int) -> np.ndarray:
        log, ties = self._log(), self.ties
        assert ties is not None
        base = self.candidates.scores(user, now)
        pool = top_k(base, self.pool, ties)
        model = np.asarray(self.ranker.rank(int(log.user_ids[user]), log.product_ids[pool], now), dtype=float)
        if model.shape != pool.shape:
            raise ValueError(f"ranker {self.ranker.name} returned {model.shape[0]} scores for {pool.shape[0]} "
                             "candidates; return one score per candidate")
        # The rest keeps the candidate recommender's order, below every pooled item (scores < 0).
        scores = np.empty(log.products)
        scores[np.lexsort((ties.rank, -base))] = -1.0 - np.arange(log.products)
        place = np.argsort(np.argsort(-model, kind="stable"), kind="stable")  # 0 = the model's best
        scores[pool] = float(pool.shape[0]) - place
        return scores
