"""A partition's keyed state when the partition is assigned: from the changelog, with the local file as a cache.

The changelog topic (:mod:`freshcart.stream.changelog`) holds the state; the SQLite file of
:mod:`freshcart.stream.checkpoint` caches it on the host. For each assigned partition:

1. the partition's changelog producer takes it over: the previous owner's open transaction, if
   any, is aborted (or completed) and that owner is fenced, so the changelog's end is final;
2. when the cache records the offset of its position in the changelog and the record there is
   that very position, the cache holds the state up to it: only the records after it are read
   and applied (none, when the cache is as new as the changelog);
3. otherwise (no cache, a cache of another host's past, one that compaction has moved past) the
   state is rebuilt from the whole changelog, read up to its end offset, and the cache rewritten.

A cache of a partition whose changelog is still empty (state kept before changelogs existed) is
used as it is and written to the changelog in full at the next checkpoint.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kafka import TopicPartition

from freshcart.kafka_io import changelog_topic
from freshcart.settings import Settings
from freshcart.stream.changelog import META_KEY, ChangelogReader, ChangelogState, ChangelogWriter, decode_meta
from freshcart.stream.checkpoint import CheckpointStore, checkpoint_path
from freshcart.stream.processor import ProductTask, TaskState, UserTask

OPEN_THREADS = 8


@dataclass
class Restored:
    """A restored partition: its task, cache, changelog producer, and where the state came from."""

    task: UserTask | ProductTask
    store: CheckpointStore
    writer: ChangelogWriter
    source: str  # "cache", "cache + changelog", "changelog", "cache (no changelog yet)" or "nothing"
    records: int = 0  # changelog records read
    seconds: float = 0.0
    full_snapshot: bool = False  # the next checkpoint writes the whole state to the changelog

    @property
    def keys(self) -> int:
        features = self.task.features
        return len(features.users) + len(features.pairs) + len(features.products)


def new_task(settings: Settings, tp: TopicPartition) -> UserTask | ProductTask:
    if tp.topic == settings.events_topic:
        return UserTask(tp.partition, settings.stream_allowed_lateness_seconds * 1_000_000,
                        neighbours=settings.stream_neighbours)
    return ProductTask(tp.partition)


def restore_partitions(settings: Settings, partitions: list[TopicPartition], reader: ChangelogReader,
                       state_dir: Path, client_id: str) -> dict[TopicPartition, Restored]:
    """Take each partition over and restore its state (see the module docstring)."""
    started = time.perf_counter()
    changelogs = {tp: TopicPartition(changelog_topic(settings, tp.topic), tp.partition) for tp in partitions}
    writers = _open_writers(settings, [changelogs[tp] for tp in partitions], client_id)
    restored = {tp: Restored(new_task(settings, tp),
                             CheckpointStore(checkpoint_path(state_dir, tp.topic, tp.partition)),
                             writers[changelogs[tp]], "nothing") for tp in partitions}
    try:
        ends = reader.end_offsets(list(changelogs.values()))
        cached: dict[TopicPartition, TaskState] = {}
        rebuild: list[TopicPartition] = []
        for tp, r in restored.items():
            parts, meta = r.store.load()
            end, position = ends[changelogs[tp]], meta.changelog_offset
            if 0 <= position < end:  # the cache of a position in this changelog: checked by _read
                r.task.restore(parts, meta)
                r.source = "cache"
                cached[tp] = meta
            elif position < 0 and end == 0:  # no changelog yet: the cache as it is, if any
                r.task.restore(parts, meta)
                r.source = "cache (no changelog yet)" if meta.next_offset else "nothing"
                r.full_snapshot = meta.next_offset > 0
            else:
                rebuild.append(tp)
        states = _read(reader, {changelogs[tp]: meta.changelog_offset for tp, meta in cached.items()}, cached,
                       changelogs)
        for tp in cached:
            state = states.get(changelogs[tp])
            if state is None:  # the changelog no longer holds the cache's position: rebuild from all of it
                restored[tp].task = new_task(settings, tp)
                rebuild.append(tp)
            elif state.records > 1:
                _apply(restored[tp], state, "cache + changelog")
        rebuilt = _read(reader, {changelogs[tp]: 0 for tp in rebuild}, {}, changelogs)
        for tp in rebuild:
            _apply(restored[tp], rebuilt[changelogs[tp]], "changelog")
    except BaseException:
        for r in restored.values():
            r.writer.close()
            r.store.close()
        raise
    for r in restored.values():
        r.seconds = time.perf_counter() - started
    return restored


def _open_writers(settings: Settings, changelogs: list[TopicPartition],
                  client_id: str) -> dict[TopicPartition, ChangelogWriter]:
    """A producer per changelog partition, each taking its partition over (in parallel: each waits for the broker)."""

    def open_writer(ctp: TopicPartition) -> ChangelogWriter:
        writer = ChangelogWriter(settings, ctp.topic, ctp.partition, client_id)
        try:
            writer.open()
        except BaseException:
            writer.close()
            raise
        return writer

    with ThreadPoolExecutor(max_workers=max(1, min(OPEN_THREADS, len(changelogs)))) as pool:
        futures = {ctp: pool.submit(open_writer, ctp) for ctp in changelogs}
    writers, errors = {}, []
    for ctp, future in futures.items():
        try:
            writers[ctp] = future.result()
        except Exception as exc:  # noqa: BLE001 - closed below, the first error raised
            errors.append(exc)
    if errors:
        for writer in writers.values():
            writer.close()
        raise errors[0]
    return writers


def _read(reader: ChangelogReader, starts: dict[TopicPartition, int], cached: dict[TopicPartition, TaskState],
          changelogs: dict[TopicPartition, TopicPartition]) -> dict[TopicPartition, ChangelogState]:
    """The changelog partitions' records from ``starts`` on. A partition read from a cache's position is left
    out unless its first record is the cache's own position record."""
    expected = {changelogs[tp]: meta for tp, meta in cached.items()}
    states = {ctp: ChangelogState() for ctp in starts}
    for ctp, offset, key, value in reader.read(starts):
        state = states.get(ctp)
        if state is None:
            continue
        if state.records == 0 and ctp in expected:
            meta = expected[ctp]
            if offset != meta.changelog_offset or key != META_KEY or value is None or \
                    decode_meta(value, offset).checkpoint != meta.checkpoint:
                del states[ctp]
                continue
        state.add(offset, key, value)
    return {ctp: state for ctp, state in states.items() if state.records or ctp not in expected}


def _apply(restored: Restored, state: ChangelogState, source: str) -> None:
    """Apply what the changelog holds beyond the cache, and make the cache hold the result."""
    task = restored.task
    task.restore([state.part], state.meta or TaskState())
    restored.store.replace(task.snapshot(), task.meta)
    restored.source, restored.records, restored.full_snapshot = source, state.records, False
