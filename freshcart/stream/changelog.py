"""Keyed stream state kept in Kafka: one compacted changelog topic per input topic, as Kafka Streams keeps it.

Partition p of ``<group>-<topic>-changelog`` (:func:`freshcart.kafka_io.changelog_topic`) holds
the state of partition p of the input topic, one record per state key:

- ``u:<user_id>``, ``c:<user_id>:<category_id>``, ``p:<product_id>``: the key's feature state,
  pickled as the local checkpoint pickles it; ``n:<product_id>``: the product's neighbour state
  (:class:`freshcart.stream.neighbours.NeighbourItem`; an empty one stands for a deleted one);
- ``s:<checkpoint>:<chunk>``: a batch of the event ids seen in one checkpoint (the user stage's
  duplicate check), and a tombstone for it once every id in it is below the watermark;
- :data:`META_KEY`: the task's position (next offset, watermark, applied source offsets of the
  product stage, checkpoint number, live seen-id batches), JSON, always the last record of a
  checkpoint.

Each checkpoint of a partition is one Kafka transaction of that partition's own transactional
producer (``transactional.id`` = ``<changelog>-<partition>``): a reader that reads committed
records only sees all of a checkpoint or nothing of it, and a new owner's producer fences the
previous owner's (an open transaction of it is aborted, a later commit fails), wherever either
runs. Compaction keeps the latest record of each key, so a partition of the changelog stays about
the size of its state. Feature keys are never deleted; only seen-id batches get tombstones.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pickle
import time
from typing import Any, Iterator

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import (
    InvalidProducerEpochError, KafkaError, ProducerFencedError, TransactionCoordinatorFencedError,
)

from freshcart.kafka_io import client_auth, make_producer
from freshcart.schema import BROKER_MAX_MESSAGE_BYTES
from freshcart.settings import Settings
from freshcart.stream.processor import TaskState

META_KEY = b"\x00meta"
SEEN_PER_RECORD = 10_000  # event ids per seen-id record (well under the broker's message limit)
STORES = {"u": "users", "c": "pairs", "p": "products", "n": "neighbours"}
PREFIXES = {store: prefix for prefix, store in STORES.items()}
_FENCED = (ProducerFencedError, InvalidProducerEpochError, TransactionCoordinatorFencedError)
Record = tuple[bytes, bytes | None]


class ChangelogLost(KafkaError):
    """This process may no longer write a changelog partition (another owner fenced it, or its producer
    failed for good): the partition must be restored again before it is processed."""


def state_key(store: str, key: Any) -> bytes:
    """The changelog key of one feature state key (``store`` is users, pairs or products)."""
    ident = ":".join(map(str, key)) if isinstance(key, tuple) else str(key)
    return f"{PREFIXES[store]}:{ident}".encode()


def encode_meta(meta: TaskState) -> bytes:
    """The position record's value (the local fields, written offset and changelog offset, left out)."""
    saved = dataclasses.asdict(meta)
    del saved["written_offset"], saved["changelog_offset"]
    return json.dumps(saved, separators=(",", ":")).encode()


def decode_meta(value: bytes, offset: int) -> TaskState:
    """A position record read back at ``offset``: nothing after it is written online yet, as far as it knows."""
    meta = TaskState.from_dict(json.loads(value))
    meta.written_offset, meta.changelog_offset = meta.next_offset, offset
    return meta


def encode_changes(changes: dict[str, Any], meta: TaskState, floor_us: int) -> list[Record]:
    """The records of one checkpoint: ``changes`` (a task's ``changes()`` or ``snapshot()``), the new seen ids in
    batches, tombstones for the batches now wholly below ``floor_us`` (the watermark), then the position.

    Advances ``meta.checkpoint`` and keeps ``meta.seen_batches`` up to date.
    """
    records: list[Record] = []
    for store, states in changes.items():
        if store in PREFIXES:
            records.extend((state_key(store, key), pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
                           for key, state in states.items())
    meta.checkpoint += 1
    seen = changes.get("seen")
    if seen is not None:
        for name, latest_us in list(meta.seen_batches.items()):
            if latest_us < floor_us:
                records.append((name.encode(), None))
                del meta.seen_batches[name]
        ids = list(seen.items())
        for chunk, lo in enumerate(range(0, len(ids), SEEN_PER_RECORD)):
            batch = dict(ids[lo:lo + SEEN_PER_RECORD])
            name = f"s:{meta.checkpoint}:{chunk}"
            meta.seen_batches[name] = max(batch.values())
            records.append((name.encode(), pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)))
    records.append((META_KEY, encode_meta(meta)))
    return records


class ChangelogState:
    """A partition's state as its changelog records rebuild it: a later record of a key replaces an earlier one
    (only the latest is decoded), a tombstone deletes it."""

    def __init__(self) -> None:
        self.latest: dict[bytes, bytes | None] = {}
        self.meta: TaskState | None = None  # the last position read
        self.records = 0

    def add(self, offset: int, key: bytes, value: bytes | None) -> None:
        """One record read at ``offset``."""
        self.records += 1
        if key == META_KEY:
            assert value is not None, "the position record is never deleted"
            self.meta = decode_meta(value, offset)
        else:
            self.latest[key] = value

    @functools.cached_property
    def part(self) -> dict[str, dict]:
        """The state read, as one part for a task's ``restore`` (read once all records are added)."""
        part: dict[str, dict] = {"users": {}, "pairs": {}, "products": {}, "neighbours": {}, "seen": {}}
        for key, value in self.latest.items():
            if value is None:
                continue
            prefix, _, ident = key.decode().partition(":")
            if prefix == "s":
                part["seen"].update(pickle.loads(value))
            elif prefix == "c":
                user_id, category_id = ident.split(":")
                part["pairs"][(int(user_id), int(category_id))] = pickle.loads(value)
            else:
                part[STORES[prefix]][int(ident)] = pickle.loads(value)
        return part


class ChangelogWriter:
    """The transactional producer of one changelog partition: one transaction per checkpoint."""

    def __init__(self, settings: Settings, topic: str, partition: int, client_id: str) -> None:
        self.tp = TopicPartition(topic, partition)
        self.producer = make_producer(settings, "stream", client_id=f"{client_id}-changelog", linger_ms=5,
                                      transactional_id=f"{topic}-{partition}")
        self.staged: Any = None  # the future of the position record of the open transaction

    def open(self) -> None:
        """Take the partition over: completes or aborts the previous owner's transaction, fences that owner."""
        self.producer.init_transactions()

    def stage(self, records: list[Record]) -> None:
        """Begin the checkpoint's transaction and send its records (they are committed by :meth:`commit`)."""
        try:
            self.producer.begin_transaction()
            for key, value in records:
                self.staged = self.producer.send(self.tp.topic, key=key, value=value, partition=self.tp.partition)
        except _FENCED as exc:
            raise ChangelogLost(f"{self.tp.topic}-{self.tp.partition}: fenced by another owner ({exc})") from exc
        except KafkaError:
            self._abort()
            raise

    def commit(self, records: list[Record]) -> int:
        """Commit the staged transaction (staging ``records`` again after a failed try); the position's offset."""
        if self.staged is None:
            self.stage(records)
        try:
            self.producer.commit_transaction()
            offset = self.staged.get(timeout=30).offset
        except _FENCED as exc:
            raise ChangelogLost(f"{self.tp.topic}-{self.tp.partition}: fenced by another owner ({exc})") from exc
        except KafkaError:
            self._abort()
            raise
        self.staged = None
        return offset

    def _abort(self) -> None:
        self.staged = None
        try:
            self.producer.abort_transaction()
        except KafkaError as exc:  # the producer cannot go on: the partition is restored with a new one
            raise ChangelogLost(f"{self.tp.topic}-{self.tp.partition}: the changelog producer failed ({exc})") from exc

    def close(self) -> None:
        self.producer.close(timeout=5)


class ChangelogReader:
    """Reads changelog partitions, committed records only, from given offsets up to their end offsets."""

    def __init__(self, settings: Settings, client_id: str, stall_s: float = 60.0) -> None:
        self.stall_s = stall_s
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers, client_id=f"{client_id}-restore", group_id=None,
            **client_auth(settings, "stream"),
            enable_auto_commit=False, isolation_level="read_committed", check_crcs=False,
            max_poll_records=10_000, max_partition_fetch_bytes=BROKER_MAX_MESSAGE_BYTES,
            fetch_max_bytes=32 << 20, fetch_max_wait_ms=20)

    def read(self, starts: dict[TopicPartition, int]) -> Iterator[tuple[TopicPartition, int, bytes, bytes | None]]:
        """(partition, offset, key, value) of every committed record from ``starts`` to the end offsets."""
        if not starts:
            return
        self.consumer.assign(list(starts))
        ends = self.consumer.end_offsets(list(starts))
        remaining = {tp for tp, start in starts.items() if ends[tp] > start}
        for tp, start in starts.items():
            self.consumer.seek(tp, start)
        last_progress = time.monotonic()
        try:
            while remaining:
                batches = self.consumer.poll(timeout_ms=500)
                for tp, records in batches.items():
                    for record in records:
                        if record.offset < ends[tp]:
                            yield tp, record.offset, record.key, record.value
                for tp in list(remaining):
                    if self.consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
                        self.consumer.pause(tp)
                if batches:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > self.stall_s:
                    raise KafkaError(f"no changelog records of {sorted(str(tp) for tp in remaining)} for "
                                     f"{self.stall_s:.0f}s before their end offsets {ends}")
        finally:
            self.consumer.assign([])

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The end offset (of committed records) of each partition."""
        return self.consumer.end_offsets(partitions) if partitions else {}

    def close(self) -> None:
        self.consumer.close(autocommit=False)
