"""Trending and popular products, from the online product features, refreshed every few seconds.

The index reads ``product_activity`` (views over the last hour and day) of the
catalogue's most viewed products per category from the online store, and ranks
them per category (last hour first, then the day) and overall (the day). The
service refreshes it on a background thread every ``serving_index_seconds``;
requests only read the last ranking, which is replaced as a whole.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from freshcart.serving.catalogue import Catalogue
from freshcart.serving.features import ViewRows

PER_CATEGORY = 100
"""Products per category the index follows (the catalogue's most viewed ones)."""


RANKED_BY = ("views_1h", "views_24h")
"""The only features the index reads (decoding the rest for every followed product held the service's
Python lock for tens of milliseconds per refresh)."""


class ProductReader(Protocol):
    def read(self, view: str, keys: Sequence[Sequence[int]], features: Sequence[str] | None = None) -> ViewRows: ...


@dataclass(frozen=True)
class Ranking:
    by_category: dict[int, list[int]] = field(default_factory=dict)
    overall: list[int] = field(default_factory=list)
    built_at: float = 0.0


def rank_products(products: list[int], categories: list[int], views_1h: list[int | None],
                  views_24h: list[int | None], fallback: dict[int, int]) -> Ranking:
    """Per category by (views 1 h, views 24 h), overall by views 24 h; the catalogue's views break ties."""
    def key(i: int) -> tuple[int, int, int, int]:
        return (-(views_1h[i] or 0), -(views_24h[i] or 0), -fallback.get(products[i], 0), products[i])

    order = sorted(range(len(products)), key=key)
    by_category: dict[int, list[int]] = {}
    for i in order:
        by_category.setdefault(categories[i], []).append(products[i])
    overall = sorted(range(len(products)), key=lambda i: (-(views_24h[i] or 0), -fallback.get(products[i], 0),
                                                           products[i]))
    return Ranking(by_category, [products[i] for i in overall], time.time())


class TrendingIndex:
    """The latest ranking; :meth:`refresh` builds a new one from the online store."""

    def __init__(self, catalogue: Catalogue, per_category: int = PER_CATEGORY) -> None:
        self.catalogue = catalogue
        self.followed = [p for ranked in catalogue.products_by_category(per_category).values() for p in ranked]
        fallback = catalogue.views
        self.ranking = rank_products(self.followed, [catalogue.category[p] for p in self.followed],
                                     [None] * len(self.followed), [None] * len(self.followed), fallback)

    def refresh(self, reader: ProductReader) -> Ranking:
        rows = reader.read("product_activity", [(p,) for p in self.followed], RANKED_BY)
        ranking = rank_products(self.followed, [self.catalogue.category[p] for p in self.followed],
                                rows.values.get("views_1h", [None] * len(self.followed)),
                                rows.values.get("views_24h", [None] * len(self.followed)), self.catalogue.views)
        self.ranking = ranking  # one assignment: readers see the old or the new ranking, never a mix
        return ranking

    def trending(self, category: int) -> list[int]:
        return self.ranking.by_category.get(category, [])

    def popular(self) -> list[int]:
        return self.ranking.overall
