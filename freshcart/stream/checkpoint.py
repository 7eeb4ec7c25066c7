"""The local cache of a partition's keyed state: one SQLite file per topic partition.

The state itself lives in the partition's changelog topic (:mod:`freshcart.stream.changelog`);
this file holds a copy of it, so a process that gets a partition back it had before restores
from disk instead of reading the changelog again (:mod:`freshcart.stream.restore` decides).
A checkpoint appends its changelog records (the keys changed since the previous one, already
encoded for the changelog, as one entry) and the task's position (next offset, watermark, applied
source offsets, and the offset of the position's record in the changelog) in one SQLite
transaction, after the changelog's transaction is committed. When the entries have grown to
several times the size of the state, they are compacted into one snapshot entry.

The file also records, outside the checkpoint, how far the online store has been written
(``written_offset``): a restart replays from the checkpoint but skips online writes below that
mark, so an older value never overwrites a newer one, while the offline rows of the replayed
range are written again.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import sqlite3
import threading
from pathlib import Path
from typing import Any

from freshcart.stream.changelog import ChangelogState, Record
from freshcart.stream.processor import TaskState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS changelog (seq INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""
COMPACT_FACTOR = 4  # compact when the changelog holds this many times the bytes of the last snapshot
COMPACT_MIN_BYTES = 8 << 20


class CheckpointStore:
    """The checkpoint file of one task (``<dir>/<topic>-<partition>.sqlite``)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)
        self.lock = threading.Lock()  # the checkpoint thread saves while the loop marks online writes

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def _get(self, key: str) -> Any:
        row = self.conn.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def load(self) -> tuple[list[dict[str, Any]], TaskState]:
        """The snapshot and changelog entries in order, as parts, and the saved position (a fresh one if none)."""
        with self.lock:
            blobs = [blob for (blob,) in self.conn.execute("SELECT blob FROM changelog ORDER BY seq")]
            saved = self._get("state") or {}
            written = self._get("written_offset")
        parts = [entry_part(pickle.loads(blob)) for blob in blobs]
        meta = TaskState.from_dict(saved)
        meta.written_offset = max(written or 0, meta.next_offset)
        return parts, meta

    def save(self, records: list[Record], meta: TaskState, floor_us: int) -> int:
        """Append one checkpoint's changelog ``records`` and its position atomically; when the entries have
        grown large, compact them into one snapshot (seen ids below ``floor_us`` left out). The bytes written."""
        blob = pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)
        state = json.dumps({**dataclasses.asdict(meta), "written_offset": 0})
        with self.lock, self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("INSERT INTO changelog (blob) VALUES (?)", (blob,))
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('state', ?)", (state,))
            size = (self._get("changelog_bytes") or 0) + len(blob)
            base = self._get("snapshot_bytes") or 0
            written = len(blob)
            if size > max(COMPACT_MIN_BYTES, COMPACT_FACTOR * base):
                entries = [pickle.loads(b) for (b,) in self.conn.execute("SELECT blob FROM changelog ORDER BY seq")]
                full = pickle.dumps(merge_parts([entry_part(e) for e in entries], floor_us),
                                    protocol=pickle.HIGHEST_PROTOCOL)
                self.conn.execute("DELETE FROM changelog")
                self.conn.execute("INSERT INTO changelog (blob) VALUES (?)", (full,))
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('snapshot_bytes', ?)", (str(len(full)),))
                size = written = len(full)
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('changelog_bytes', ?)", (str(size),))
        return written

    def replace(self, snapshot: dict[str, Any], meta: TaskState) -> None:
        """Make the file hold exactly ``snapshot`` (the whole state) and ``meta`` (after a restore from the
        changelog); the online store counts as written up to ``meta.written_offset``."""
        blob = pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL)
        state = json.dumps({**dataclasses.asdict(meta), "written_offset": 0})
        with self.lock, self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("DELETE FROM changelog")
            self.conn.execute("INSERT INTO changelog (blob) VALUES (?)", (blob,))
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('state', ?)", (state,))
            for key, value in (("snapshot_bytes", len(blob)), ("changelog_bytes", len(blob)),
                               ("written_offset", meta.written_offset)):
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def mark_written(self, offset: int) -> None:
        """Record that the online store holds every row of the offsets below ``offset``."""
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('written_offset', ?)", (str(offset),))


def entry_part(entry: dict[str, Any] | list[Record]) -> dict[str, Any]:
    """One cache entry as a part of the state: a snapshot is one already; a checkpoint's records are decoded
    as the changelog's are (the latest record of a key wins; a deleted seen-id batch is left out)."""
    if isinstance(entry, dict):
        return entry
    state = ChangelogState()
    for key, value in entry:
        state.add(0, key, value)
    return state.part


def merge_parts(parts: list[dict[str, Any]], floor_us: int) -> dict[str, Any]:
    """The state that ``parts`` applied in order make, as one snapshot part."""
    merged: dict[str, dict] = {}
    for part in parts:
        for store, states in part.items():
            merged.setdefault(store, {}).update(states)
    if "seen" in merged:
        merged["seen"] = {event_id: t_us for event_id, t_us in merged["seen"].items() if t_us >= floor_us}
    return merged


def checkpoint_path(state_dir: Path, topic: str, partition: int) -> Path:
    return state_dir / f"{topic}-{partition}.sqlite"
