"""`freshcart privacy forget` against the real broker and online stores (SQLite and Redis).

Simulated traffic goes through the real stream processor (`freshcart stream consume`), so the
online store, the stream's offline rows, its local state cache and its changelog topic hold
every shopper; the offline events, the landing zone, batch feature tables and landed prediction
records are written beside them. One shopper is forgotten: afterwards no store returns them,
every other shopper's data is as it was (byte for byte in files that did not hold the shopper,
row for row in those rewritten, value for value in the online store, the changelog and the
cache), and a restarted stream processor does not bring the shopper back.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kafka import TopicPartition

from freshcart import storage
from freshcart.features.store import feature_store
from freshcart.features.tables import build_feature_tables
from freshcart.ingestion.landing import write_landing_jsonl
from freshcart.kafka_io import changelog_topic
from freshcart.privacy.forget import audit_path, forget_shopper
from freshcart.privacy.online import _is_shoppers, user_views
from freshcart.privacy.stream_state import StreamRunning, shopper_keys
from freshcart.schema import events_to_table
from freshcart.settings import Settings
from freshcart.stream.changelog import ChangelogReader
from freshcart.stream.checkpoint import CheckpointStore, checkpoint_path
from freshcart.stream.consumer import CONSUMER_SETTINGS
from freshcart.stream.processor import UserTask
from freshcart.stream.slots import state_dir
from tests.integration.test_stream import (
    applied_local, local_stream, messages_of, produce, production_stream, run_until_idle, simulated, wait_for,
)

__all__ = ["applied_local", "local_stream", "production_stream"]  # the fixtures, shared with test_stream.py


def online_rows(settings: Settings) -> dict[bytes, Any]:
    """Every entity row of the user-keyed views: serialised key -> its stored values."""
    store = feature_store(settings)
    config = store.config
    views = user_views(store)
    rows: dict[bytes, Any] = {}
    if config.online_store.type == "sqlite":
        import sqlite3

        from feast.infra.online_stores.sqlite import SqliteOnlineStore

        conn = sqlite3.connect(SqliteOnlineStore._get_db_path(config))
        for view in views:
            for key, feature, value, ts in conn.execute(
                    f'SELECT entity_key, feature_name, value, event_ts FROM "{config.project}_{view.name}" '
                    "ORDER BY entity_key, feature_name"):
                rows.setdefault(bytes(key), []).append((view.name, feature, bytes(value), ts))
        conn.close()
    else:
        from feast.infra.online_stores.redis import RedisOnlineStore

        client = RedisOnlineStore()._get_client(config.online_store)
        project = config.project.encode()
        for key in client.scan_iter(match=b"*" + project):
            rows[key[: -len(project)]] = sorted(client.hgetall(key).items())
    return rows


def changelog_latest(settings: Settings) -> dict[bytes, bytes | None]:
    topic = changelog_topic(settings, settings.events_topic)
    reader = ChangelogReader(settings, "freshcart-test")
    latest: dict[bytes, bytes | None] = {}
    try:
        for _tp, _offset, key, value in reader.read({TopicPartition(topic, p): 0
                                                     for p in range(settings.events_partitions)}):
            if key is not None and not key.startswith((b"s:", b"\x00")):
                latest[key] = value
    finally:
        reader.close()
    return latest


def cache_state(settings: Settings) -> dict[int, tuple[dict, dict]]:
    states = {}
    for partition in range(settings.events_partitions):
        path = checkpoint_path(state_dir(settings), settings.events_topic, partition)
        if path.exists():
            store = CheckpointStore(path)
            parts, meta = store.load()
            store.close()
            task = UserTask(partition, 0)
            task.restore(parts, meta)
            states[partition] = (task.features.users, task.features.pairs)
    return states


def files_of(settings: Settings) -> dict[Path, bytes]:
    skipped = ("feast", "stream", "kafka", "privacy", "logs", "run")
    return {p: p.read_bytes() for p in sorted(settings.data_dir.rglob("*"))
            if p.is_file() and p.relative_to(settings.data_dir).parts[0] not in skipped
            and p.suffix in (".parquet", ".jsonl")}


def rows_of(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("profile", ["local", "production"])
def test_forget_removes_one_shopper_everywhere_and_keeps_every_other(
        profile: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    settings: Settings = request.getfixturevalue(f"{profile}_stream")
    events = simulated(6_000, seed=23)
    produce(settings, messages_of(events))
    run_until_idle(settings, tmp_path / "consume.log")
    table = events_to_table(events)
    for day, rows in storage.split_by_date(table).items():
        storage.upsert_partition(settings.offline_events_dir, day, rows)
    days = storage.list_partitions(settings.offline_events_dir)
    write_landing_jsonl(events, settings.landing_dir, days[0], "archive")
    build_feature_tables(settings, days[0], days[-1] + timedelta(days=1))
    counts = Counter(e.user_id for e in events)
    target, second = (user for user, _ in counts.most_common(2))
    predictions = pa.table({"request_id": ["r1", "r2", "r3"], "position": [0, 0, 1],
                            "user_id": pa.array([target, second, second], pa.int64()), "score": [0.1, 0.2, 0.3]})
    path = settings.offline_dir / "predictions" / f"prediction_date={days[0]}" / "data.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(predictions, path)

    version = feature_store(settings).config.entity_key_serialization_version
    files, online, changelog, cache = files_of(settings), online_rows(settings), changelog_latest(settings), \
        cache_state(settings)
    assert any(_is_shoppers(k, target, version) for k in online)
    assert any(shopper_keys(k, target) and v for k, v in changelog.items())
    assert any(target in users for users, _ in cache.values())

    if profile == "local":  # a running stream processor: refused, nothing removed
        log = tmp_path / "running.log"
        running = subprocess.Popen([sys.executable, "-m", "freshcart", "stream", "consume"],
                                   env=settings.child_env(CONSUMER_SETTINGS), stdout=log.open("a"),
                                   stderr=subprocess.STDOUT)
        try:
            wait_for(log, "freshcart.stream: restored")
            with pytest.raises(StreamRunning, match="stop it"):
                forget_shopper(settings, target, requested_by="test")
        finally:
            running.terminate()
            running.wait(timeout=60)
        assert files_of(settings) == files and not audit_path(settings).exists()

    erasure = forget_shopper(settings, target, requested_by="privacy-officer")

    # files: untouched ones byte for byte, rewritten ones row for row without the shopper
    after = files_of(settings)
    assert set(after) == set(files)
    changed = [p for p in files if after[p] != files[p]]
    assert changed and len(changed) < len(files)
    target_events = {e.event_id for e in events if e.user_id == target}
    for p in changed:
        kept = [r for r in rows_of_bytes(p, files[p]) if r.get("user_id") != target]
        assert rows_of(p) == kept
    for p in files:
        assert all(r.get("user_id") != target for r in rows_of(p))
    assert target_events.isdisjoint(storage.read_events(settings.offline_events_dir)["event_id"].to_pylist())
    # the online store, the changelog and the cache: the shopper's keys gone, every other one as it was
    assert online_rows(settings) == {k: v for k, v in online.items() if not _is_shoppers(k, target, version)}
    latest = changelog_latest(settings)
    assert {k: v for k, v in latest.items() if v is not None} == {
        k: v for k, v in changelog.items() if v is not None and not shopper_keys(k, target)}
    assert all(latest[k] is None for k in changelog if shopper_keys(k, target))
    now = cache_state(settings)
    for partition, (users, pairs) in cache.items():
        assert pickle.dumps(now[partition]) == pickle.dumps(
            ({u: s for u, s in users.items() if u != target}, {k: s for k, s in pairs.items() if k[0] != target}))
    # no store returns the shopper
    served = feature_store(settings).get_online_features(
        features=["user_activity:views_7d", "user_session:session_events", "user_category:category_views_30d"],
        entity_rows=[{"user_id": target, "category_id": e.category_id} for e in events if e.user_id == target][:3],
    ).to_dict()
    assert all(v is None for name, values in served.items() if name not in ("user_id", "category_id")
               for v in values), served
    # the audit record
    audit = [json.loads(line) for line in audit_path(settings).read_text().splitlines()]
    assert len(audit) == 1 and audit[0]["user_id"] == target and audit[0]["requested_by"] == "privacy-officer"
    assert audit[0]["files"]["offline/events"] == counts[target] and audit[0]["files"]["landing"] == counts[target]
    assert audit[0]["files"]["offline/predictions"] == 1 and audit[0]["total"] == erasure.total > 0
    assert audit[0]["stream"]["tombstones"] == sum(1 for k, v in changelog.items() if shopper_keys(k, target) and v)

    # a restarted stream processor restores without the shopper and writes nothing back
    run_until_idle(settings, tmp_path / "again.log")
    assert not any(_is_shoppers(k, target, version) for k in online_rows(settings))
    assert online_rows(settings) == {k: v for k, v in online.items() if not _is_shoppers(k, target, version)}


def rows_of_bytes(path: Path, data: bytes) -> list[dict]:
    """The rows a file held before (``data``: its bytes then)."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / path.name
        copy.write_bytes(data)
        return rows_of(copy)
