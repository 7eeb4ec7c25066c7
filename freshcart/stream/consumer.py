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

import copy
import gc
import logging
import os
import signal
import socket
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from freshcart.kafka_io import changelog_topic, client_auth, ensure_topics, make_producer
from freshcart.schema import BROKER_MAX_MESSAGE_BYTES, TimeBounds
from freshcart.settings import Settings
from freshcart.stream.changelog import ChangelogLost, ChangelogReader, encode_changes
from freshcart.stream.dlq import dead_letter_headers
from freshcart.stream.metrics import StreamMetrics, status_dir, write_status
from freshcart.stream.processor import (
    DELTA_FIELDS, NEIGHBOUR_VIEW, NEVER, PRODUCT, USER, Forwarded, ProductTask, UserTask, encode_deltas,
    encode_forwarded, route_deltas,
)
from freshcart.stream.restore import restore_partitions
from freshcart.stream.saving import PartitionSave, save_partitions
from freshcart.stream.slots import InFlight, RunSummary, SaveInFlight, Slot, close_slot, state_dir
from freshcart.stream.sinks import OfflineWriter, OnlineWriter, group_by_view, online_writer, rows_to_table

log = logging.getLogger("freshcart.stream")
CONSUMER_SETTINGS = ("profile", "data_dir", "events_topic", "product_topic", "dlq_topic", "stream_group",
                     "stream_batch_size", "stream_max_wait_ms", "stream_checkpoint_seconds",
                     "stream_allowed_lateness_seconds", "stream_neighbours", "stream_metrics_port", "redis_url", "postgres_url",
                     "secrets_dir")
"""Settings a `freshcart stream consume` child process takes from the process that starts it."""
FORWARD_CHUNK = 4000  # events per re-partitioned message (well under the broker's message limit)
DELTA_CHUNK = 20_000  # neighbour deltas per message, about (cut between source offsets only)
STALE_ROWS_PER_CHECKPOINT = 20_000
"""Neighbour rows rewritten per product partition and checkpoint because their neighbours' normalisers changed
(the rest at the next ones; all of them at shutdown): a checkpoint's pause stays bounded on a large catalogue."""
BACKOFF_MAX_S = 30.0
REJOIN_AFTER_S = 60.0
"""Seconds without an assignment, from the start of a rebalance, before the consumer leaves the group
and joins again (a member that never gets its assignment would otherwise wait forever)."""


class StreamError(RuntimeError):
    """The processor cannot go on (bad configuration, a write that keeps failing)."""


class _Listener(ConsumerRebalanceListener):
    def __init__(self, processor: "StreamProcessor") -> None:
        self.processor = processor

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.processor.release(revoked, lost=False)

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.processor.release(lost, lost=True)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.processor.acquire(assigned)


class StreamProcessor:
    """The consume loop; ``run()`` until SIGTERM/SIGINT, ``max_idle_s`` without messages, or ``stop()``."""

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
                                        listener=_Listener(self))
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

    # ----------------------------------------------------------------- partitions
    def acquire(self, assigned: set[TopicPartition]) -> None:
        """Take newly assigned partitions: pause them until the loop has restored their state.

        A partition given back in the same rebalance keeps its state in memory. Runs on the
        consumer's network loop: nothing here waits for the broker (:meth:`restore_assigned` does,
        from the loop).
        """
        assert self.consumer is not None
        for tp in sorted(assigned):
            slot = self.slots.get(tp) or self.parked.pop(tp, None)
            if slot is not None:
                log.info("assigned %s-%d: state kept in memory, from offset %d", tp.topic, tp.partition,
                         slot.task.meta.next_offset)
                self.slots[tp] = slot
                self.consumer.seek(tp, slot.task.meta.next_offset)
            else:
                log.info("assigned %s-%d: restoring its state", tp.topic, tp.partition)
                self.restoring.add(tp)
                self.consumer.pause(tp)
        self._drop_parked()
        self.unassigned_since = None

    def restore_assigned(self) -> None:
        """Restore the state of the partitions waiting for it (from the changelog, or the local cache when it is
        as new), then read each from the offset its state reflects."""
        assert self.consumer is not None
        if self.reader is None:
            self.reader = ChangelogReader(self.settings, self.client_id)
        partitions = sorted(self.restoring)
        restored = restore_partitions(self.settings, partitions, self.reader, state_dir(self.settings),
                                      self.client_id)
        for tp, r in restored.items():
            meta = r.task.meta
            self.slots[tp] = Slot(tp, r.task, r.store, r.writer, saved_offset=meta.next_offset,
                                  full_snapshot=r.full_snapshot, offline_from=meta.next_offset)
            self.consumer.seek(tp, meta.next_offset)
            self.consumer.resume(tp)
            replay = meta.written_offset - meta.next_offset
            log.info("restored %s-%d from %s (%d changelog records, %d keys) in %.2fs: from offset %d%s",
                     tp.topic, tp.partition, r.source, r.records, r.keys, r.seconds, meta.next_offset,
                     f" (replaying {replay} already written online)" if replay > 0 else "")
        self.restoring.difference_update(partitions)

    def _restore_again(self, tp: TopicPartition, reason: Exception) -> None:
        """A partition whose changelog this process may no longer write: drop its state, restore it anew."""
        log.warning("%s-%d: %s; restoring it again", tp.topic, tp.partition, reason)
        slot = self.slots.pop(tp)
        close_slot(slot)
        self.restoring.add(tp)
        if self.consumer is not None:
            self.consumer.pause(tp)

    def _drop_parked(self) -> None:
        """Forget partitions parked by a rebalance, and the events they would forward: their next owner
        resumes from their checkpoints."""
        if self.parked:
            self._settle_checkpoint()  # it may still be writing their changelogs and caches
        for slot in self.parked.values():
            close_slot(slot)
        self.parked = {}
        self.forward = {k: v for k, v in self.forward.items()
                        if TopicPartition(self.settings.events_topic, k[1]) in self.slots}
        self.forward_deltas = {k: v for k, v in self.forward_deltas.items()
                               if TopicPartition(self.settings.events_topic, k) in self.slots}

    def release(self, partitions: set[TopicPartition], lost: bool) -> None:
        """Give partitions up (rebalance or shutdown).

        Nothing is saved here: saving needs the broker's acks, which cannot be awaited on the
        consumer's network loop. The next owner resumes from the last checkpoint; the online
        rows written since are skipped while it replays (``written_offset``). Revoked partitions
        are parked in case the same rebalance gives them back; lost ones are dropped.
        """
        if lost:
            self._settle_checkpoint()  # it may still be writing their changelogs and caches
        for tp in partitions:
            self.restoring.discard(tp)
            slot = self.slots.pop(tp, None)
            if slot is None:
                continue
            if lost:
                close_slot(slot)
            else:
                self.parked[tp] = slot
        if self.unassigned_since is None:
            self.unassigned_since = time.monotonic()
        log.info("released %s", ", ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(partitions)) or "nothing")

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

    # ----------------------------------------------------------------- writes
    def _send_forwarded(self) -> None:
        assert self.producer is not None
        for (q, src), events in self.forward.items():
            for lo in range(0, len(events), FORWARD_CHUNK):
                self.producer.send(self.settings.product_topic, partition=q,
                                   value=encode_forwarded(src, events[lo:lo + FORWARD_CHUNK]))
        self.forward = {}
        width = DELTA_FIELDS
        for src, lists in self.forward_deltas.items():
            for q, flat in enumerate(lists):
                rows, lo = len(flat) // width, 0
                while lo < rows:
                    hi = min(rows, lo + DELTA_CHUNK)
                    while hi < rows and flat[hi * width] == flat[(hi - 1) * width]:
                        hi += 1  # every delta of one source offset in one message
                    self.producer.send(self.settings.product_topic, partition=q,
                                       value=encode_deltas(src, flat[lo * width:hi * width]))
                    lo = hi
        self.forward_deltas = {}

    def flush(self, checkpoint: bool = False, final: bool = False) -> None:
        """Close the micro-batch: forward events, hand the changed rows to the writer thread (at a ``checkpoint``
        also neighbour rows whose neighbours' normalisers changed: some, or all of them when ``final``)."""
        self._send_forwarded()
        for slot in self.slots.values():
            if isinstance(slot.task, ProductTask):
                slot.changed.update(slot.task.neighbour_keys(
                    checkpoint, None if final else STALE_ROWS_PER_CHECKPOINT))
            for key in slot.changed:
                for row in slot.task.rows_of(key):
                    slot.pending[(row.view, row.key)] = row
            for key in slot.changed_replayed - slot.changed:
                for row in slot.task.rows_of(key):
                    slot.replayed[(row.view, row.key)] = row
            slot.changed, slot.changed_replayed = set(), set()
        rows = [row for slot in self.slots.values() for row in slot.pending.values()]
        writes = {view: self.writer.prepare(view, rows_to_table(view, view_rows))
                  for view, view_rows in group_by_view(rows).items()}
        marks = [(slot, slot.task.meta.next_offset, slot.produced_ms) for slot in self.slots.values() if slot.pending]
        for slot in self.slots.values():
            if slot.pending or slot.replayed:  # the neighbours' offline table is the materialize_features DAG's
                slot.offline.extend(row for row in slot.replayed.values() if row.view != NEIGHBOUR_VIEW)
                slot.offline.extend(row for row in slot.pending.values() if row.view != NEIGHBOUR_VIEW)
            slot.pending, slot.replayed, slot.produced_ms = {}, {}, []
        self.wait_for_write()  # one write in flight: rows of a key reach the store in order
        if writes:
            self.metrics.batch_rows.observe(len(rows))
            self.metrics.batch_events.observe(self.pending_events)
            self.in_flight = InFlight(self.writes.submit(self._write_online, writes), marks, len(rows))
        self.metrics.publish()
        self.pending_events, self.first_pending = 0, None

    def _write_online(self, writes: dict[str, Callable[[], None]]) -> tuple[float, float]:
        """Run each view's prepared write (on the writer thread); when it ended: epoch ms and monotonic s."""
        for view, write in writes.items():
            started = time.perf_counter()
            self._retry(f"online write of {view}", write)
            self.metrics.write_seconds.observe(time.perf_counter() - started)
        return time.time() * 1000, time.monotonic()

    def wait_for_write(self) -> None:
        """Wait for the write in flight; then mark the offsets it covers as written and observe freshness."""
        if self.in_flight is None:
            return
        write, self.in_flight = self.in_flight, None
        ended_ms, self.summary.last_write = write.future.result()  # a write that keeps failing raises here
        self.summary.rows_written += write.rows
        for slot, offset, produced_ms in write.marks:
            if self.slots.get(slot.tp) is slot or self.parked.get(slot.tp) is slot:
                slot.store.mark_written(offset)  # a partition given up meanwhile stays unmarked: replays write it
            self.metrics.observe_freshness(slot.stage, ended_ms, produced_ms)

    def _retry(self, what: str, action: Callable[[], Any]) -> Any:
        delay = 0.5
        while True:
            try:
                return action()
            except ChangelogLost:
                raise
            except Exception as exc:  # noqa: BLE001 - a store or broker hiccup: retry, never skip a write
                if not self.running and delay > 8:
                    raise StreamError(f"{what} keeps failing: {exc}") from exc
                log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
                time.sleep(delay)
                delay = min(BACKOFF_MAX_S, delay * 2)

    def checkpoint(self, commit: bool = True, final: bool = False) -> None:
        """Close a checkpoint and hand its slow half to the checkpoint thread (:mod:`freshcart.stream.saving`).

        Here, on the loop: the previous checkpoint is awaited (one at a time), the micro-batch is
        flushed, the online write and the broker's acks of forwarded events awaited, and each
        partition's changed keys encoded with a copy of its position. The offline rows, changelog
        transactions and cache are written on the checkpoint thread while the loop goes on; the
        offsets are committed when it is done (:meth:`collect_checkpoint`).
        """
        assert self.producer is not None
        started = time.perf_counter()
        self.collect_checkpoint(wait=True)
        self.flush(checkpoint=True, final=final)
        self.wait_for_write()
        self._retry("producer flush", lambda: self.producer.flush(timeout=30))
        parts = []
        for tp, slot in self.slots.items():
            task = slot.task
            end = task.meta.next_offset
            part = PartitionSave(slot, slot.offline, f"{tp.topic}-{tp.partition}-{slot.offline_from:012d}-{end:012d}")
            slot.offline, slot.offline_from = [], end
            if end != slot.saved_offset or slot.full_snapshot:
                floor = NEVER
                if isinstance(task, UserTask):
                    task.prune_seen()
                    floor = task.watermark_us
                changes = task.snapshot() if slot.full_snapshot else task.changes()
                part.records = encode_changes(changes, task.meta, floor)
                part.meta, part.floor_us = copy.deepcopy(task.meta), floor
                slot.saved_offset, slot.full_snapshot = end, False
            if part.offline or part.records is not None:
                parts.append(part)
        if parts:
            future = self.saves.submit(save_partitions, parts, self.offline, self._retry)
            self.saving = SaveInFlight(future, {part.slot.tp: part.slot for part in parts}, commit)
        self.metrics.checkpoint_seconds.labels("loop").observe(time.perf_counter() - started)
        self._write_status()

    def collect_checkpoint(self, wait: bool) -> None:
        """Take the result of the checkpoint on the checkpoint thread once it is done (``wait``: wait for it):
        partitions whose changelog this process lost are restored again, the others' offsets committed."""
        saving = self.saving
        if saving is None or not (wait or saving.future.done()):
            return
        self.saving = None
        saved = saving.future.result()  # a write that keeps failing raises here
        self.metrics.checkpoint_seconds.labels("thread").observe(saved.seconds)
        owned = {tp for tp, slot in saving.slots.items() if self.slots.get(tp) is slot}
        for tp, exc in saved.lost.items():
            if tp in owned:
                self._restore_again(tp, exc)
        offsets = {}
        for tp, position in saved.positions.items():
            if tp in owned:
                self.slots[tp].task.meta.changelog_offset = position.changelog_offset
                offsets[tp] = OffsetAndMetadata(position.next_offset, "", -1)
        if saving.commit and offsets and self.consumer is not None:
            try:
                self.consumer.commit(offsets)
            except KafkaError as exc:  # the changelog holds the offsets; the commit is for lag monitoring
                log.warning("offset commit failed (%s); the changelog holds the offsets, retrying next time", exc)

    def _settle_checkpoint(self) -> None:
        """Wait for the checkpoint in flight where nothing may raise (rebalance, shutdown): a failed one is only
        logged; the partitions' next owner resumes from the checkpoint before it."""
        try:
            self.collect_checkpoint(wait=True)
        except Exception as exc:  # noqa: BLE001
            log.warning("checkpoint failed (%s); its events are processed again after a restart", exc)

    def _write_status(self) -> None:
        self.metrics.publish()
        lags = {}
        if self.consumer is not None:
            for tp, slot in self.slots.items():
                high = self.consumer.highwater(tp)
                if high is not None:
                    lag = max(0, high - slot.task.meta.next_offset)
                    lags[f"{tp.topic}-{tp.partition}"] = lag
                    self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
        elapsed = max(1e-9, time.time() - self.metrics.started)
        write_status(self.status_path, {
            "client_id": self.client_id, "pid": os.getpid(), "group": self.settings.stream_group,
            "writer": self.writer.name, "metrics_port": self.metrics_port, "updated": time.time(),
            "started": self.metrics.started, "partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in self.slots),
            "lag": lags, "counts": self.metrics.counts, "freshness_ms": self.metrics.percentiles(),
            "accepted_per_s": self.summary.accepted / elapsed, "running": self.running,
        })

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

    def _settle_write(self) -> None:
        """Wait for the write in flight where nothing may raise (rebalance, shutdown): a failed write is
        only logged; its offsets stay unmarked, so a restart writes them again."""
        try:
            self.wait_for_write()
        except Exception as exc:  # noqa: BLE001
            log.warning("online write failed (%s); its events are written again after a restart", exc)

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
