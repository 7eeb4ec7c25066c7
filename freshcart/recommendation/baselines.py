"""The baselines: global popularity, trending in the shopper's categories, item-kNN, session-kNN.

- ``popularity``: events per product, weighted by recency (half-life a day), the same for everyone;
- ``trending``: the same with a short half-life (3 h), only in the shopper's categories, each
  product's score times the share of the shopper's last events in its category;
- ``item-knn``: item co-occurrence within sessions (each product's first event in a session pairs
  with the session's previous ``window`` products), recency-weighted, cosine-normalised; the
  shopper's last products (the newest weighs most) vote for their neighbours. A product is its
  own nearest neighbour (similarity 1), so the shopper's recent products rank high;
- ``sknn``: session-kNN (Jannach & Ludewig 2017): the sessions that share products with the
  shopper's latest session, by cosine similarity of their product sets, vote for their products.

Every state is either a count over the known prefix of the log or a read of the log strictly
before ``now``, so nothing a shopper does at or after ``now`` can reach a score.
"""

from __future__ import annotations

import numpy as np

from freshcart.recommendation.base import Recommender, decay_weights
from freshcart.recommendation.log import EventLog

MAX_DENSE_PRODUCTS = 20_000
"""item-kNN keeps a dense products x products co-occurrence matrix (float32) up to this size."""


class Popularity(Recommender):
    """Recency-weighted event counts per product, one ranking for every shopper."""

    name = "popularity"

    def __init__(self, half_life_hours: float = 24.0) -> None:
        super().__init__()
        self.half_life_hours = half_life_hours
        self.counts = np.zeros(0)
        self.reference = 0

    def learn(self, start: int, stop: int) -> None:
        log = self._log()
        if start == 0:
            self.counts = np.zeros(log.products)
            self.reference = int(log.time[stop - 1]) if stop else int(log.time[0])
        weights = decay_weights(log.time[start:stop], self.reference, self.half_life_hours)
        self.counts += np.bincount(log.item[start:stop], weights=weights, minlength=log.products)

    def scores(self, user: int, now: int) -> np.ndarray:
        return self.counts


class Trending(Popularity):
    """Short-half-life popularity within the categories of the shopper's last events."""

    name = "trending"

    def __init__(self, half_life_hours: float = 3.0, user_events: int = 50) -> None:
        super().__init__(half_life_hours)
        self.user_events = user_events

    def scores(self, user: int, now: int) -> np.ndarray:
        log = self._log()
        categories = log.item_category[log.item[log.by_user.last_before(user, now, self.user_events)]]
        if categories.shape[0] == 0:
            return np.zeros(log.products)
        share = np.bincount(categories, minlength=log.categories) / categories.shape[0]
        return self.counts * share[log.item_category]


def session_pairs(log: EventLog, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every co-occurrence of the log as (position, item, earlier item), sorted by position.

    Only an item's first event in a session counts: it pairs with the session's previous
    ``window`` first-seen items, at its own position (the later of the two events), and
    with itself, which makes the diagonal the item's (weighted) session count. A pair
    becomes known when the replay reaches its position, never before.
    """
    rows = log.by_session.order  # by session, then position
    _, first = np.unique(log.session[rows] * np.int64(log.products) + log.item[rows], return_index=True)
    firsts = rows[np.sort(first)]
    session = log.session[firsts]
    starts = np.flatnonzero(np.concatenate([[True], session[1:] != session[:-1]]))
    sizes = np.diff(np.append(starts, firsts.shape[0]))
    rank = np.arange(firsts.shape[0]) - np.repeat(starts, sizes)
    counts = np.minimum(rank, window)
    owner = np.repeat(np.arange(firsts.shape[0]), counts)
    step = np.arange(owner.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
    earlier = firsts[owner - counts[owner] + step]
    position = np.concatenate([firsts[owner], firsts])
    item = log.item[position]
    other = np.concatenate([log.item[earlier], log.item[firsts]])
    order = np.argsort(position, kind="stable")
    return position[order], item[order], other[order]


class ItemKNN(Recommender):
    """Recency-weighted session co-occurrence, cosine-normalised; the shopper's last items vote."""

    name = "item-knn"

    def __init__(self, half_life_hours: float = 72.0, window: int = 10, recent: int = 10,
                 position_decay: float = 0.75) -> None:
        super().__init__()
        self.half_life_hours, self.window = half_life_hours, window
        self.recent, self.position_decay = recent, position_decay
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        self.reference = 0
        self.pairs: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.empty(0, np.int64),) * 3

    def learn(self, start: int, stop: int) -> None:
        log = self._log()
        if start == 0:
            if log.products > MAX_DENSE_PRODUCTS:
                raise ValueError(
                    f"item-knn: {log.products:,} products exceed {MAX_DENSE_PRODUCTS:,}, the size of its dense "
                    "co-occurrence matrix; replay a shorter period or leave item-knn out")
            self.matrix = np.zeros((log.products, log.products), dtype=np.float32)
            self.reference = int(log.time[stop - 1]) if stop else int(log.time[0])
            self.pairs = session_pairs(log, self.window)
        position, item, other = self.pairs
        lo, hi = np.searchsorted(position, [start, stop], side="left")
        if hi <= lo:
            return
        item, other = item[lo:hi], other[lo:hi]
        weights = decay_weights(log.time[position[lo:hi]], self.reference, self.half_life_hours)
        cells = np.concatenate([item * log.products + other, (other * log.products + item)[item != other]])
        weights = np.concatenate([weights, weights[item != other]])
        flat = self.matrix.reshape(-1)
        if cells.shape[0] > flat.shape[0] // 8:  # a big batch (the fit): one pass over the matrix
            flat += np.bincount(cells, weights=weights, minlength=flat.shape[0]).astype(np.float32)
        else:
            np.add.at(flat, cells, weights.astype(np.float32))

    def scores(self, user: int, now: int) -> np.ndarray:
        log = self._log()
        items = log.recent_items(user, now, self.recent)
        if items.shape[0] == 0:
            return np.zeros(log.products)
        norms = np.sqrt(np.maximum(np.diagonal(self.matrix), 1e-30))
        votes = (self.position_decay ** np.arange(items.shape[0])) / norms[items]
        return (votes @ self.matrix[items]) / norms


class SessionKNN(Recommender):
    """Sessions similar to the shopper's latest one (cosine of product sets) vote for their products."""

    name = "sknn"

    def __init__(self, neighbours: int = 100, sessions_per_item: int = 100, sample: int = 1000) -> None:
        super().__init__()
        self.neighbours, self.sessions_per_item, self.sample = neighbours, sessions_per_item, sample

    def scores(self, user: int, now: int) -> np.ndarray:
        log = self._log()
        scores = np.zeros(log.products)
        last = log.by_user.last_before(user, now, 1)
        if last.shape[0] == 0:
            return scores
        current = int(log.session[last[0]])
        items = log.session_items(current, now)
        candidates = np.concatenate([log.session[log.by_item.last_before(int(i), now, self.sessions_per_item)]
                                     for i in items])
        candidates = candidates[candidates != current]
        if candidates.shape[0] == 0:
            return scores
        # The most recent ``sample`` distinct sessions: ``candidates`` run oldest to newest per item.
        latest = np.unique(candidates[::-1], return_index=True)
        candidates = latest[0][np.argsort(latest[1])][: self.sample]
        owner, positions = log.by_session.many_before(candidates, now)
        pair = np.unique(owner * np.int64(log.products) + log.item[positions])
        owner, item = pair // log.products, pair % log.products
        sizes = np.bincount(owner, minlength=candidates.shape[0])
        overlap = np.bincount(owner, weights=np.isin(item, items), minlength=candidates.shape[0])
        similarity = overlap / np.sqrt(np.maximum(sizes, 1) * items.shape[0])
        chosen = np.argsort(-similarity, kind="stable")[: self.neighbours]
        weight = np.zeros(candidates.shape[0])
        weight[chosen] = similarity[chosen]
        scores += np.bincount(item, weights=weight[owner], minlength=log.products)
        return scores
