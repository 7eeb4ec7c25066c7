"""Both profiles against real stores: feast apply -> materialise -> online features, with hand-computed values.

local: SQLite online store and file registry in a temporary data dir. production: Redis
and the PostgreSQL SQL registry that `make test` starts (`FRESHCART_PROFILE=production
freshcart services up`); the test uses its own registry database and Redis database
and removes them afterwards.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pyarrow as pa
import pytest
import redis

from freshcart.features import spec
from freshcart.features.materialize import materialize, materialize_incremental
from freshcart.features.store import feature_store, run_feast
from freshcart.features.tables import write_feature_tables
from freshcart.settings import Settings
from tests.integration.conftest import REDIS_DB

DAY = datetime(2026, 10, 1, tzinfo=timezone.utc)


def at(day: int, hour: int) -> datetime:
    return DAY + timedelta(days=day, hours=hour)


def view_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of a view in its spec schema; features not given are null."""
    schema = spec.VIEWS[name].schema
    return pa.table({f.name: [row.get(f.name) for row in rows] for f in schema}, schema=schema)


USER = {"top_categories_30d": [7, 8, 9], "avg_purchase_price_30d": 20.0, "last_event_ts": 1_000.0}
TABLES = {
    "user_activity": view_table("user_activity", [
        {"user_id": 1, spec.TIMESTAMP: at(0, 10), "views_1h": 3, "spend_7d": 10.0, **USER},
        {"user_id": 1, spec.TIMESTAMP: at(1, 9), "views_1h": 5, "spend_7d": 12.5, **USER},
        {"user_id": 1, spec.TIMESTAMP: at(2, 1), "views_1h": 7, "spend_7d": 12.5, **USER},  # after the interval
        {"user_id": 2, spec.TIMESTAMP: at(0, 12), "views_1h": 1, "top_categories_30d": []},
    ]),
    "product_activity": view_table("product_activity", [
        {"product_id": 100, spec.TIMESTAMP: at(1, 8), "views_24h": 40, "conversion_rate_7d": 0.0125,
         "current_price": 30.0},
    ]),
    "user_category": view_table("user_category", [
        {"user_id": 1, "category_id": 8, spec.TIMESTAMP: at(1, 9), "category_views_30d": 6,
         "category_view_share_30d": 0.75},
    ]),
    "user_session": view_table("user_session", [
        {"user_id": 1, spec.TIMESTAMP: at(1, 9), "session_events": 4, "session_products": 3, "session_carts": 1,
         "recent_product_ids": [11, 12, 100], "recent_category_ids": [7, 7, 8]},
    ]),
}
REQUEST = {"user_id": 1, "product_id": 100, "category_id": 8, "request_price": 30.0, "request_category_id": 8,
           "request_ts": 1_600.0}


@pytest.mark.parametrize("profile", ["local", "production"])
def test_apply_materialize_and_serve(profile: str, request: pytest.FixtureRequest) -> None:
    settings: Settings = request.getfixturevalue(profile)
    write_feature_tables(settings.feature_tables_dir, TABLES, DAY.date(), DAY.date() + timedelta(days=3))
    applied = run_feast(settings, "apply", capture=True)
    assert applied.returncode == 0, applied.stdout + applied.stderr

    report = materialize(settings, DAY, DAY + timedelta(days=2))
    assert report.online_store == {"local": "sqlite", "production": "redis"}[profile]
    assert {v.view: v.entity_rows for v in report.views} == {
        "user_activity": 2, "product_activity": 1, "user_category": 1, "user_session": 1,
        "product_neighbours": 0}  # the candidate view: no neighbour table written here

    store = feature_store(settings)
    rows = [REQUEST, {**REQUEST, "user_id": 2, "category_id": 7}]
    got = store.get_online_features(features=store.get_feature_service("propensity_xgboost"), entity_rows=rows,
                                    full_feature_names=True).to_dict()
    assert got["user_activity__views_1h"] == [5, 1]  # the latest row of [10-01, 10-03) of each user
    assert got["user_activity__spend_7d"] == [12.5, None]
    assert got["product_activity__conversion_rate_7d"] == [0.0125, 0.0125]
    assert got["user_category__category_view_share_30d"] == [0.75, None]
    assert got["user_session__session_events"] == [4, None]
    assert got["propensity_on_demand__price_vs_user_avg"] == [pytest.approx(1.5), None]  # 30 / 20; no purchases
    assert got["propensity_on_demand__category_in_user_top3"] == [1, 0]
    assert got["propensity_on_demand__seconds_since_last_event"][0] == pytest.approx(600.0)
    sequence = store.get_online_features(features=store.get_feature_service("propensity_sequence"),
                                         entity_rows=rows[:1], full_feature_names=True).to_dict()
    assert sequence["user_session__recent_product_ids"] == [[11, 12, 100]]
    assert sequence["user_session__recent_category_ids"] == [[7, 7, 8]]

    again = materialize_incremental(settings, DAY + timedelta(days=3), ["user_activity"])
    assert [(v.start, v.entity_rows) for v in again.views] == [(DAY + timedelta(days=2), 1)]
    latest = feature_store(settings).get_online_features(features=["user_activity:views_1h"],
                                                         entity_rows=[{"user_id": 1}]).to_dict()
    assert latest["views_1h"] == [7]

    if profile == "production":  # the registry lives in PostgreSQL, the values in Redis
        with psycopg.connect(settings.postgres_dsn()) as conn:
            names = {r[0] for r in conn.execute("SELECT feature_view_name FROM feature_views")}
        assert names == set(spec.VIEWS) | set(spec.CANDIDATE_VIEWS)
        assert redis.Redis.from_url(settings.online_redis_url).dbsize() >= 4  # db REDIS_DB, with the password
    else:
        assert (settings.data_dir / "feast" / "registry.db").is_file()
        assert (settings.data_dir / "feast" / "online_store.db").is_file()
