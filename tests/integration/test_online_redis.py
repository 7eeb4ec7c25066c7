"""The stream's fast Redis writer stores exactly what ``FeatureStore.push`` stores, on the real Redis."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import redis

from freshcart.features import spec
from freshcart.features.store import apply, feature_store
from freshcart.settings import Settings
from freshcart.stream.sinks import FastRedisWriter, PushWriter, online_writer
from tests.integration.conftest import REDIS_DB
from tests.unit.test_materialize import random_tables


def latest_per_key(view: str, table: pa.Table) -> pa.Table:
    frame = table.to_pandas().drop_duplicates(subset=list(spec.VIEWS[view].keys), keep="last")
    return pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False)


def dump(client: redis.Redis) -> dict[bytes, tuple[dict[bytes, bytes], bool]]:
    """Every hash in the database: its fields and whether it expires."""
    return {key: (client.hgetall(key), client.ttl(key) > 0) for key in client.scan_iter(count=1000)}


def write_all(writer: Any, tables: dict[str, pa.Table]) -> None:
    for view, table in tables.items():
        writer.write(view, table)


def test_fast_redis_writer_stores_what_push_stores(production: Settings) -> None:
    assert apply(production).returncode == 0
    store = feature_store(production)
    client = redis.Redis.from_url(production.online_redis_url)  # db REDIS_DB, with the password
    tables = {view: latest_per_key(view, t) for view, t in random_tables(seed=11).items()
              if view in spec.VIEWS}  # the views the stream writes (not the batch-built candidate view)

    write_all(PushWriter(store), tables)
    by_push = dump(client)
    client.flushdb()
    fast = online_writer(production, feature_store(production))
    assert isinstance(fast, FastRedisWriter)
    write_all(fast, tables)
    by_fast = dump(client)

    assert len(by_fast) > 100 and sum(len(fields) for fields, _ in by_fast.values()) > 1000
    assert by_fast == by_push
    # and Feast reads it back: one user's features through the feature service
    user = int(tables["user_activity"]["user_id"][5].as_py())
    features = store.get_online_features(features=store.get_feature_service("propensity_xgboost"),
                                         entity_rows=[{"user_id": user, "product_id": 1, "category_id": 1,
                                                       "request_price": 1.0, "request_category_id": 1,
                                                       "request_ts": 0.0}],
                                         full_feature_names=True).to_dict()
    expected = tables["user_activity"].slice(5, 1).to_pylist()[0]["views_24h"]
    assert features["user_activity__views_24h"] == [expected]
