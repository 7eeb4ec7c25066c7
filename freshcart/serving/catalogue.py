"""The product catalogue the service scores with: each product's category and last price, and who bought what.

No feature view holds a product's category (``user_category`` is keyed by it, and
a candidate's category is what the on-demand and per-category features need), so
the service reads it, with the latest price and the purchases, from the offline
events of the latest ``serving_catalogue_days`` days when it starts. The online
``product_activity__current_price`` (fresh from the stream) wins over the
catalogue's price where a product has one. A product the catalogue does not know
is still scored, with an unknown category, and flagged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshcart import storage
from freshcart.features.tables import read_interval_events
from freshcart.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Catalogue:
    """Products (category, last price, views in the period) and each user's purchases with their times."""

    category: dict[int, int] = field(default_factory=dict)
    price: dict[int, float] = field(default_factory=dict)
    views: dict[int, int] = field(default_factory=dict)
    purchases: dict[int, dict[int, float]] = field(default_factory=dict)
    """``user_id -> {product_id: Unix seconds of the latest purchase}``."""
    newest_event: datetime | None = None

    def __len__(self) -> int:
        return len(self.category)

    def products_by_category(self, per_category: int) -> dict[int, list[int]]:
        """Each category's ``per_category`` most viewed products (most viewed first)."""
        ranked = sorted(self.category, key=lambda p: (-self.views.get(p, 0), p))
        out: dict[int, list[int]] = {}
        for product in ranked:
            chosen = out.setdefault(self.category[product], [])
            if len(chosen) < per_category:
                chosen.append(product)
        return out

    def purchased_since(self, user_id: int, since: float) -> set[int]:
        """Products the user bought at or after ``since`` (Unix seconds)."""
        bought = list(self.purchases.get(user_id, {}).items())  # one copy: the purchase follower adds meanwhile
        return {p for p, moment in bought if moment >= since}

    def add_purchase(self, user_id: int, product_id: int, moment: float) -> None:
        bought = self.purchases.setdefault(user_id, {})
        bought[product_id] = max(moment, bought.get(product_id, moment))


def catalogue_from_events(events: pa.Table) -> Catalogue:
    """The catalogue of canonical events: latest category and price per product, views, purchases."""
    if events.num_rows == 0:
        return Catalogue()
    order = pc.sort_indices(events, sort_keys=[("event_time", "ascending")])
    events = events.select(["event_time", "event_type", "product_id", "category_id", "price", "user_id"]).take(order)
    products = events["product_id"].to_numpy(zero_copy_only=False)
    categories = events["category_id"].to_numpy(zero_copy_only=False)
    prices = pc.fill_null(pc.cast(events["price"], pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    catalogue = Catalogue()
    catalogue.category = dict(zip(products.tolist(), categories.tolist()))  # later rows overwrite: the latest
    priced = ~np.isnan(prices)
    catalogue.price = dict(zip(products[priced].tolist(), prices[priced].tolist()))
    kinds = events["event_type"].to_numpy(zero_copy_only=False)
    viewed, counts = np.unique(products[kinds == "view"], return_counts=True)
    catalogue.views = dict(zip(viewed.tolist(), counts.tolist()))
    bought = kinds == "purchase"
    seconds = pc.cast(pc.cast(events["event_time"], pa.timestamp("us", tz="UTC")), pa.int64()) \
        .to_numpy(zero_copy_only=False) / 1e6
    users = events["user_id"].to_numpy(zero_copy_only=False)
    for user, product, moment in zip(users[bought].tolist(), products[bought].tolist(), seconds[bought].tolist()):
        catalogue.add_purchase(user, product, moment)
    catalogue.newest_event = events["event_time"][-1].as_py()
    return catalogue


def load_catalogue(settings: Settings) -> Catalogue:
    """The catalogue of the latest ``serving_catalogue_days`` days of offline events (empty without any)."""
    days = storage.list_partitions(settings.offline_events_dir)
    if not days:
        log.warning("no offline events under %s: every product is scored with an unknown category",
                    settings.offline_events_dir)
        return Catalogue()
    last = days[-1]
    events = read_interval_events(settings.offline_events_dir, last - timedelta(days=settings.serving_catalogue_days - 1),
                                  last + timedelta(days=1))
    catalogue = catalogue_from_events(events)
    log.info("catalogue: %d products, %d buyers from %d events up to %s", len(catalogue), len(catalogue.purchases),
             events.num_rows, catalogue.newest_event or datetime.now(timezone.utc))
    return catalogue
