"""The slow half of a checkpoint, run on a thread of its own while the consume loop goes on.

The loop (:meth:`freshcart.stream.writing.WritingAndCheckpoints.checkpoint`) closes a checkpoint:
the online write and the broker's acks of forwarded events are awaited, and each partition's
changed keys are encoded as changelog records with a copy of its position. What takes time
after that is here, in this order, one checkpoint at a time:

1. the offline rows since the previous checkpoint (one Parquet file per view, day and offset range);
2. each partition's changelog transaction: all are sent first, then committed one by one;
3. the local cache (the same records, after the changelog holds them);

and the offsets to commit to the group come back to the loop, which owns the consumer. A crash
anywhere in between loses nothing: the changelog's last committed checkpoint is where the next
owner resumes, and the offline rows of the replayed range are written again under the same names.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from kafka import TopicPartition
from kafka.errors import KafkaError

from freshcart.features.stream import FeatureRow
from freshcart.stream.changelog import ChangelogLost, Record
from freshcart.stream.processor import TaskState
from freshcart.stream.sinks import OfflineWriter, group_by_view
from freshcart.stream.slots import Slot

log = logging.getLogger("freshcart.stream")

Retry = Callable[[str, Callable[[], Any]], Any]


@dataclass
class PartitionSave:
    """What one partition's checkpoint writes: offline rows, and the changelog records ending at ``meta``."""

    slot: Slot
    offline: list[FeatureRow]
    label: str  # names the offline files: topic, partition and offset range
    records: list[Record] | None = None  # None: nothing applied since the previous checkpoint
    meta: TaskState | None = None  # a copy of the position the records end with
    floor_us: int = 0  # seen ids below it are dropped when the cache is compacted


@dataclass
class Saved:
    """A finished checkpoint: where each partition's position landed in its changelog, and what was lost."""

    positions: dict[TopicPartition, TaskState] = field(default_factory=dict)  # with their changelog offsets
    lost: dict[TopicPartition, ChangelogLost] = field(default_factory=dict)
    seconds: float = 0.0


def save_partitions(parts: list[PartitionSave], offline: OfflineWriter, retry: Retry) -> Saved:
    """Write one checkpoint (see the module docstring); runs on the checkpoint thread."""
    started = time.perf_counter()
    saved = Saved()
    for part in parts:
        for view, rows in group_by_view(part.offline).items():
            retry(f"offline write of {view}", lambda: offline.write(view, rows, part.label))
    staged = [part for part in parts if part.records is not None]
    for part in staged:  # every transaction is sent before the first commit waits
        try:
            part.slot.changelog.stage(part.records)
        except ChangelogLost:
            pass  # found again by the commit below
        except KafkaError as exc:
            log.warning("changelog write of %s failed (%s); retrying", _name(part), exc)
    for part in staged:
        tp, records, meta = part.slot.tp, part.records, part.meta
        assert records is not None and meta is not None
        try:
            meta.changelog_offset = retry(f"changelog write of {_name(part)}",
                                          lambda: part.slot.changelog.commit(records))
        except ChangelogLost as exc:
            saved.lost[tp] = exc
            continue
        part.slot.store.save(records, meta, part.floor_us)
        saved.positions[tp] = meta
    saved.seconds = time.perf_counter() - started
    return saved


def _name(part: PartitionSave) -> str:
    return f"{part.slot.tp.topic}-{part.slot.tp.partition}"
