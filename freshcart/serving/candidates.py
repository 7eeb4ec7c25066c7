"""Candidate products for a recommendation, from a few small sources behind one interface.

A source proposes product ids for a shopper, best first; :func:`gather_candidates`
asks each in turn, merges duplicates (a product keeps the first source that proposed
it and lists all of them) and leaves out what the shopper bought recently. The
champion then ranks the candidates. Sources here:

- ``session``: the products of the shopper's current session, newest first;
- ``recent``: the rest of the shopper's last ``spec.RECENT_ITEMS`` products;
- ``trending``: the most viewed products of the last hour (then day) in the shopper's top categories;
- ``popular``: the most viewed products of the last day overall, for a shopper without history
  and to fill up.

A new source is a class with a ``name`` and a ``propose`` method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol

from freshcart.serving.trending import TrendingIndex


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


@dataclass
class Candidate:
    product_id: int
    source: str
    sources: list[str]


def gather_candidates(sources: Iterable[CandidateSource], context: ShopperContext, limit: int,
                      exclude: set[int] | None = None) -> list[Candidate]:
    """Up to ``limit`` distinct candidates from ``sources`` in order, without the ``exclude``d products."""
    exclude = exclude or set()
    found: dict[int, Candidate] = {}
    for source in sources:
        room = limit - len(found)
        for product in source.propose(context, limit + len(exclude)):
            if product in exclude:
                continue
            if product in found:
                if source.name not in found[product].sources:
                    found[product].sources.append(source.name)
            elif room > 0:
                found[product] = Candidate(product, source.name, [source.name])
                room -= 1
    return list(found.values())


def default_sources(index: TrendingIndex) -> list[CandidateSource]:
    """The service's sources in the order they are asked."""
    return [SessionSource(), RecentSource(), TrendingSource(index), PopularSource(index)]
