"""Candidate products for a recommendation, from a few small sources behind one interface.

A source proposes product ids for a shopper, best first; :func:`gather_proposals`
asks each in turn, merges duplicates (a product keeps the first source that proposed
it and lists all of them), leaves out what the shopper bought recently and keeps every
source's proposals. The propensity champion, or the learning-to-rank champion when the
registry says it ranks better (:mod:`freshcart.serving.ranking`), then ranks the candidates.
Sources here:

- ``session``: the products of the shopper's current session, newest first;
- ``recent``: the rest of the shopper's last ``spec.RECENT_ITEMS`` products;
- ``co_viewed`` / ``co_bought``: the neighbours of the session's and recent products in the online
  view ``product_neighbours`` (item co-occurrence of the offline events, rebuilt by the
  ``materialize_features`` DAG; :mod:`freshcart.recommendation.cooccurrence`), each product's list
  weighted by its recency in the shopper's history;
- ``sknn``: session-kNN, the products of past sessions most similar to the current one, from a
  per-worker index of recent sessions that the same DAG task writes (a file, reloaded when it
  changes; :mod:`freshcart.recommendation.session_index`): a session is a set, not a product-keyed
  feature, so it cannot come from the online store's product rows;
- ``trending``: the most viewed products of the last hour (then day) in the shopper's top categories;
- ``popular``: the most viewed products of the last day overall, for a shopper without history
  and to fill up.

A new source is a class with a ``name`` and a ``propose`` method. :func:`blend` merges the
sources' proposals with per-source quotas (shares of the candidate list chosen by the replay on
a training period, :mod:`freshcart.recommendation.quotas`; the replay calls the same sources and
the same blend), then fills what is left in source order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol

from freshcart.recommendation.online_sources import OnlineCandidateState, online_state
from freshcart.recommendation.session_index import SessionIndex
from freshcart.serving.trending import TrendingIndex
from freshcart.settings import Settings


@dataclass(frozen=True)
class ShopperContext:
    """What the sources know about the shopper, from the online features."""

    user_id: int
    recent_products: list[int] = field(default_factory=list)
    """The last products, newest first (duplicates removed)."""
    recent_categories: list[int] = field(default_factory=list)
    """Their categories, in the same order."""
    session_products: int = 0
    """Distinct products in the current session (the first ones of ``recent_products``)."""
    top_categories: list[int] = field(default_factory=list)
    """The shopper's most viewed categories of the last 30 days."""

    @property
    def has_history(self) -> bool:
        return bool(self.recent_products or self.top_categories)

    def favourite_categories(self, n: int = 3) -> list[int]:
        """The top categories, then the most frequent categories of the recent products."""
        ranked = list(dict.fromkeys(self.top_categories))
        counts: dict[int, int] = {}
        for category in self.recent_categories:
            counts[category] = counts.get(category, 0) + 1
        ranked += [c for c in sorted(counts, key=lambda c: -counts[c]) if c not in ranked]
        return ranked[:n]


def shopper_context(user_id: int, recent_ids: list[int] | None, recent_categories: list[int] | None,
                    session_products: int | None, top_categories: list[int] | None) -> ShopperContext:
    """A context from the online ``user_session`` and ``user_activity`` values (lists oldest first)."""
    products, categories = list(recent_ids or []), list(recent_categories or [])
    categories += [0] * (len(products) - len(categories))
    seen: dict[int, int] = {}
    for product, category in zip(reversed(products), reversed(categories)):
        seen.setdefault(int(product), int(category))
    return ShopperContext(user_id=user_id, recent_products=list(seen), recent_categories=list(seen.values()),
                          session_products=int(session_products or 0), top_categories=list(top_categories or []))


class CandidateSource(Protocol):
    """Proposes up to ``limit`` product ids for a shopper, best first."""

    name: str

    def propose(self, context: ShopperContext, limit: int) -> list[int]: ...


class SessionSource:
    name = "session"

    def propose(self, context: ShopperContext, limit: int) -> list[int]:
        return context.recent_products[:min(context.session_products, limit)]


class RecentSource:
    name = "recent"

    def propose(self, context: ShopperContext, limit: int) -> list[int]:
        return context.recent_products[:limit]


class TrendingSource:
    name = "trending"

    def __init__(self, index: TrendingIndex, categories: int = 3) -> None:
        self.index, self.categories = index, categories

    def propose(self, context: ShopperContext, limit: int) -> list[int]:
        favourites = context.favourite_categories(self.categories)
        if not favourites:
            return []
        lists = [self.index.trending(category) for category in favourites]
        out: list[int] = []
        for position in range(max((len(ranked) for ranked in lists), default=0)):  # interleave the categories
            for ranked in lists:
                if position < len(ranked):
                    out.append(ranked[position])
            if len(out) >= limit:
                break
        return out[:limit]


class PopularSource:
    name = "popular"

    def __init__(self, index: TrendingIndex) -> None:
        self.index = index

    def propose(self, context: ShopperContext, limit: int) -> list[int]:
        return self.index.popular()[:limit]


class NeighbourLookup(Protocol):
    """Each product's neighbour list of a kind (``co_viewed``, ``co_bought``): (ids, weights), best first."""

    def neighbours(self, kind: str, product_ids: list[int]) -> list[tuple[list[int], list[float]]]: ...


class NeighbourSource:
    """The neighbours of the shopper's last ``seeds`` products (newest first, each weighing ``decay`` times
    the one after it), by summed weight; the seeds themselves are left to the session and recent sources."""

    def __init__(self, kind: str, lookup: NeighbourLookup, seeds: int = 10, decay: float = 0.75) -> None:
        self.name, self.lookup, self.seeds, self.decay = kind, lookup, seeds, decay

    def propose(self, context: ShopperContext, limit: int) -> list[int]:
        seeds = context.recent_products[:self.seeds]
        if not seeds or limit <= 0:
            return []
        own, score = set(seeds), dict[int, float]()
        for position, (ids, weights) in enumerate(self.lookup.neighbours(self.name, seeds)):
            factor = self.decay ** position
            for product, weight in zip(ids, weights):
                if product not in own:
                    score[product] = score.get(product, 0.0) + factor * weight
        return sorted(score, key=lambda p: (-score[p], p))[:limit]


class SessionLookup(Protocol):
    """The session-kNN index in use now (None when there is none yet)."""

    def current(self) -> SessionIndex | None: ...


class SessionKNNSource:
    """Session-kNN over the index: the current session's products (else the latest product) are the query."""

    name = "sknn"

    def __init__(self, sessions: SessionLookup) -> None:
        self.sessions = sessions

    def propose(self, context: ShopperContext, limit: int) -> list[int]:
        index = self.sessions.current()
        query = context.recent_products[:max(context.session_products, 1)]
        if index is None or not query:
            return []
        return index.neighbours(query, limit)


@dataclass
class Candidate:
    product_id: int
    source: str
    sources: list[str]


@dataclass
class Blend:
    """The sources in the order they are asked, and each one's share of the candidate list (None: no quotas)."""

    sources: list[CandidateSource]
    shares: dict[str, float] | None = None

    def __iter__(self) -> Iterator[CandidateSource]:
        return iter(self.sources)

    def quotas(self, limit: int) -> dict[str, int] | None:
        if self.shares is None:
            return None
        return {name: int(round(share * limit)) for name, share in self.shares.items()}


def blend(proposals: list[tuple[str, list[int]]], limit: int, exclude: set[int] | None = None,
          quotas: dict[str, int] | None = None, tag: bool = True) -> dict[int, list[str]]:
    """Up to ``limit`` distinct products from the sources' ``(name, proposals)`` in order, without ``exclude``.

    With ``quotas`` a source adds at most its quota (a source it does not name: none) in a first
    pass; a second pass fills what is left in source order. A product keeps the source that added
    it first and, with ``tag``, lists every source that proposed it. Returns product -> sources.
    """
    exclude = exclude or set()
    found: dict[int, list[str]] = {}
    for name, products in proposals:
        allowed = limit if quotas is None else quotas.get(name, 0)
        added = 0
        for product in products:
            if product in exclude:
                continue
            if product in found:
                if tag and name not in found[product]:
                    found[product].append(name)
            elif added < allowed and len(found) < limit:
                found[product] = [name]
                added += 1
            elif not tag:
                break
    if quotas is not None:
        for name, products in proposals:
            for product in products:
                if len(found) >= limit:
                    return found
                if product not in found and product not in exclude:
                    found[product] = [name]
    return found


@dataclass
class Gathered:
    """One request's candidates and what they came from: every source's proposals and the exclusions
    (the learning-to-rank model reads each candidate's rank in every source)."""

    candidates: list[Candidate]
    names: list[str]
    """The sources, in the order they were asked."""
    proposals: list[list[int]]
    """Each source's proposals, best first, as it made them."""
    exclude: set[int]
    blended: dict[int, list[str]]
    """:func:`blend`'s product -> sources, in blend order."""


def gather_proposals(sources: Iterable[CandidateSource], context: ShopperContext, limit: int,
                     exclude: set[int] | None = None) -> Gathered:
    """Up to ``limit`` distinct candidates from ``sources`` in order (with the quotas of a :class:`Blend`),
    without the ``exclude``d products, with every source's proposals."""
    exclude = exclude or set()
    listed = list(sources)
    quotas = sources.quotas(limit) if isinstance(sources, Blend) else None
    proposals = [(source.name, source.propose(context, limit + len(exclude))) for source in listed]
    blended = blend(proposals, limit, exclude, quotas)
    return Gathered([Candidate(product, names[0], names) for product, names in blended.items()],
                    [name for name, _ in proposals], [products for _, products in proposals], exclude, blended)


def gather_candidates(sources: Iterable[CandidateSource], context: ShopperContext, limit: int,
                      exclude: set[int] | None = None) -> list[Candidate]:
    """The candidates of :func:`gather_proposals` alone."""
    return gather_proposals(sources, context, limit, exclude).candidates


def candidate_sources(index: Any, neighbours: NeighbourLookup | None, sessions: SessionLookup | None,
                      shares: dict[str, float] | None = None) -> Blend:
    """The sources in the order they are asked: the shopper's own products, their neighbours, session-kNN,
    trending, popular (``index``: the trending index, the service's or the replay's)."""
    sources: list[CandidateSource] = [SessionSource(), RecentSource()]
    if neighbours is not None:
        sources += [NeighbourSource("co_viewed", neighbours), NeighbourSource("co_bought", neighbours)]
    if sessions is not None:
        sources.append(SessionKNNSource(sessions))
    sources += [TrendingSource(index), PopularSource(index)]
    return Blend(sources, shares)


def default_sources(index: TrendingIndex, reader: Any = None, settings: Settings | None = None) -> Blend:
    """The service's sources and quotas. With the online ``reader`` and the ``settings``, the co-occurrence
    and session-kNN sources join, and the quotas are the replay's (one state per reader, i.e. per worker)."""
    if reader is None or settings is None:
        return candidate_sources(index, None, None)
    state: OnlineCandidateState = online_state(reader, settings)
    return candidate_sources(index, state.neighbours, state.sessions, state.quotas.current())
