"""The recommender interface of the replay, and how a score vector becomes a ranking.

A recommender scores every item of the catalogue for a shopper at a moment. It is
fitted on the events before the replayed period and told, as the replay walks, how
far the known prefix of the log reaches (``update``); it must use nothing at or
after ``now``. Equal scores (products a recommender cannot score at all included)
are ordered by one fixed tie-break shared by every recommender: popularity over the
fit period, then item index. So every recommender ranks the whole catalogue, and a
recommender that knows nothing ranks like global popularity.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from freshcart.recommendation.log import EventLog


@dataclass(frozen=True)
class TieBreak:
    """A strict order of the items for equal scores: ``rank[i]`` (0 first) and the items in that order."""

    rank: np.ndarray
    order: np.ndarray

    @classmethod
    def by_popularity(cls, log: EventLog, stop: int) -> "TieBreak":
        """Most events among the first ``stop`` first, then the lower item index."""
        counts = np.bincount(log.item[:stop], minlength=log.products)
        order = np.lexsort((np.arange(log.products), -counts))
        rank = np.empty(log.products, dtype=np.int64)
        rank[order] = np.arange(log.products)
        return cls(rank=rank, order=order)

    def percentile(self, items: np.ndarray) -> np.ndarray:
        """Popularity percentile of items: 1.0 the most popular of the fit period, 0.0 the least."""
        return 1.0 - self.rank[items] / max(self.rank.shape[0] - 1, 1)


def rank_of(scores: np.ndarray, target: int, ties: TieBreak) -> int:
    """1-based position of ``target`` when items are sorted by score (descending), ties by ``ties``."""
    score = scores[target]
    higher = int(np.count_nonzero(scores > score))
    return higher + int(np.count_nonzero((scores == score) & (ties.rank < ties.rank[target]))) + 1


def top_k(scores: np.ndarray, k: int, ties: TieBreak) -> np.ndarray:
    """The ``k`` best items (indices), best first, ties by ``ties``."""
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    threshold = np.partition(scores, scores.shape[0] - k)[scores.shape[0] - k]
    above = np.flatnonzero(scores > threshold)
    above = above[np.lexsort((ties.rank[above], -scores[above]))]
    equal = ties.order[scores[ties.order] == threshold]
    return np.concatenate([above, equal[: k - above.shape[0]]])


class Recommender(ABC):
    """Scores the catalogue for a shopper using only the events strictly before ``now``.

    ``fit`` sees the events ``[0, stop)`` of the log (the history before the replayed
    period); ``update(stop)`` extends what is known to ``[0, stop)`` as the replay
    walks; ``scores(user, now)`` may read the log only strictly before ``now`` (the
    replay calls ``update(log.position(now))`` first).
    """

    name: str = "recommender"

    def __init__(self) -> None:
        self.log: EventLog | None = None
        self.known = 0
        self.ties: TieBreak | None = None

    def fit(self, log: EventLog, stop: int, ties: TieBreak | None = None) -> None:
        """Learn from the events ``[0, stop)``."""
        self.log, self.known = log, 0
        self.ties = ties if ties is not None else TieBreak.by_popularity(log, stop)
        self.learn(0, stop)
        self.known = stop

    def update(self, stop: int) -> None:
        """The events ``[known, stop)`` have happened."""
        if stop > self.known:
            self.learn(self.known, stop)
            self.known = stop

    def learn(self, start: int, stop: int) -> None:
        """Take in the events ``[start, stop)`` (incremental state; nothing by default)."""

    @abstractmethod
    def scores(self, user: int, now: int) -> np.ndarray:
        """A score for every item (higher is better) for ``user`` at ``now`` (microseconds)."""

    def recommend(self, user: int, k: int, now: int) -> np.ndarray:
        """The product ids of the top ``k`` for ``user`` at ``now``, best first."""
        if self.log is None or self.ties is None:
            raise RuntimeError(f"{self.name}: call fit() before recommend()")
        self.update(self.log.position(now))
        return self.log.product_ids[top_k(self.scores(user, now), k, self.ties)]

    def _log(self) -> EventLog:
        if self.log is None:
            raise RuntimeError(f"{self.name}: call fit() first")
        return self.log


def decay_weights(time: np.ndarray, reference: int, half_life_hours: float) -> np.ndarray:
    """``2 ** ((time - reference) / half_life)``: recency weights whose ratios never change with time."""
    exponent = (time - reference) / (half_life_hours * 3600e6)
    return np.exp2(np.clip(exponent, -1000.0, 1000.0))
