"""Parity harness: the batch computation and the event-by-event update must agree.

Both paths see the same events. At each checkpoint time T the harness takes,
per view and key, the batch row with the latest timestamp <= T and the
stream's latest row after every event <= T has been applied, and compares
every feature. The stream processor reuses :func:`batch_snapshots` and
:func:`compare` against what it wrote to the online store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from freshcart.features import spec
from freshcart.features.batch import compute_feature_rows
from freshcart.features.stream import FeatureState

Snapshot = dict[str, dict[tuple, dict[str, object]]]  # view -> key -> feature values
REL_TOL = 1e-9
ABS_TOL = 1e-9


@dataclass
class Mismatch:
    view: str
    key: tuple
    at: datetime
    feature: str
    batch: object
    stream: object


@dataclass
class ParityReport:
    checkpoints: int = 0
    rows: int = 0
    values: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.values > 0

    def summary(self) -> str:
        head = (f"{self.checkpoints} checkpoints, {self.rows:,} rows, {self.values:,} values compared, "
                f"{len(self.mismatches)} mismatches")
        return "\n".join([head] + [f"  {m.view}{m.key} at {m.at:%Y-%m-%d %H:%M:%S}: {m.feature} "
                                   f"batch={m.batch!r} stream={m.stream!r}" for m in self.mismatches[:20]])


def _us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def batch_snapshots(events: pa.Table, checkpoints: list[datetime]) -> Iterator[tuple[datetime, Snapshot]]:
    """Per checkpoint, each key's latest batch row at or before it."""
    tables = compute_feature_rows(events)
    ordered = {}
    for name, table in tables.items():
        table = table.take(pc.sort_indices(table, sort_keys=[(spec.TIMESTAMP, "ascending")]))
        ordered[name] = (table.column(spec.TIMESTAMP).cast(pa.int64()).to_pylist(), table.to_pylist())
    current: Snapshot = {name: {} for name in tables}
    cursor = {name: 0 for name in tables}
    for moment in sorted(checkpoints):
        limit = _us(moment)
        for name, (stamps, rows) in ordered.items():
            keys = spec.VIEWS[name].keys
            while cursor[name] < len(rows) and stamps[cursor[name]] <= limit:
                row = rows[cursor[name]]
                current[name][tuple(row[k] for k in keys)] = {f: row[f] for f in spec.VIEWS[name].feature_names}
                cursor[name] += 1
        yield moment, {name: dict(rows) for name, rows in current.items()}


def sorted_records(events: pa.Table) -> list[tuple]:
    """Events as ``FeatureState.update`` arguments, in (time, event_id) order."""
    events = events.take(pc.sort_indices(events, sort_keys=[("event_time", "ascending"), ("event_id", "ascending")]))
    t_us = events["event_time"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
    columns = [events[c].to_pylist() for c in
               ("event_id", "event_type", "product_id", "category_id", "price", "user_id", "user_session")]
    event_id, etype, product, category, price, user, session = columns
    return list(zip(event_id, t_us, etype, product, category, price, user, session))


def stream_snapshots(events: pa.Table, checkpoints: list[datetime],
                     state: FeatureState | None = None) -> Iterator[tuple[datetime, Snapshot]]:
    """Per checkpoint, each key's latest row after feeding every event at or before it, one by one."""
    state = state or FeatureState()
    records = sorted_records(events)
    current: Snapshot = {name: {} for name in spec.VIEWS}
    position = 0
    for moment in sorted(checkpoints):
        limit = _us(moment)
        while position < len(records) and records[position][1] <= limit:
            for row in state.update(*records[position]):
                current[row.view][row.key] = row.values
            position += 1
        yield moment, {name: dict(rows) for name, rows in current.items()}


def _same(a: object, b: object) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        return (a is None or (isinstance(a, float) and math.isnan(a))) and \
               (b is None or (isinstance(b, float) and math.isnan(b)))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return list(a) == list(b) if isinstance(a, (list, tuple)) else a == b


def compare(moment: datetime, batch: Snapshot, stream: Snapshot, report: ParityReport) -> None:
    """Add to ``report`` every difference between two snapshots taken at ``moment``."""
    report.checkpoints += 1
    for name, view in spec.VIEWS.items():
        b_rows, s_rows = batch.get(name, {}), stream.get(name, {})
        for key in b_rows.keys() | s_rows.keys():
            report.rows += 1
            b, s = b_rows.get(key), s_rows.get(key)
            if b is None or s is None:
                report.mismatches.append(Mismatch(name, key, moment, "<row>", b is not None, s is not None))
                continue
            for feature in view.feature_names:
                report.values += 1
                if not _same(b[feature], s[feature]):
                    report.mismatches.append(Mismatch(name, key, moment, feature, b[feature], s[feature]))


def run_parity(events: pa.Table, checkpoints: Iterable[datetime]) -> ParityReport:
    """Batch vs event-by-event features on ``events`` at every checkpoint."""
    checkpoints = sorted(checkpoints)
    report = ParityReport()
    for (moment, batch), (_, stream) in zip(batch_snapshots(events, checkpoints),
                                             stream_snapshots(events, checkpoints)):
        compare(moment, batch, stream, report)
    return report
