"""Feature views, the on-demand view and the feature services of FreshCart's Feast repository.

The views are generated from :mod:`freshcart.features.spec` (names, keys, Feast types mapped
from the Arrow types, descriptions, ttl = spec.LOOKBACK): change a feature there, run
``feast plan`` / ``feast apply`` here. One feature service per model. ``product_neighbours``
(spec.CANDIDATE_VIEWS) is read by the candidate sources of /recommend, not by a model.
"""

from __future__ import annotations

import pandas as pd
from feast import FeatureService, FeatureView, Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view

from freshcart.features import spec
from freshcart.features.store import feast_dtype, feast_fields
from freshcart_sources import CANDIDATE_SOURCES, ENTITY_BY_KEY, PUSH_SOURCES


def feature_view(view: spec.ViewSpec, sources: dict = PUSH_SOURCES) -> FeatureView:  # type: ignore[type-arg]
    """The Feast view of a spec: batch rows from its files and, for a model view, fresh rows from its push source
    (a candidate view, ``sources=CANDIDATE_SOURCES``, has batch rows only, from the co-occurrence task)."""
    return FeatureView(
        name=view.name,
        entities=[ENTITY_BY_KEY[key] for key in view.keys],
        schema=feast_fields(view),
        source=sources[view.name],
        ttl=spec.LOOKBACK,
        online=True,
        description=view.description,
    )


user_activity = feature_view(spec.USER_ACTIVITY)
product_activity = feature_view(spec.PRODUCT_ACTIVITY)
user_category = feature_view(spec.USER_CATEGORY)
user_session = feature_view(spec.USER_SESSION)
product_neighbours = feature_view(spec.PRODUCT_NEIGHBOURS, CANDIDATE_SOURCES)

propensity_request = RequestSource(
    name="propensity_request",
    schema=[Field(name=name, dtype=feast_dtype(dtype)) for name, dtype in spec.REQUEST_FIELDS.items()],
    description="The candidate product's price and category and the request time, sent with each scoring call.",
)


@on_demand_feature_view(
    name=spec.ON_DEMAND.name,
    sources=[user_activity[["avg_purchase_price_30d", "top_categories_30d", "last_event_ts"]], propensity_request],
    schema=feast_fields(spec.ON_DEMAND, descriptions=False),  # described in spec.ON_DEMAND
    mode="pandas",  # python mode drops its outputs when full_feature_names=True (Feast 0.67)
    description=spec.ON_DEMAND.description,
)
def propensity_on_demand(inputs: pd.DataFrame) -> pd.DataFrame:
    """Candidate-vs-user features per request row: FreshCart's one implementation, shared with training."""
    from freshcart.features.on_demand import on_demand_features  # imported here: Feast stores this source

    return on_demand_features(inputs)


def _all_but(view: FeatureView, *left_out: str) -> list[str]:
    return [f.name for f in view.features if f.name not in left_out]


propensity_xgboost = FeatureService(
    name="propensity_xgboost",
    features=[
        user_activity[_all_but(user_activity, "top_categories_30d")],
        product_activity,
        user_category,
        user_session[["session_events", "session_products", "session_carts"]],
        propensity_on_demand,
    ],
    description="Tabular features of a (user, candidate product) pair for the XGBoost propensity model.",
)

propensity_sequence = FeatureService(
    name="propensity_sequence",
    features=[
        user_session[["recent_product_ids", "recent_category_ids", "session_events", "session_carts"]],
        user_activity[["views_24h", "carts_24h", "purchases_30d"]],
        product_activity[["views_24h", "conversion_rate_7d", "current_price"]],
        propensity_on_demand[["price_vs_user_avg", "category_in_user_top3"]],
    ],
    description="The user's recent item sequence plus a few tabular features for the attention (DIN-style) model.",
)
