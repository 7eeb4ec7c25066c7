"""Which partitions the stream processor owns, as the consumer group's rebalances give and take them.

:class:`RebalanceListener` hands the group's decisions to :class:`PartitionOwnership` (a part of
:class:`freshcart.stream.consumer.StreamProcessor`) on the consumer's network loop, where nothing waits for
the broker: newly assigned partitions are paused until the loop has restored their state
(:meth:`PartitionOwnership.restore_assigned`, from the changelog or the local cache:
:mod:`freshcart.stream.restore`), revoked ones are parked in case the same rebalance gives them back, lost
ones are dropped.
"""

from __future__ import annotations

import logging
import time
from array import array
from typing import TYPE_CHECKING

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from freshcart.settings import Settings
from freshcart.stream.changelog import ChangelogReader
from freshcart.stream.processor import Forwarded
from freshcart.stream.restore import restore_partitions
from freshcart.stream.slots import Slot, close_slot, state_dir

log = logging.getLogger("freshcart.stream")


class RebalanceListener(ConsumerRebalanceListener):
    def __init__(self, processor: "PartitionOwnership") -> None:
        self.processor = processor

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.processor.release(revoked, lost=False)

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.processor.release(lost, lost=True)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.processor.acquire(assigned)


class PartitionOwnership:
    """Taking, restoring and giving up partitions: the part of :class:`freshcart.stream.consumer.StreamProcessor`
    that rebalances call. The processor sets the attributes below."""

    settings: Settings
    client_id: str
    consumer: KafkaConsumer | None
    reader: ChangelogReader | None
    slots: dict[TopicPartition, Slot]
    parked: dict[TopicPartition, Slot]  # revoked, kept until the rebalance ends
    restoring: set[TopicPartition]  # assigned, paused until restored (in the loop, not on join)
    unassigned_since: float | None  # monotonic time a rebalance (or the first join) began
    forward: dict[tuple[int, int], list[Forwarded]]
    forward_deltas: dict[int, list[array]]

    if TYPE_CHECKING:
        def _settle_checkpoint(self) -> None: ...  # freshcart.stream.writing.WritingAndCheckpoints

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
