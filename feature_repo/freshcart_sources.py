"""Entities and data sources of FreshCart's Feast repository.

Every feature view reads its offline rows from one folder of Parquet files written by
``freshcart features build`` (``<data_dir>/offline/features/<view>/event_date=YYYY-MM-DD/``)
and is kept fresh online by a push source that the stream consumer pushes to. Names,
keys and descriptions come from :mod:`freshcart.features.spec`; the folder from
FreshCart's settings (the checkout's data/, or FRESHCART_DATA_DIR), checked against the
YAML that Feast reads.
"""

from __future__ import annotations

from feast import Entity, FileSource, Project, PushSource, ValueType

from freshcart.features import spec
from freshcart.features.store import PROJECT, repo_settings

settings = repo_settings()

freshcart = Project(
    name=PROJECT, description="FreshCart: features for e-commerce purchase propensity and recommendation.")

user = Entity(
    name="user", join_keys=["user_id"], value_type=ValueType.INT64,
    description="A shopper (user_id of the event stream); the key of the user-level views.",
)
product = Entity(
    name="product", join_keys=["product_id"], value_type=ValueType.INT64,
    description="A catalogue item (product_id); the key of the product-level view and the candidate of a prediction.",
)
category = Entity(
    name="category", join_keys=["category_id"], value_type=ValueType.INT64,
    description="A catalogue category (category_id); with user, the key of the user-category view.",
)
ENTITY_BY_KEY: dict[str, Entity] = {"user_id": user, "product_id": product, "category_id": category}


def batch_source(view: spec.ViewSpec) -> FileSource:
    """The offline rows of a view: a folder of date-partitioned Parquet files with the view's schema."""
    return FileSource(
        name=f"{view.name}_batch",
        path=str(settings.feature_tables_dir / view.name),
        timestamp_field=spec.TIMESTAMP,
        description=f"Offline rows of {view.name} (one per key and event time), for training sets and materialisation.",
    )


def push_source(view: spec.ViewSpec) -> PushSource:
    """The stream's way into a view: rows pushed by the consumer as events arrive."""
    return PushSource(
        name=f"{view.name}_push",
        batch_source=batch_source(view),
        description=f"Rows of {view.name} pushed by the stream consumer to keep online values fresh.",
    )


user_activity_push = push_source(spec.USER_ACTIVITY)
product_activity_push = push_source(spec.PRODUCT_ACTIVITY)
user_category_push = push_source(spec.USER_CATEGORY)
user_session_push = push_source(spec.USER_SESSION)
PUSH_SOURCES: dict[str, PushSource] = {
    "user_activity": user_activity_push,
    "product_activity": product_activity_push,
    "user_category": user_category_push,
    "user_session": user_session_push,
}
# The candidate views have no push source: their rows come from the co-occurrence task only.
CANDIDATE_SOURCES: dict[str, FileSource] = {name: batch_source(view) for name, view in spec.CANDIDATE_VIEWS.items()}
if set(PUSH_SOURCES) != set(spec.VIEWS):
    raise SystemExit(
        f"feature_repo: spec.VIEWS has {sorted(spec.VIEWS)} but freshcart_sources.py defines push sources "
        f"for {sorted(PUSH_SOURCES)}; add the missing view here and in freshcart_views.py"
    )
