"""Trending and popular products, from the online product features, refreshed every few seconds.

The index reads ``product_activity`` (views over the last hour and day) of the
catalogue's most viewed products per category from the online store, and ranks
them per category (last hour first, then the day) and overall (the day). The
service reads them all at start (:meth:`TrendingIndex.refresh`), then on a
background thread :data:`SLICE` products at a time (:meth:`TrendingIndex.refresh_next`),
spread so that a pass over every followed product takes ``serving_index_seconds``,
and ranks again at the end of each pass. Requests only read the last ranking,
which is replaced as a whole.

Why slices: the background thread shares the worker's Python lock with the
requests, and reading the 600 products of the benchmark's shop at once held it
for about 50 ms (Feast's SQLite store decodes every stored value of a row), a
stall for every request that arrived meanwhile. A slice holds it for a few
milliseconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from freshcart.serving.catalogue import Catalogue
from freshcart.serving.features import ViewRows

PER_CATEGORY = 100
"""Products per category the index follows (the catalogue's most viewed ones)."""
SLICE = 50
"""Followed products read per background refresh."""


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
    """The latest ranking; :meth:`refresh` builds a new one from the online store, :meth:`refresh_next`
    reads the next slice and ranks again after the last one."""

    def __init__(self, catalogue: Catalogue, per_category: int = PER_CATEGORY, slice_size: int = SLICE) -> None:
        self.catalogue = catalogue
        self.followed = [p for ranked in catalogue.products_by_category(per_category).values() for p in ranked]
        self.categories = [catalogue.category[p] for p in self.followed]
        self.slice_size = slice_size
        self.views_1h: list[int | None] = [None] * len(self.followed)
        self.views_24h: list[int | None] = [None] * len(self.followed)
        self._next = 0
        self.ranking = self._rank()

    @property
    def slices(self) -> int:
        """Reads of :meth:`refresh_next` per pass over the followed products."""
        return max(1, math.ceil(len(self.followed) / self.slice_size))

    def refresh(self, reader: ProductReader) -> Ranking:
        """Read every followed product and rank them."""
        self._next = 0
        for _ in range(self.slices):
            self.refresh_next(reader)
        return self.ranking

    def refresh_next(self, reader: ProductReader) -> Ranking | None:
        """Read the next slice of followed products; the new ranking once the pass ends, else None."""
        start = self._next
        part = self.followed[start:start + self.slice_size]
        if part:
            rows = reader.read("product_activity", [(p,) for p in part], RANKED_BY)
            end = start + len(part)
            self.views_1h[start:end] = rows.values.get("views_1h", [None] * len(part))
            self.views_24h[start:end] = rows.values.get("views_24h", [None] * len(part))
        self._next = start + len(part)
        if self._next < len(self.followed):
            return None
        self._next = 0
        self.ranking = self._rank()  # one assignment: readers see the old or the new ranking, never a mix
        return self.ranking

    def _rank(self) -> Ranking:
        return rank_products(self.followed, self.categories, self.views_1h, self.views_24h, self.catalogue.views)

    def trending(self, category: int) -> list[int]:
        return self.ranking.by_category.get(category, [])

    def popular(self) -> list[int]:
        return self.ranking.overall
