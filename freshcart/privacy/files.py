"""Erasure in files: one shopper's rows out of every Parquet and JSON Lines file FreshCart keeps.

A file is rewritten (to a temporary file, then renamed over it) only when it holds a row of
the shopper; every other file stays byte for byte as it was, and a rewritten file keeps every
other row, in order, with its schema. A row belongs to the shopper when its ``user_id`` is
the shopper's id; in a rejects file (a ``record`` column of raw JSON text) when that JSON's
``user_id`` is; in a truth file of the simulator (``event_id``, no user) when its event is one
of the shopper's removed events. JSON Lines files (the landing zone) lose the lines whose
JSON ``user_id`` is the shopper's.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from freshcart.settings import Settings

SKIPPED_DIRS = ("kafka", "redis", "postgres", "airflow", "logs", "run", "secrets", "privacy", "feast", "stream")
"""Folders of the data dir that are no event or feature files: servers' own storage, logs, keys, the audit
trail, and the online store and stream state (erased through their own interfaces)."""
TRUTH_DIR = "_truth"


def data_roots(settings: Settings) -> list[Path]:
    """The folders searched: every top-level folder of the data dir but :data:`SKIPPED_DIRS`, and the MLflow
    artifact root when it lies elsewhere."""
    roots = sorted(p for p in settings.data_dir.iterdir() if p.is_dir() and p.name not in SKIPPED_DIRS) \
        if settings.data_dir.is_dir() else []
    if settings.mlflow_artifact_root is not None and settings.mlflow_artifact_root.is_dir():
        roots.append(settings.mlflow_artifact_root)
    return roots


def _files(roots: Iterable[Path], suffix: str) -> list[Path]:
    found: set[Path] = set()
    for root in roots:
        found.update(p for p in root.rglob(f"*{suffix}") if p.is_file() and not p.name.startswith("."))
    return sorted(found)


def _record_user(text: str | None) -> object:
    try:
        record = json.loads(text) if text else None
    except ValueError:
        return None
    return record.get("user_id") if isinstance(record, dict) else None


def _same_user(value: object, user_id: int) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value == user_id
    return isinstance(value, str) and value.strip() == str(user_id)


def _shopper_rows(table: pa.Table, user_id: int, event_ids: set[str], is_truth: bool) -> pa.Array | None:
    """True for the shopper's rows, or None when the file has no column that could name a shopper."""
    names = table.column_names
    if "user_id" in names:
        column = table["user_id"]
        if pa.types.is_integer(column.type):
            return pc.fill_null(pc.equal(column, pa.scalar(user_id, column.type)), False)
        text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
        return pc.fill_null(pc.equal(text, str(user_id)), False)
    if "record" in names and pa.types.is_string(table.schema.field("record").type):
        return pa.array([_same_user(_record_user(text), user_id) for text in table["record"].to_pylist()])
    if is_truth and "event_id" in names and event_ids:
        return pc.fill_null(pc.is_in(table["event_id"], value_set=pa.array(sorted(event_ids), pa.string())), False)
    return None


def _write_like(table: pa.Table, path: Path, metadata: pq.FileMetaData) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    compression = metadata.row_group(0).column(0).compression.lower() if metadata.num_row_groups else "zstd"
    pq.write_table(table, tmp, compression="none" if compression == "uncompressed" else compression)
    os.replace(tmp, path)


def _forget_parquet(path: Path, user_id: int, event_ids: set[str]) -> int:
    """Rows of the shopper removed from one Parquet file (0: the file is untouched); their event ids are
    added to ``event_ids``."""
    try:
        parquet = pq.ParquetFile(path)
        table = parquet.read()
    except (OSError, pa.ArrowException):
        return 0  # not a Parquet file FreshCart can read: nothing of ours
    mine = _shopper_rows(table, user_id, event_ids, TRUTH_DIR in path.parts)
    if mine is None:
        return 0
    removed = int(pc.sum(mine).as_py() or 0)
    if removed == 0:
        return 0
    if "event_id" in table.column_names and "user_id" in table.column_names:
        event_ids.update(str(e) for e in table["event_id"].filter(mine).to_pylist() if e is not None)
    _write_like(table.filter(pc.invert(mine)), path, parquet.metadata)
    return removed


def _forget_jsonl(path: Path, user_id: int, event_ids: set[str]) -> int:
    kept: list[bytes] = []
    removed = 0
    with open(path, "rb") as handle:
        for line in handle:
            value = _record_user(line.decode("utf-8", "replace"))
            if _same_user(value, user_id):
                removed += 1
                try:
                    event_ids.add(str(json.loads(line)["event_id"]))
                except (ValueError, KeyError, TypeError):
                    pass
            else:
                kept.append(line)
    if removed:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(b"".join(kept))
        os.replace(tmp, path)
    return removed


def forget_in_files(settings: Settings, user_id: int) -> Counter[str]:
    """Remove the shopper's rows from the data dir's files; rows removed per folder (relative to the data dir)."""
    roots = data_roots(settings)
    event_ids: set[str] = set()
    removed: Counter[str] = Counter()
    parquet = _files(roots, ".parquet")
    truth = [p for p in parquet if TRUTH_DIR in p.parts]
    # Files naming the shopper first (their event ids are collected), then the truth files keyed by event id.
    steps = [(p, _forget_parquet) for p in parquet if p not in truth]
    steps += [(p, _forget_jsonl) for p in _files(roots, ".jsonl")]
    steps += [(p, _forget_parquet) for p in truth]
    for path, forget in steps:
        count = forget(path, user_id, event_ids)
        if count:
            removed[_area(settings, path)] += count
    return removed


def _area(settings: Settings, path: Path) -> str:
    """The folder a file belongs to, for the audit record: its first two levels under the data dir."""
    try:
        parts = path.relative_to(settings.data_dir).parts
    except ValueError:
        return "mlflow-artifacts"
    return "/".join(p for p in parts[:2] if "=" not in p and not p.endswith((".parquet", ".jsonl"))) or parts[0]
