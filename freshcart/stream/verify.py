"""Check the online store against a from-scratch batch recomputation (the parity harness, online side).

:func:`verify_online` recomputes every view from the accepted events with the batch
path, reads the same keys back through ``FeatureStore.get_online_features`` and
compares every feature with :func:`freshcart.features.parity.compare`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from freshcart.features import spec
from freshcart.features.parity import ParityReport, Snapshot, batch_snapshots, compare
from freshcart.schema import Event, events_to_table

READ_CHUNK = 2000


def online_snapshot(store: Any, keys: dict[str, list[tuple]]) -> Snapshot:
    """The online rows of the given keys per view, read through Feast (absent keys are left out)."""
    snapshot: Snapshot = {}
    for name, view_keys in keys.items():
        view = spec.VIEWS[name]
        refs = [f"{name}:{f}" for f in view.feature_names]
        rows: dict[tuple, dict[str, object]] = {}
        for lo in range(0, len(view_keys), READ_CHUNK):
            chunk = view_keys[lo:lo + READ_CHUNK]
            entity_rows = [dict(zip(view.keys, key)) for key in chunk]
            data = store.get_online_features(features=refs, entity_rows=entity_rows).to_dict()
            for i, key in enumerate(chunk):
                values = {f: data[f][i] for f in view.feature_names}
                if all(v is None for v in values.values()):
                    continue
                rows[key] = values
        snapshot[name] = rows
    return snapshot


def batch_latest(events: pa.Table | list[Event]) -> Snapshot:
    """Each key's latest row per view after all ``events``, by the batch computation."""
    table = events if isinstance(events, pa.Table) else events_to_table(events)
    end = datetime(9999, 1, 1, tzinfo=timezone.utc)
    return next(iter(batch_snapshots(table, [end])))[1]


def verify_online(store: Any, events: pa.Table | list[Event]) -> ParityReport:
    """Compare the online store with the batch recomputation over ``events``; the report lists mismatches."""
    expected = batch_latest(events)
    actual = online_snapshot(store, {name: sorted(rows) for name, rows in expected.items()})
    report = ParityReport()
    compare(datetime.now(timezone.utc), expected, actual, report)
    return report
