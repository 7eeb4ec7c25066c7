"""What the stream processor writes, and its checkpoints: a part of :class:`freshcart.stream.consumer.StreamProcessor`.

:meth:`WritingAndCheckpoints.flush` closes a micro-batch: the accepted events and neighbour deltas are
forwarded to the product topic, and the changed feature rows handed to the writer thread (one write in
flight at a time, in order; :meth:`~WritingAndCheckpoints.wait_for_write` marks the offsets it covers as
written). :meth:`~WritingAndCheckpoints.checkpoint` closes a checkpoint on the loop and hands its slow half
to the checkpoint thread (:mod:`freshcart.stream.saving`); :meth:`~WritingAndCheckpoints.collect_checkpoint`
takes its result and commits the offsets. A store or broker hiccup is retried, never skipped.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from freshcart.settings import Settings
from freshcart.stream.changelog import ChangelogLost, encode_changes
from freshcart.stream.metrics import StreamMetrics, write_status
from freshcart.stream.processor import (
    DELTA_FIELDS, NEIGHBOUR_VIEW, NEVER, Forwarded, ProductTask, UserTask, encode_deltas, encode_forwarded,
)
from freshcart.stream.saving import PartitionSave, save_partitions
from freshcart.stream.slots import InFlight, RunSummary, SaveInFlight, Slot
from freshcart.stream.sinks import OfflineWriter, OnlineWriter, group_by_view, rows_to_table

log = logging.getLogger("freshcart.stream")
FORWARD_CHUNK = 4000  # events per re-partitioned message (well under the broker's message limit)
DELTA_CHUNK = 20_000  # neighbour deltas per message, about (cut between source offsets only)
STALE_ROWS_PER_CHECKPOINT = 20_000
"""Neighbour rows rewritten per product partition and checkpoint because their neighbours' normalisers changed
(the rest at the next ones; all of them at shutdown): a checkpoint's pause stays bounded on a large catalogue."""
BACKOFF_MAX_S = 30.0


class StreamError(RuntimeError):
    """The processor cannot go on (bad configuration, a write that keeps failing)."""


class WritingAndCheckpoints:
    """Forwarding, online writes and checkpoints: the part of :class:`freshcart.stream.consumer.StreamProcessor`
    that gets its state out. The processor sets the attributes below."""

    settings: Settings
    client_id: str
    running: bool
    metrics: StreamMetrics
    metrics_port: int | None
    status_path: Path
    writer: OnlineWriter
    offline: OfflineWriter
    consumer: KafkaConsumer | None
    producer: KafkaProducer | None
    slots: dict[TopicPartition, Slot]
    parked: dict[TopicPartition, Slot]
    forward: dict[tuple[int, int], list[Forwarded]]  # (product partition, source partition)
    forward_deltas: dict[int, list[array]]  # source partition -> flat rows per product partition
    first_pending: float | None
    pending_events: int
    summary: RunSummary
    writes: ThreadPoolExecutor
    in_flight: InFlight | None
    saves: ThreadPoolExecutor
    saving: SaveInFlight | None

    if TYPE_CHECKING:
        def _restore_again(self, tp: TopicPartition, reason: Exception) -> None: ...  # PartitionOwnership

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

    def _settle_write(self) -> None:
        """Wait for the write in flight where nothing may raise (rebalance, shutdown): a failed write is
        only logged; its offsets stay unmarked, so a restart writes them again."""
        try:
            self.wait_for_write()
        except Exception as exc:  # noqa: BLE001
            log.warning("online write failed (%s); its events are written again after a restart", exc)

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
