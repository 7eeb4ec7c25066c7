"""`freshcart stream consume`: Kafka events -> keyed feature state -> Feast online store and offline tables.

One process runs both stages for the partitions the consumer group gives it:
events partitions (keyed by user_id) feed the user views and forward accepted
events, re-partitioned by product_id, to ``settings.product_topic``, whose
partitions feed the product view (see :mod:`freshcart.stream.processor`).

The loop, per micro-batch (``stream_batch_size`` events or ``stream_max_wait_ms``):

1. forward accepted events to the product topic, dead letters to the DLQ topic;
2. write the changed feature rows (the latest per key) to the online store, on a
   writer thread while the next micro-batch is read and applied (one write in
   flight at a time, in order);
3. once that write has ended, record how far the online store is written, and
   the freshness of each event.

Every ``stream_checkpoint_seconds`` (and on shutdown) it waits for the online write and
the producer's acknowledgements and encodes each partition's changed keys with its next
offset; the checkpoint thread (:mod:`freshcart.stream.saving`) then appends the offline
rows, writes those records to the partition's changelog topic in one Kafka transaction
(:mod:`freshcart.stream.changelog`) and copies them to the local cache
(:mod:`freshcart.stream.checkpoint`) while the loop goes on; the offsets are committed to
Kafka after that. A partition assigned to a process, on any host, is restored from its
changelog (or the cache, when it is as new: :mod:`freshcart.stream.restore`) before it is read, and
replays the rest: nothing is lost and nothing counts twice.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from freshcart.kafka_io import changelog_topic, client_auth, ensure_topics, make_producer
from freshcart.schema import BROKER_MAX_MESSAGE_BYTES, TimeBounds
from freshcart.settings import Settings
from freshcart.stream.changelog import ChangelogReader
from freshcart.stream.dlq import dead_letter_headers
from freshcart.stream.metrics import StreamMetrics, status_dir
from freshcart.stream.ownership import PartitionOwnership, RebalanceListener
from freshcart.stream.processor import PRODUCT, USER, Forwarded, ProductTask, UserTask, route_deltas
from freshcart.stream.slots import InFlight, RunSummary, SaveInFlight, Slot, close_slot
from freshcart.stream.sinks import OfflineWriter, OnlineWriter, online_writer
from freshcart.stream.writing import BACKOFF_MAX_S, StreamError, WritingAndCheckpoints

__all__ = ["CONSUMER_SETTINGS", "StreamError", "StreamProcessor", "install_signal_handlers"]
log = logging.getLogger("freshcart.stream")
CONSUMER_SETTINGS = ("profile", "data_dir", "events_topic", "product_topic", "dlq_topic", "stream_group",
                     "stream_batch_size", "stream_max_wait_ms", "stream_checkpoint_seconds",
                     "stream_allowed_lateness_seconds", "stream_neighbours", "stream_metrics_port", "redis_url", "postgres_url",
                     "secrets_dir")
"""Settings a `freshcart stream consume` child process takes from the process that starts it."""
REJOIN_AFTER_S = 60.0
"""Seconds without an assignment, from the start of a rebalance, before the consumer leaves the group
and joins again (a member that never gets its assignment would otherwise wait forever)."""


class StreamProcessor(PartitionOwnership, WritingAndCheckpoints):
    """The consume loop; ``run()`` until SIGTERM/SIGINT, ``max_idle_s`` without messages, or ``stop()``.

    Its partitions are taken and given up by :class:`~freshcart.stream.ownership.PartitionOwnership`, its
    writes and checkpoints made by :class:`~freshcart.stream.writing.WritingAndCheckpoints`.
    """

    def __init__(self, settings: Settings, *, writer: str | None = None, client_id: str | None = None,
                 max_idle_s: float | None = None, metrics_port: int | None = None,
                 rejoin_after_s: float = REJOIN_AFTER_S) -> None:
        from freshcart.features.store import feature_store

        self.settings = settings
        self.client_id = client_id or f"freshcart-stream-{socket.gethostname()}-{os.getpid()}"
        self.max_idle_s = max_idle_s
        self.rejoin_after_s = rejoin_after_s
        self.unassigned_since: float | None = None  # monotonic time a rebalance (or the first join) began
        self.metrics = StreamMetrics()
        self.metrics_port = self.metrics.serve(settings.stream_metrics_port if metrics_port is None
                                               else metrics_port)
        self.store = feature_store(settings)
        self.writer: OnlineWriter = online_writer(settings, self.store, writer)
        self.offline = OfflineWriter(settings.feature_tables_dir)
        self.slots: dict[TopicPartition, Slot] = {}
        self.parked: dict[TopicPartition, Slot] = {}  # revoked, kept until the rebalance ends
        self.restoring: set[TopicPartition] = set()  # assigned, paused until restored (in the loop, not on join)
        self.reader: ChangelogReader | None = None
        self.gap_seeks: dict[TopicPartition, int] = {}  # offsets sought back to (a second gap there is real)
        self.forward: dict[tuple[int, int], list[Forwarded]] = {}  # (product partition, source partition)
        self.forward_deltas: dict[int, list[array]] = {}  # source partition -> flat rows per product partition
        self.first_pending: float | None = None
        self.pending_events = 0
        self.summary = RunSummary()
        self.running = True
        self.lateness_us = settings.stream_allowed_lateness_seconds * 1_000_000
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        self.product_partitions = settings.events_partitions
        self.status_path = status_dir(settings.data_dir) / f"{self.client_id}.json"
        self.writes = ThreadPoolExecutor(1, thread_name_prefix="freshcart-online-writer")
        self.in_flight: InFlight | None = None
        self.saves = ThreadPoolExecutor(1, thread_name_prefix="freshcart-checkpoint")
        self.saving: SaveInFlight | None = None

    # ----------------------------------------------------------------- connection
    def connect(self) -> None:
        """Connect to the broker, retrying with backoff while it is down; subscribe to both topics."""
        delay = 1.0
        while self.running:
            try:
                ensure_topics(self.settings)
                if self.producer is None:
                    self.producer = make_producer(self.settings, "stream", client_id=self.client_id, linger_ms=2,
                                                  enable_idempotence=True)
                self.consumer = KafkaConsumer(
                    bootstrap_servers=self.settings.bootstrap_servers, group_id=self.settings.stream_group,
                    **client_auth(self.settings, "stream"),
                    client_id=self.client_id, enable_auto_commit=False, auto_offset_reset="earliest",
                    max_poll_records=self.settings.stream_batch_size, fetch_max_wait_ms=20,
                    max_partition_fetch_bytes=BROKER_MAX_MESSAGE_BYTES, fetch_max_bytes=32 << 20,
                    check_crcs=False,  # kafka-python's CRC32C is pure Python: most of the consume cost
                    session_timeout_ms=6000, heartbeat_interval_ms=1500,  # a dead consumer's partitions move on soon
                )
                self.consumer.subscribe([self.settings.events_topic, self.settings.product_topic],
                                        listener=RebalanceListener(self))
                # Fetch the metadata of both topics once subscribed and before the first join: a join
                # on older metadata is followed at once by a second one, and kafka-python can drop the
                # assignment of that second join (the consumer then waits, out of the group, forever).
                self.consumer.topics()
                parts = self.consumer.partitions_for_topic(self.settings.product_topic) or ()
                self.product_partitions = max(1, len(parts))
                self._check_changelogs()
                self.unassigned_since = time.monotonic()
                log.info("connected to %s as %s (group %s, writer %s, metrics on :%s)",
                         self.settings.bootstrap_servers, self.client_id, self.settings.stream_group,
                         self.writer.name, self.metrics_port or "-")
                return
            except (KafkaError, OSError) as exc:
                log.warning("broker %s not reachable (%s); retrying in %.0fs",
                            self.settings.bootstrap_servers, exc, delay)
                self._sleep(delay)
                delay = min(BACKOFF_MAX_S, delay * 2)

    def _check_changelogs(self) -> None:
        """Each input topic's changelog has a partition for each of its partitions (state goes nowhere else)."""
        assert self.consumer is not None
        for topic in (self.settings.events_topic, self.settings.product_topic):
            inputs = len(self.consumer.partitions_for_topic(topic) or ())
            changelog = changelog_topic(self.settings, topic)
            logs = len(self.consumer.partitions_for_topic(changelog) or ())
            if logs < inputs:
                raise StreamError(
                    f"changelog topic {changelog!r} has {logs} partitions but {topic!r} has {inputs}: add "
                    f"partitions to it (kafka-topics.sh --alter --topic {changelog} --partitions {inputs}) "
                    "before starting the stream processor")

    def rejoin(self) -> None:
        """Leave the group and join again with a new consumer (an assignment that never came).

        Partitions parked by the rebalance are dropped: whoever gets them next resumes from their
        checkpoints and replays the rest, as after a crash.
        """
        assert self.consumer is not None
        waited = time.monotonic() - (self.unassigned_since or time.monotonic())
        log.warning("no partition assignment %.0fs after the group began to rebalance; leaving the group "
                    "and joining again", waited)
        self._settle_write()
        self._settle_checkpoint()
        self._drop_parked()
        self.restoring = set()
        self.consumer.close(autocommit=False)
        self.consumer = None
        self.connect()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.running and time.monotonic() < end:
            time.sleep(min(0.2, end - time.monotonic()))

    # ----------------------------------------------------------------- per message
    def _on_user(self, slot: Slot, record: Any, bounds: TimeBounds) -> None:
        task = slot.task
        assert isinstance(task, UserTask)
        outcome = task.apply(record.offset, record.value, record.timestamp, bounds)
        if outcome.rejection is not None:
            assert self.producer is not None
            self.producer.send(self.settings.dlq_topic, key=record.key, value=record.value,
                               headers=dead_letter_headers(outcome.rejection, record.topic, record.partition,
                                                           record.offset, record.timestamp))
            self.metrics.dead_letter(outcome.rejection.reason)
            self.metrics.count(USER, "dead_letter")
            self.summary.dead_letters += 1
            return
        if outcome.duplicate:
            self.metrics.count(USER, "duplicate")
            self.summary.duplicates += 1
            return
        self.summary.accepted += 1
        replaying = record.offset < task.meta.written_offset
        target = slot.replayed if replaying else slot.pending
        for row in outcome.rows:
            target[(row.view, row.key)] = row
        (slot.changed_replayed if replaying else slot.changed).add(outcome.user_id)
        if replaying:
            self.metrics.count(USER, "replayed")
        else:
            self.metrics.count(USER, "accepted")
            slot.produced_ms.append(record.timestamp)
        forwarded = outcome.forwarded
        assert forwarded is not None
        q = forwarded.product_id % self.product_partitions
        self.forward.setdefault((q, forwarded.src_partition), []).append(forwarded)
        if outcome.deltas:
            self._route_deltas(forwarded.src_partition, forwarded.src_offset, outcome.deltas)

    def _route_deltas(self, src: int, offset: int, deltas: list) -> None:
        """Neighbour deltas to the product partitions (:func:`freshcart.stream.processor.route_deltas`)."""
        targets = self.forward_deltas.setdefault(src, [])
        targets.extend(array("q") for _ in range(self.product_partitions - len(targets)))
        route_deltas(targets, offset, deltas)

    def _on_product(self, slot: Slot, record: Any) -> None:
        task = slot.task
        assert isinstance(task, ProductTask)
        applied, skipped = task.apply(record.offset, record.value)
        if skipped:
            self.metrics.count(PRODUCT, "duplicate", skipped)
        replaying = record.offset < task.meta.written_offset
        if replaying:
            task.neighbours.take_dirty()  # written online before the restart (their stale rows wait: checkpoint)
        changed = slot.changed_replayed if replaying else slot.changed
        for event in applied:
            changed.add(event.product_id)
            if not replaying:
                slot.produced_ms.append(event.produced_ms)
        self.metrics.count(PRODUCT, "replayed" if replaying else "accepted", len(applied))

    # ----------------------------------------------------------------- loop
    def stop(self, *_: Any) -> None:
        self.running = False

    def run(self) -> RunSummary:
        started = time.perf_counter()
        self.connect()
        assert self.consumer is not None
        wait_s = self.settings.stream_max_wait_ms / 1000
        last_checkpoint = time.monotonic()
        last_message = time.monotonic()
        try:
            while self.running:
                timeout = wait_s if self.first_pending is None else max(
                    0.0, self.first_pending + wait_s - time.monotonic())
                if self.restoring:  # assigned, paused until restored: restore at once
                    timeout = 0.0
                elif not self.slots:  # joining the group: short polls would keep restarting the join
                    timeout = max(timeout, 2.0)
                try:
                    batches = self.consumer.poll(timeout_ms=int(timeout * 1000) or 1,
                                                 max_records=self.settings.stream_batch_size)
                except KafkaError as exc:
                    log.warning("poll failed (%s); retrying", exc)
                    self._sleep(1.0)
                    continue
                if self.restoring:
                    self._retry("state restore", self.restore_assigned)
                    last_message = time.monotonic()  # restoring is not idle time
                bounds = TimeBounds.around(datetime.now(timezone.utc), self.settings.event_time_floor,
                                           self.settings.max_future_seconds)
                for tp, records in batches.items():
                    slot = self.slots.get(tp)
                    if slot is None:
                        continue
                    for record in records:
                        expected = slot.task.meta.next_offset
                        if record.offset < expected:
                            continue  # delivered again after a seek; already applied
                        if record.offset > expected and self.gap_seeks.get(tp) != expected:
                            # fetched before a rebalance moved this partition back: read from the state's offset
                            log.warning("%s-%d: got offset %d, expected %d; seeking back", tp.topic, tp.partition,
                                        record.offset, expected)
                            self.gap_seeks[tp] = expected
                            self.consumer.seek(tp, expected)
                            break
                        if slot.stage == USER:
                            self._on_user(slot, record, bounds)
                        else:
                            self._on_product(slot, record)
                        self.summary.consumed += 1
                        self.pending_events += 1
                if batches and self.summary.first_message is None:
                    self.summary.first_message = time.monotonic()
                if batches or not self.slots:  # idle time counts only while partitions are assigned
                    last_message = time.monotonic()
                    if self.first_pending is None:
                        self.first_pending = time.monotonic()
                now = time.monotonic()
                if self.first_pending is not None and (self.pending_events >= self.settings.stream_batch_size
                                                       or now - self.first_pending >= wait_s):
                    self.flush()
                if now - last_checkpoint >= self.settings.stream_checkpoint_seconds:
                    self.checkpoint()
                    gc.freeze()  # the keyed state is long-lived: full collections need not scan it again and again
                    last_checkpoint = time.monotonic()
                else:
                    self.collect_checkpoint(wait=False)
                if self.unassigned_since is not None and now - self.unassigned_since >= self.rejoin_after_s:
                    self.rejoin()
                if self.max_idle_s is not None and now - last_message >= self.max_idle_s:
                    log.info("no message for %.0fs; stopping", self.max_idle_s)
                    break
            self.checkpoint(final=True)
            self.collect_checkpoint(wait=True)
        finally:
            self.running = False
            self.summary.seconds = time.perf_counter() - started
            self._write_status()
            self.close()
        return self.summary

    def close(self) -> None:
        self._settle_write()
        self._settle_checkpoint()
        self.writes.shutdown(wait=True)
        self.saves.shutdown(wait=True)
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
            self.consumer = None
        if self.producer is not None:
            self.producer.close(timeout=10)
            self.producer = None
        for slot in [*self.slots.values(), *self.parked.values()]:
            close_slot(slot)
        self.slots, self.parked, self.restoring = {}, {}, set()
        if self.reader is not None:
            self.reader.close()
            self.reader = None


def install_signal_handlers(processor: StreamProcessor) -> None:
    """SIGTERM and SIGINT stop the loop; the processor then flushes, checkpoints, commits and exits."""
    signal.signal(signal.SIGTERM, processor.stop)
    signal.signal(signal.SIGINT, processor.stop)
