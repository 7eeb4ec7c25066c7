"""The service's candidate sources in the replay, over point-in-time state built from the log.

Each query (a purchase or add-to-cart at ``t``) asks the same source classes as ``/recommend``
(:mod:`freshcart.serving.candidates`), over replay versions of what they read online:

- the shopper's context (last products, current session, top categories of the 30 full days
  before the day) from the shopper's events strictly before ``t``, as the online features hold it;
- the co-occurrence neighbours and the session-kNN index of the latest refresh instant strictly
  before ``t`` (``refresh_hours``, a day by default: what the daily DAG run leaves online), built by
  :func:`~freshcart.recommendation.cooccurrence.build_cooccurrence` and
  :func:`~freshcart.recommendation.session_index.build_session_index` from the events strictly
  before that instant; a view built at ``t`` is never used for a query at ``t``;
- trending and popular products from the views before the latest ``tick_seconds`` boundary at or
  before ``t`` (the service refreshes its index every few seconds), among the products seen before it;
- the products the shopper bought in the 7 days before ``t`` left out, as the service does.

:func:`propose_all` records every source's proposals per query; :mod:`freshcart.recommendation.quotas`
blends them with the service's :func:`~freshcart.serving.candidates.blend`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from freshcart.features import spec
from freshcart.recommendation.cooccurrence import Cooccurrence, CooccurrenceConfig, build_cooccurrence
from freshcart.recommendation.log import PURCHASE, VIEW, EventLog
from freshcart.recommendation.session_index import SessionIndex, build_session_index
from freshcart.serving.candidates import Blend, ShopperContext, candidate_sources, shopper_context
from freshcart.serving.trending import PER_CATEGORY

HOUR_US = 3600 * 1_000_000
DAY_US = 24 * HOUR_US
EXCLUDE_DAYS = 7


def refresh_instant(now: int, every_us: int) -> int:
    """The latest multiple of ``every_us`` strictly before ``now``."""
    return (now - 1) // every_us * every_us


class SnapshotNeighbours:
    """The co-occurrence of the latest refresh instant strictly before ``now`` (the ``NeighbourLookup``)."""

    def __init__(self, log: EventLog, refresh_hours: float = 24.0,
                 config: CooccurrenceConfig = CooccurrenceConfig()) -> None:
        self.log, self.every, self.config = log, int(refresh_hours * HOUR_US), config
        self.item_of = {int(p): i for i, p in enumerate(log.product_ids)}
        self.built: Cooccurrence | None = None

    def at(self, now: int) -> None:
        instant = refresh_instant(now, self.every)
        if self.built is None or self.built.as_of != instant:
            self.built = build_cooccurrence(self.log, instant, self.config)

    def neighbours(self, kind: str, product_ids: list[int]) -> list[tuple[list[int], list[float]]]:
        if self.built is None:
            raise RuntimeError("SnapshotNeighbours: call at(now) before neighbours()")
        table, out = self.built.kind(kind), list[tuple[list[int], list[float]]]()
        for product in product_ids:
            item = self.item_of.get(int(product))
            if item is None:
                out.append(([], []))
                continue
            ids, weights = table.of(item)
            out.append((self.log.product_ids[ids].tolist(), weights.tolist()))
        return out


class SnapshotSessions:
    """The session-kNN index of the latest refresh instant strictly before ``now`` (the ``SessionLookup``)."""

    def __init__(self, log: EventLog, refresh_hours: float = 24.0, days: int = 2) -> None:
        self.log, self.every, self.days = log, int(refresh_hours * HOUR_US), days
        self.index: SessionIndex | None = None

    def at(self, now: int) -> None:
        instant = refresh_instant(now, self.every)
        if self.index is None or self.index.as_of != instant:
            self.index = build_session_index(self.log, instant, self.days)

    def current(self) -> SessionIndex | None:
        return self.index


class ReplayTrending:
    """Trending per category (views of the last hour, then day) and popular (the day), as of a tick."""

    def __init__(self, log: EventLog, tick_seconds: float = 300.0, per_category: int = PER_CATEGORY,
                 popular: int = 500) -> None:
        self.log, self.tick = log, int(tick_seconds * 1_000_000)
        self.per_category, self.popular_n = per_category, popular
        self.views = np.flatnonzero(log.kind == VIEW)
        starts = log.by_item.offsets[:-1]
        self.first_seen = np.where(np.diff(log.by_item.offsets) > 0,
                                   log.by_item.times[np.minimum(starts, max(log.size - 1, 0))], np.iinfo(np.int64).max)
        self.as_of: int | None = None
        self.by_category: dict[int, list[int]] = {}
        self.overall: list[int] = []

    def _counts(self, since: int, until: int) -> np.ndarray:
        lo, hi = np.searchsorted(self.log.time[self.views], [since, until], side="left")
        return np.bincount(self.log.item[self.views[lo:hi]], minlength=self.log.products)

    def at(self, now: int) -> None:
        instant = now // self.tick * self.tick
        if instant == self.as_of:
            return
        log = self.log
        hour, day = self._counts(instant - HOUR_US, instant), self._counts(instant - DAY_US, instant)
        known = np.flatnonzero(self.first_seen < instant)  # the catalogue so far: no product of the future
        order = known[np.lexsort((known, -day[known], -hour[known]))]
        ranked: dict[int, list[int]] = {}
        for item, category in zip(order.tolist(), log.item_category[order].tolist()):
            chosen = ranked.setdefault(category, [])
            if len(chosen) < self.per_category:
                chosen.append(int(log.product_ids[item]))
        overall = known[np.lexsort((known, -day[known]))][: self.popular_n]
        self.by_category, self.overall, self.as_of = ranked, log.product_ids[overall].tolist(), instant

    def trending(self, category: int) -> list[int]:
        return self.by_category.get(category, [])

    def popular(self) -> list[int]:
        return self.overall


def replay_context(log: EventLog, user: int, now: int) -> ShopperContext:
    """The shopper's context at ``now`` from their events strictly before it (categories: log indices)."""
    events = log.by_user.last_before(user, now, spec.RECENT_ITEMS)
    events = events[log.time[events] >= now - 30 * DAY_US]
    session_products = 0
    if events.shape[0]:
        session_products = int(log.session_items(int(log.session[events[-1]]), now).shape[0])
    history = log.by_user.before(user, now)
    today = now // DAY_US * DAY_US
    history = history[(log.kind[history] == VIEW) & (log.time[history] >= today - 30 * DAY_US)
                      & (log.time[history] < today)]
    counts = np.bincount(log.item_category[log.item[history]], minlength=log.categories)
    top = [int(c) for c in np.lexsort((np.arange(counts.shape[0]), -counts))[: spec.TOP_CATEGORIES] if counts[c] > 0]
    return shopper_context(int(log.user_ids[user]), log.product_ids[log.item[events]].tolist(),
                           log.item_category[log.item[events]].tolist(), session_products, top)


def bought_before(log: EventLog, user: int, now: int, days: int = EXCLUDE_DAYS) -> set[int]:
    """The products the shopper bought in the ``days`` before ``now`` (what the service leaves out)."""
    events = log.by_user.before(user, now)
    events = events[(log.kind[events] == PURCHASE) & (log.time[events] >= now - days * DAY_US)]
    return set(log.product_ids[log.item[events]].tolist())


@dataclass
class ReplaySources:
    """The service's sources over replay state; :meth:`at` moves that state to a query's time."""

    log: EventLog
    refresh_hours: float = 24.0
    cooccurrence: CooccurrenceConfig = field(default_factory=CooccurrenceConfig)

    def __post_init__(self) -> None:
        self.neighbours = SnapshotNeighbours(self.log, self.refresh_hours, self.cooccurrence)
        self.sessions = SnapshotSessions(self.log, self.refresh_hours)
        self.trending = ReplayTrending(self.log)
        self.blend: Blend = candidate_sources(self.trending, self.neighbours, self.sessions)

    def at(self, now: int) -> None:
        for part in (self.neighbours, self.sessions, self.trending):
            part.at(now)

    @property
    def names(self) -> list[str]:
        return [source.name for source in self.blend]


@dataclass
class CandidateLists:
    """Every source's proposals at each query: ``proposals[q][s]`` (product ids, best first)."""

    names: list[str]
    positions: np.ndarray
    targets: list[int]
    proposals: list[list[list[int]]]
    excluded: list[set[int]]

    def __len__(self) -> int:
        return len(self.targets)


def propose_all(log: EventLog, queries: np.ndarray, limit: int, sources: ReplaySources | None = None,
                exclude_days: int = EXCLUDE_DAYS) -> CandidateLists:
    """Ask every source for ``limit`` (+ the excluded) proposals at each query position (ascending);
    ``exclude_days``: the shopper's purchases of that many days before are left out (0: none)."""
    sources = sources or ReplaySources(log)
    targets, proposals, excluded = [], [], []
    for position in queries.tolist():
        now, user = int(log.time[position]), int(log.user[position])
        sources.at(now)
        context = replay_context(log, user, now)
        exclude = bought_before(log, user, now, exclude_days) if exclude_days > 0 else set()
        proposals.append([source.propose(context, limit + len(exclude)) for source in sources.blend])
        targets.append(int(log.product_ids[log.item[position]]))
        excluded.append(exclude)
    return CandidateLists(sources.names, np.asarray(queries), targets, proposals, excluded)
