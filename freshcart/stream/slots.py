"""What the stream processor keeps per partition it owns and per run (:mod:`freshcart.stream.consumer`)."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from freshcart.features.stream import FeatureRow
from freshcart.settings import Settings
from freshcart.stream.changelog import ChangelogWriter
from freshcart.stream.checkpoint import CheckpointStore
from freshcart.stream.processor import ProductTask, UserTask


def state_dir(settings: Settings) -> Path:
    """Where this host caches the group's partition state (one SQLite file per partition)."""
    return settings.data_dir / "stream" / "state" / settings.stream_group


@dataclass
class Slot:
    """A partition this process owns: its task, changelog producer, cache file and what waits to be written."""

    tp: TopicPartition
    task: UserTask | ProductTask
    store: CheckpointStore
    changelog: ChangelogWriter
    saved_offset: int = 0  # the next offset that the changelog holds
    full_snapshot: bool = False  # the changelog lacks the state: the next checkpoint writes all of it
    pending: dict[tuple[str, tuple], FeatureRow] = field(default_factory=dict)  # online, latest per key
    replayed: dict[tuple[str, tuple], FeatureRow] = field(default_factory=dict)  # offline only (already online)
    changed: set[Any] = field(default_factory=set)  # users / products (neighbours: (view, product)) whose rows
    changed_replayed: set[Any] = field(default_factory=set)  # are computed when written
    produced_ms: list[int] = field(default_factory=list)  # of the events in ``pending``
    offline: list[FeatureRow] = field(default_factory=list)
    offline_from: int = 0  # the offset the offline rows start at

    @property
    def stage(self) -> str:
        return self.task.kind


@dataclass
class InFlight:
    """The online write running on the writer thread, and what to record once it has ended."""

    future: Future
    marks: list[tuple[Slot, int, list[int]]]  # (slot, offset written up to, produce times of its events)
    rows: int


@dataclass
class SaveInFlight:
    """The checkpoint running on the checkpoint thread (:mod:`freshcart.stream.saving`)."""

    future: Future  # of a freshcart.stream.saving.Saved
    slots: dict[TopicPartition, Slot]  # the partitions it saves, as they were owned then
    commit: bool  # commit the offsets to the group when it is done


@dataclass
class RunSummary:
    consumed: int = 0
    accepted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    first_message: float | None = None  # monotonic time of the first message
    last_write: float | None = None  # monotonic time the last online write ended

    @property
    def busy_seconds(self) -> float:
        """From the first message to the last online write (startup and idle time excluded)."""
        if self.first_message is None or self.last_write is None:
            return 0.0
        return max(1e-9, self.last_write - self.first_message)


def close_slot(slot: Slot) -> None:
    """Close a partition's cache file and changelog producer."""
    slot.store.close()
    slot.changelog.close()
