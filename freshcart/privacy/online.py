"""Erasure in the online store: every entity row of one shopper, in Feast's SQLite or Redis store.

The feature views keyed by ``user_id`` (alone or with other keys, as ``user_category``) are read
from the Feast registry. Each stored entity key is decoded with Feast's own
``deserialize_entity_key`` and deleted when its ``user_id`` is the shopper's, so a shopper's
rows of every category go, and no other key is touched.

- SQLite (local profile): one table per view, ``<project>_<view>``, one row per (entity key, feature).
- Redis (production profile): one hash per entity key (the serialised key + the project name)
  holding the fields of every view of that entity; the shopper's hashes are deleted.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from collections import Counter
from typing import Any

from feast.infra.key_encoding_utils import deserialize_entity_key, serialize_entity_key_prefix

from freshcart.features.store import feature_store
from freshcart.settings import Settings

USER_KEY = "user_id"


def _is_shoppers(serialized: bytes, user_id: int, version: int) -> bool:
    try:
        key = deserialize_entity_key(serialized, entity_key_serialization_version=version)
    except Exception:  # noqa: BLE001 - a key of another format is not one of ours
        return False
    for name, value in zip(key.join_keys, key.entity_values):
        if name == USER_KEY:
            return value.WhichOneof("val") == "int64_val" and value.int64_val == user_id
    return False


def user_views(store: Any) -> list[Any]:
    """The registry's feature views with ``user_id`` among their join keys."""
    return [view for view in store.list_feature_views() if USER_KEY in view.join_keys]


def _forget_sqlite(store: Any, views: list[Any], user_id: int) -> Counter[str]:
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    config = store.config
    removed: Counter[str] = Counter()
    path = SqliteOnlineStore._get_db_path(config)
    if not Path(path).exists():
        return removed
    conn = sqlite3.connect(path, timeout=30)
    try:
        with conn:
            for view in views:
                table = f"{config.project}_{view.name}"
                quoted = '"' + table.replace('"', '""') + '"'
                exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                      (table,)).fetchone()
                if not exists:
                    continue
                # bandit B608: the table name is a view's from the Feast registry, quoted; the key is bound
                select = f"SELECT DISTINCT entity_key FROM {quoted}"  # nosec B608
                delete = f"DELETE FROM {quoted} WHERE entity_key = ?"  # nosec B608
                keys = [k for (k,) in conn.execute(select)
                        if _is_shoppers(bytes(k), user_id, config.entity_key_serialization_version)]
                for key in keys:
                    conn.execute(delete, (key,))
                if keys:
                    removed[view.name] += len(keys)
    finally:
        conn.close()
    return removed


def _forget_redis(store: Any, views: list[Any], user_id: int) -> Counter[str]:
    from feast.infra.online_stores.redis import RedisOnlineStore

    config = store.config
    client = RedisOnlineStore()._get_client(config.online_store)
    project = config.project.encode()
    removed: Counter[str] = Counter()
    by_keys: dict[tuple[str, ...], list[str]] = {}
    for view in views:
        by_keys.setdefault(tuple(view.join_keys), []).append(view.name)
    for join_keys, names in sorted(by_keys.items()):
        pattern = serialize_entity_key_prefix(list(join_keys)) + b"*" + project
        doomed = [key for key in client.scan_iter(match=pattern, count=1000)
                  if key.endswith(project) and _is_shoppers(key[: -len(project)], user_id,
                                                            config.entity_key_serialization_version)]
        if doomed:
            client.delete(*doomed)
            removed["+".join(names)] += len(doomed)
    return removed


def forget_online(settings: Settings, user_id: int) -> Counter[str]:
    """Delete the shopper's entity rows from the profile's online store; entity keys removed per view
    (Redis: per group of views sharing a key)."""
    store = feature_store(settings)
    views = user_views(store)
    kind = store.config.online_store.type
    if kind == "sqlite" or str(kind).endswith("SqliteOnlineStore"):
        return _forget_sqlite(store, views, user_id)
    if kind == "redis" or str(kind).endswith("RedisOnlineStore"):
        return _forget_redis(store, views, user_id)
    raise ValueError(f"the {settings.profile} profile's online store is {kind!r}; erasure supports sqlite and redis")
