"""Erasure in the stream processor's state: the local state cache and the changelog topic.

The user stage keeps, per partition of the events topic, the feature state of each shopper
(``u:<user_id>``) and of each (shopper, category) pair (``c:<user_id>:<category_id>``) in a
compacted changelog topic, with a SQLite copy per partition on each host that ran it
(:mod:`freshcart.stream.changelog`, :mod:`freshcart.stream.checkpoint`). Erasure

1. refuses while the stream processor's consumer group has members (a running processor holds
   the state in memory and would write it back at its next checkpoint): stop it first;
2. rewrites each local cache that holds the shopper, without the shopper's keys (same position,
   so the next start restores from it and reads only the changelog records after it);
3. writes a tombstone for each of the shopper's keys into its changelog partition, in one
   transaction of that partition's own transactional id (which also fences any owner left):
   a restore from the changelog skips deleted keys, and compaction removes the records.

The product stage's state holds per-product counts only, no shopper id.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kafka import TopicPartition

from freshcart.kafka_io import admin_client, changelog_topic
from freshcart.settings import Settings
from freshcart.stream.changelog import ChangelogReader, ChangelogWriter
from freshcart.stream.checkpoint import CheckpointStore, checkpoint_path
from freshcart.stream.processor import UserTask
from freshcart.stream.slots import state_dir


class StreamRunning(RuntimeError):
    """The stream processor runs: its state cannot be erased under it."""


@dataclass
class StreamErasure:
    cache_keys: Counter[str] = field(default_factory=Counter)  # users / pairs removed from local caches
    tombstones: int = 0
    changelog_partitions: list[int] = field(default_factory=list)


def shopper_keys(key: bytes, user_id: int) -> bool:
    """True for the changelog keys of the shopper: ``u:<id>`` and ``c:<id>:<category>``."""
    return key == f"u:{user_id}".encode() or key.startswith(f"c:{user_id}:".encode())


def check_stopped(settings: Settings) -> None:
    """Raise :class:`StreamRunning` when the stream group has active members."""
    admin = admin_client(settings, "freshcart-privacy")
    try:
        groups = admin.describe_groups([settings.stream_group])
    finally:
        admin.close()
    for group in groups.values():
        members = group.get("members") or []
        if members:
            raise StreamRunning(
                f"the stream processor (consumer group {settings.stream_group}) has {len(members)} running "
                f"member(s); stop it (Ctrl-C of `freshcart stream consume`, or scale its deployment to 0) and "
                f"run the erasure again")


def _cache_files(settings: Settings) -> list[tuple[int, Path]]:
    root = state_dir(settings)
    found = []
    for partition in range(settings.events_partitions):
        path = checkpoint_path(root, settings.events_topic, partition)
        if path.exists():
            found.append((partition, path))
    return found


def forget_in_cache(settings: Settings, user_id: int) -> Counter[str]:
    """Rewrite each local state cache of the user stage that holds the shopper, without the shopper's keys."""
    removed: Counter[str] = Counter()
    for partition, path in _cache_files(settings):
        store = CheckpointStore(path)
        try:
            parts, meta = store.load()
            task = UserTask(partition, settings.stream_allowed_lateness_seconds * 1_000_000)
            task.restore(parts, meta)
            users, pairs = task.features.users, task.features.pairs
            mine_pairs = [key for key in pairs if key[0] == user_id]
            if user_id not in users and not mine_pairs:
                continue
            if users.pop(user_id, None) is not None:
                removed["users"] += 1
            for key in mine_pairs:
                del pairs[key]
            removed["pairs"] += len(mine_pairs)
            store.replace(task.snapshot(), task.meta)
        finally:
            store.close()
    return removed


def forget_in_changelog(settings: Settings, user_id: int) -> tuple[int, list[int]]:
    """Tombstones for the shopper's live keys in the events topic's changelog; (tombstones, partitions)."""
    topic = changelog_topic(settings, settings.events_topic)
    reader = ChangelogReader(settings, "freshcart-privacy")
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.events_partitions)]
        live: dict[int, dict[bytes, bool]] = {}
        for tp, _offset, key, value in reader.read({tp: 0 for tp in partitions}):
            if key is not None and shopper_keys(key, user_id):
                live.setdefault(tp.partition, {})[key] = value is not None
    finally:
        reader.close()
    written, touched = 0, []
    for partition, keys in sorted(live.items()):
        doomed = [key for key, alive in sorted(keys.items()) if alive]
        if not doomed:
            continue
        writer = ChangelogWriter(settings, topic, partition, "freshcart-privacy")
        try:
            writer.open()
            records = [(key, None) for key in doomed]
            writer.stage(records)
            writer.commit(records)
        finally:
            writer.close()
        written += len(doomed)
        touched.append(partition)
    return written, touched


def forget_stream_state(settings: Settings, user_id: int) -> StreamErasure:
    """The shopper out of the user stage's state (see the module docstring); the processor must be stopped."""
    check_stopped(settings)
    result = StreamErasure(cache_keys=forget_in_cache(settings, user_id))
    result.tombstones, result.changelog_partitions = forget_in_changelog(settings, user_id)
    return result
