"""The feature definitions, once: names, types, windows and the views they belong to.

Every other part reads these specs: the batch computation over offline events
(:mod:`freshcart.features.batch`), the event-by-event update of the stream
processor (:mod:`freshcart.features.stream`), the Feast repository
(``feature_repo/``), materialisation and training sets.

Semantics shared by batch and stream
- A feature row describes a key *after* all of its events up to and including
  the row's ``event_timestamp`` (one row per key and distinct event time).
  Training sets join rows strictly before the view (see ``training``), so a
  view never sees its own time.
- Windows are tiled: a window of length L with tiles of length T covers the
  tile holding the row time and the L/T - 1 tiles before it (UTC-aligned
  tiles). An event counts when ``tile_start(t) - (L/T - 1) * T <= time <= t``.
- Window features are as of the key's latest event; the stream keeps them
  fresh online, and training sets read them the same way, so both agree.
- Ties in time are ordered by ``event_id``.
- No feature looks further back than :data:`LOOKBACK` (31 days), so a batch
  over ``[start, end)`` needs the events of ``[start - LOOKBACK, end)`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pyarrow as pa

LOOKBACK = timedelta(days=31)
RECENT_ITEMS = 20  # length of the recent product / category sequence
TOP_CATEGORIES = 3
CONVERSION_PRIOR_RATE = 0.01  # smoothed conversion: (purchases + k * rate) / (views + k)
CONVERSION_PRIOR_VIEWS = 100.0
TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class Window:
    """A tiled time window."""

    suffix: str
    length: timedelta
    tile: timedelta

    @property
    def tiles(self) -> int:
        return int(self.length / self.tile)

    @property
    def tile_seconds(self) -> int:
        return int(self.tile.total_seconds())


WINDOWS: dict[str, Window] = {
    "1h": Window("1h", timedelta(hours=1), timedelta(minutes=5)),
    "24h": Window("24h", timedelta(hours=24), timedelta(hours=1)),
    "7d": Window("7d", timedelta(days=7), timedelta(days=1)),
    "30d": Window("30d", timedelta(days=30), timedelta(days=1)),
}
ACTIVITY_WINDOWS = ("1h", "24h", "7d")


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: pa.DataType
    description: str


@dataclass(frozen=True)
class ViewSpec:
    """A feature view: one entity key, rows over time, a set of features."""

    name: str
    keys: tuple[str, ...]
    features: tuple[Feature, ...]
    description: str

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def schema(self) -> pa.Schema:
        """Arrow schema of the view's offline rows (keys, timestamp, features)."""
        fields = [pa.field(k, pa.int64(), nullable=False) for k in self.keys]
        fields.append(pa.field(TIMESTAMP, pa.timestamp("us", tz="UTC"), nullable=False))
        fields += [pa.field(f.name, f.dtype) for f in self.features]
        return pa.schema(fields)


def _activity(prefix_doc: str, measures: tuple[str, ...]) -> list[Feature]:
    docs = {"views": "views", "carts": "add-to-carts", "purchases": "purchases",
            "spend": "sum of purchase prices"}
    out = []
    for window in ACTIVITY_WINDOWS:
        for measure in measures:
            dtype = pa.float64() if measure == "spend" else pa.int64()
            out.append(Feature(f"{measure}_{window}", dtype, f"{prefix_doc} {docs[measure]} over {window}"))
    return out


USER_ACTIVITY = ViewSpec(
    name="user_activity",
    keys=("user_id",),
    description="What a shopper did recently: counts, spend, breadth, price level, favourite categories.",
    features=tuple(
        _activity("the user's", ("views", "carts", "purchases", "spend"))
        + [
            Feature("distinct_categories_7d", pa.int64(), "distinct categories the user touched over 7d"),
            Feature("distinct_products_7d", pa.int64(),
                    "distinct products the user touched over 7d (about the product episodes behind the views)"),
            Feature("wishlists_7d", pa.int64(), "the user's wishlist additions over 7d"),
            Feature("purchases_30d", pa.int64(), "the user's purchases over 30d"),
            Feature("views_30d", pa.int64(), "the user's views over 30d"),
            Feature("carts_30d", pa.int64(), "the user's add-to-carts over 30d"),
            Feature("wishlists_30d", pa.int64(), "the user's wishlist additions over 30d"),
            Feature("distinct_products_30d", pa.int64(),
                    "distinct products the user touched over 30d (their product episodes over a month: the "
                    "denominator of a per-episode cart rate that a few weeks of history make precise)"),
            Feature("avg_purchase_price_30d", pa.float64(),
                    "mean price of the user's purchases over 30d (null without purchases)"),
            Feature("last_event_ts", pa.float64(), "Unix seconds of the user's latest event"),
            Feature("top_categories_30d", pa.list_(pa.int64()),
                    "the user's 3 most viewed categories over the 30 full days before the event's day"),
        ]
    ),
)

PRODUCT_ACTIVITY = ViewSpec(
    name="product_activity",
    keys=("product_id",),
    description="How a product is doing: views, carts, purchases, conversion and price.",
    features=tuple(
        _activity("the product's", ("views", "carts", "purchases"))
        + [
            Feature("conversion_rate_7d", pa.float64(),
                    "purchases / views over 7d, smoothed towards 1% with 100 pseudo-views"),
            Feature("current_price", pa.float64(), "the product's latest known price (null if none)"),
            Feature("views_30d", pa.int64(), "the product's views over 30d"),
            Feature("carts_30d", pa.int64(),
                    "the product's add-to-carts over 30d (with views_30d: its appeal, measured on a month)"),
            Feature("purchases_30d", pa.int64(), "the product's purchases over 30d"),
        ]
    ),
)

USER_CATEGORY = ViewSpec(
    name="user_category",
    keys=("user_id", "category_id"),
    description="How much of a shopper's attention a category gets, and at what price level they browse it.",
    features=(
        Feature("category_views_30d", pa.int64(), "the user's views in the category over 30d"),
        Feature("category_view_share_30d", pa.float64(),
                "share of the user's 30d views that were in the category (0 without views)"),
        Feature("category_carts_30d", pa.int64(), "the user's add-to-carts in the category over 30d"),
        Feature("category_log_price_30d", pa.float64(),
                "mean log(1 + price) of the user's priced views in the category over 30d: the price level "
                "they browse there (null without priced views)"),
    ),
)

USER_SESSION = ViewSpec(
    name="user_session",
    keys=("user_id",),
    description="The shopper's current session and recent item sequence (for the sequence model).",
    features=(
        Feature("session_events", pa.int64(), "events so far in the user's current session"),
        Feature("session_products", pa.int64(), "distinct products so far in the current session"),
        Feature("session_carts", pa.int64(), "add-to-carts so far in the current session"),
        Feature("recent_product_ids", pa.list_(pa.int64()),
                f"the user's last {RECENT_ITEMS} products, oldest first"),
        Feature("recent_category_ids", pa.list_(pa.int64()),
                f"the categories of those {RECENT_ITEMS} products, oldest first"),
    ),
)

VIEWS: dict[str, ViewSpec] = {v.name: v for v in (USER_ACTIVITY, PRODUCT_ACTIVITY, USER_CATEGORY, USER_SESSION)}

# Candidate views: written by their own task from the offline events, read by the candidate sources of
# /recommend. Not in VIEWS: VIEWS are the model's features, which the batch and stream computations
# update per event and every training set joins; a neighbour list is neither.
NEIGHBOURS = 20
"""Neighbours kept per product and kind in ``product_neighbours``."""
PRODUCT_NEIGHBOURS = ViewSpec(
    name="product_neighbours",
    keys=("product_id",),
    description="A product's nearest neighbours by co-occurrence in shoppers' sessions, recency-weighted "
                "(freshcart.recommendation.cooccurrence), for the co_viewed and co_bought candidate sources.",
    features=(
        Feature("co_viewed_ids", pa.list_(pa.int64()),
                f"the {NEIGHBOURS} products most often seen in the same sessions, best first"),
        Feature("co_viewed_weights", pa.list_(pa.float64()),
                "their cosine-normalised, recency-weighted session co-occurrence, in the same order"),
        Feature("co_bought_ids", pa.list_(pa.int64()),
                f"the {NEIGHBOURS} products most often carted or bought in sessions that saw this one, best first"),
        Feature("co_bought_weights", pa.list_(pa.float64()),
                "their cosine-normalised, recency-weighted co-occurrence, in the same order"),
    ),
)
CANDIDATE_VIEWS: dict[str, ViewSpec] = {PRODUCT_NEIGHBOURS.name: PRODUCT_NEIGHBOURS}

# On-demand features: computed at request time from a candidate and the stored features.
REQUEST_FIELDS: dict[str, pa.DataType] = {
    "request_price": pa.float64(),  # the candidate product's price
    "request_category_id": pa.int64(),  # the candidate product's category
    "request_ts": pa.float64(),  # Unix seconds of the request (the view time in training sets)
}
ON_DEMAND = ViewSpec(
    name="propensity_on_demand",
    keys=(),
    description="Features of a (user, candidate product) pair known only at request time.",
    features=(
        Feature("price_vs_user_avg", pa.float64(),
                "candidate price / the user's average purchase price over 30d (null without purchases)"),
        Feature("category_in_user_top3", pa.int64(), "1 if the candidate's category is among the user's top 3"),
        Feature("seconds_since_last_event", pa.float64(), "request time minus the user's latest event time"),
    ),
)
