"""Check the online store against a from-scratch batch recomputation (the parity harness, online side).

:func:`verify_online` recomputes every view from the accepted events with the batch
path, reads the same keys back through ``FeatureStore.get_online_features`` and
compares every feature with :func:`freshcart.features.parity.compare`.
:func:`verify_neighbours` does the same for the co-occurrence view ``product_neighbours``
against :func:`freshcart.recommendation.cooccurrence.build_cooccurrence`.
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from freshcart.features import spec
from freshcart.features.parity import ParityReport, Snapshot, batch_snapshots, compare
from freshcart.recommendation.cooccurrence import DAY_US, CooccurrenceConfig, build_cooccurrence, neighbour_table
from freshcart.recommendation.log import build_log
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


NeighbourRows = dict[int, dict[str, list]]
KIND_NAMES = ("co_viewed", "co_bought")


def batch_neighbours(events: pa.Table | list[Event], config: CooccurrenceConfig = CooccurrenceConfig()
                     ) -> NeighbourRows:
    """``build_cooccurrence`` over ``events`` as of the midnight after their last day (the instant the stream's
    rows stand for): product id -> the view's values, for every product with a neighbour."""
    log = build_log(events if isinstance(events, pa.Table) else events_to_table(events))
    as_of = (int(log.time.max()) // DAY_US + 1) * DAY_US
    rows = neighbour_table(log, build_cooccurrence(log, as_of, config)).to_pylist()
    return {row["product_id"]: {name: row[name] for name in spec.PRODUCT_NEIGHBOURS.feature_names} for row in rows}


def online_neighbours(store: Any, product_ids: list[int]) -> NeighbourRows:
    """The online ``product_neighbours`` rows of ``product_ids`` with a neighbour, read through Feast."""
    view = spec.PRODUCT_NEIGHBOURS
    refs = [f"{view.name}:{f}" for f in view.feature_names]
    rows: NeighbourRows = {}
    for lo in range(0, len(product_ids), READ_CHUNK):
        chunk = product_ids[lo:lo + READ_CHUNK]
        data = store.get_online_features(features=refs, entity_rows=[{"product_id": p} for p in chunk]).to_dict()
        for i, product in enumerate(chunk):
            values = {f: list(data[f][i] or []) for f in view.feature_names}
            if values["co_viewed_ids"] or values["co_bought_ids"]:
                rows[product] = values
    return rows


def neighbour_mismatches(actual: NeighbourRows, expected: NeighbourRows, top_n: int, rel: float = 1e-9
                         ) -> list[str]:
    """How ``actual`` differs from ``expected`` (empty: the same). Weights compare up to float rounding; ids
    exactly, except in any order within a run of equal weights (sums rounded differently), and only by
    weight for a run that ``top_n`` cuts."""
    actual = {p: v for p, v in actual.items() if v["co_viewed_ids"] or v["co_bought_ids"]}
    problems = [f"product {p}: no row, expected one" for p in sorted(expected.keys() - actual.keys())]
    problems += [f"product {p}: a row, expected none" for p in sorted(actual.keys() - expected.keys())]
    for product in sorted(expected.keys() & actual.keys()):
        for kind in KIND_NAMES:
            ids, weights = expected[product][f"{kind}_ids"], expected[product][f"{kind}_weights"]
            got_ids, got_weights = actual[product][f"{kind}_ids"], actual[product][f"{kind}_weights"]
            if len(got_weights) != len(weights) or not all(
                    math.isclose(g, w, rel_tol=rel) for g, w in zip(got_weights, weights)):
                problems.append(f"product {product} {kind}: weights {got_weights}, expected {weights}")
                continue
            runs = [list(run) for _, run in itertools.groupby(range(len(ids)), key=lambda i: round(weights[i], 9))]
            for run in runs if len(ids) < top_n else runs[:-1]:
                if {got_ids[i] for i in run} != {ids[i] for i in run}:
                    problems.append(f"product {product} {kind}: ids {got_ids}, expected {ids}")
                    break
    return problems


def verify_neighbours(store: Any, events: pa.Table | list[Event], config: CooccurrenceConfig = CooccurrenceConfig()
                      ) -> list[str]:
    """Compare the online ``product_neighbours`` of every product of ``events`` with the batch recomputation."""
    table = events if isinstance(events, pa.Table) else events_to_table(events)
    products = sorted(set(table["product_id"].to_pylist()))
    return neighbour_mismatches(online_neighbours(store, products), batch_neighbours(table, config), config.top_n)
