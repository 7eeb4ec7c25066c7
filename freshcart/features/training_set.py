"""Point-in-time training sets for the propensity task.

Each view of a product by a user at time t in ``[start, end)`` is one example;
its label is 1 when that user buys that product in ``(t, t + horizon]``. Its
features are the feature rows of each view with the latest timestamp strictly
before t (Feast's point-in-time join at ``t - 1 µs``, within the views' TTL),
plus the on-demand features computed from them.

Two ways to join, with identical results (a test holds them to it):
``method="feast"`` asks Feast's ``get_historical_features``; ``method="fast"``
does the same as-of join with sorted arrays over the feature tables.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from freshcart import storage
from freshcart.features import spec
from freshcart.features.on_demand import on_demand_features
from freshcart.features.tables import FeatureBuildError, days_between, read_feature_table, read_interval_events
from freshcart.labels import label_views
from freshcart.settings import Settings

ONE_US = pd.Timedelta(microseconds=1)
EXAMPLE_COLUMNS = ["event_id", "event_time", "user_id", "product_id", "category_id", "price", "label"]


@dataclass
class TrainingSetReport:
    start: date
    end: date
    method: str
    examples: int = 0
    positives: int = 0
    feature_columns: list[str] = field(default_factory=list)
    out: Path | None = None
    seconds: float = 0.0


def feature_refs() -> list[str]:
    """Every stored and on-demand feature, as Feast references ``view:feature``."""
    views = list(spec.VIEWS.values()) + [spec.ON_DEMAND]
    return [f"{view.name}:{name}" for view in views for name in view.feature_names]


def feature_columns() -> list[str]:
    """Column names of the features in a training set (Feast's full feature names)."""
    return [ref.replace(":", "__") for ref in feature_refs()]


def load_examples(settings: Settings, start: date, end: date) -> pa.Table:
    """The labelled views of ``[start, end)``; labels need the events up to ``end + horizon``."""
    if start >= end:
        raise FeatureBuildError(f"empty interval [{start}, {end}): the end must be after the start")
    label_end = end + timedelta(days=math.ceil(settings.horizon_hours / 24))
    have = set(storage.list_partitions(settings.offline_events_dir))
    missing = [d for d in days_between(start, label_end) if d not in have]
    if missing:
        raise FeatureBuildError(
            f"interval [{start}, {end}): examples and their {settings.horizon_hours:g} h labels need offline "
            f"events up to {label_end}, missing {', '.join(map(str, missing[:10]))} under "
            f"{settings.offline_events_dir}; ingest them or end the interval earlier")
    events = read_interval_events(settings.offline_events_dir, start, label_end)
    labels = label_views(events, settings.horizon_hours)
    views = events.filter(pc.equal(events["event_type"], "view"))  # same rows, same order as labels
    table = views.select(EXAMPLE_COLUMNS[:-1]).append_column("label", labels["label"])
    lo = pa.scalar(pd.Timestamp(start, tz="UTC"), pa.timestamp("us", tz="UTC"))
    hi = pa.scalar(pd.Timestamp(end, tz="UTC"), pa.timestamp("us", tz="UTC"))
    inside = pc.and_(pc.greater_equal(table["event_time"], lo), pc.less(table["event_time"], hi))
    table = table.filter(inside)
    if table.num_rows == 0:
        raise FeatureBuildError(f"interval [{start}, {end}): no views, so no examples")
    return table.take(pc.sort_indices(table, sort_keys=[("event_time", "ascending"), ("event_id", "ascending")]))


def entity_frame(examples: pa.Table) -> pd.DataFrame:
    """The examples as a Feast entity dataframe: keys, join time ``t - 1 µs`` and request fields."""
    frame = examples.to_pandas()
    frame["event_timestamp"] = frame["event_time"] - ONE_US
    frame["request_price"] = frame["price"].astype("float64")
    frame["request_category_id"] = frame["category_id"]
    frame["request_ts"] = frame["event_time"].dt.as_unit("us").astype("int64") / 1e6
    return frame


def _codes(columns: list[np.ndarray]) -> np.ndarray:
    """Dense integer codes of the key tuples."""
    code = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        values, inverse = np.unique(column, return_inverse=True)
        code = code * len(values) + inverse
    return np.unique(code, return_inverse=True)[1]


def asof_indices(row_keys: list[np.ndarray], row_us: np.ndarray, query_keys: list[np.ndarray],
                 query_us: np.ndarray, ttl_us: int) -> np.ndarray:
    """For each query, the row with the same keys and the latest time ``<= query`` within the TTL (or -1)."""
    n_rows = len(row_us)
    keys = _codes([np.concatenate([r, q]) for r, q in zip(row_keys, query_keys)])
    times = np.concatenate([row_us, query_us])
    is_query = np.concatenate([np.zeros(n_rows, bool), np.ones(len(query_us), bool)])
    order = np.lexsort((is_query, times, keys))  # rows before queries at equal times: "<=" matches
    positions = np.arange(len(order))
    last_row = np.maximum.accumulate(np.where(~is_query[order], positions, -1))
    found = np.full(len(order), -1, dtype=np.int64)
    ok = last_row >= 0
    candidate = order[np.maximum(last_row, 0)]
    ok &= keys[candidate] == keys[order]
    ok &= times[candidate] >= times[order] - ttl_us
    found[ok] = candidate[ok]
    result = np.empty(len(query_us), dtype=np.int64)
    query_positions = is_query[order]
    result[order[query_positions] - n_rows] = found[query_positions]
    return result


def read_view_tables(settings: Settings, start: date, end: date) -> dict[str, pa.Table]:
    """The rows of every model view that examples of ``[start, end)`` can join (``LOOKBACK`` before on).

    A view without a single date partition in ``[start, end)`` is an error: its features would all be null.
    """
    tables = {}
    for name in spec.VIEWS:
        days = storage.list_partitions(settings.feature_tables_dir / name)
        if not any(start <= day < end for day in days):
            raise FeatureBuildError(
                f"feature view {name!r} has no rows for [{start}, {end}) under {settings.feature_tables_dir / name}; "
                "build the feature tables of those days first (`freshcart features build` or the "
                "materialize_features DAG)")
        tables[name] = read_feature_table(settings, name, start - timedelta(days=spec.LOOKBACK.days + 1), end)
    return tables


def join_features(examples: pa.Table, views: dict[str, pa.Table]) -> pa.Table:
    """``examples`` with every stored and on-demand feature, as of strictly before each row's ``event_time``.

    ``examples`` needs ``event_time``, ``user_id``, ``product_id``, ``category_id`` and ``price`` (the
    candidate's); ``views`` holds the rows of each view of ``spec.VIEWS`` (:func:`read_view_tables`).
    The same join serves training sets and the candidates of a ranking replay.
    """
    frame = entity_frame(examples)
    query_us = (frame["event_timestamp"].dt.as_unit("us").astype("int64")).to_numpy()
    ttl_us = int(spec.LOOKBACK.total_seconds() * 1_000_000)
    out = pa.Table.from_pandas(frame.drop(columns=["event_timestamp"]), preserve_index=False)
    joined: dict[str, pa.ChunkedArray] = {}
    for name, view in spec.VIEWS.items():
        if name not in views:
            raise FeatureBuildError(f"no rows of the feature view {name!r} to join; pass every view of "
                                    f"spec.VIEWS ({', '.join(spec.VIEWS)}), e.g. from read_view_tables()")
        rows = views[name]
        row_us = rows[spec.TIMESTAMP].cast(pa.int64()).to_numpy()
        index = asof_indices([rows[k].to_numpy() for k in view.keys], row_us,
                             [frame[k].to_numpy() for k in view.keys], query_us, ttl_us)
        taken = rows.take(pa.array(index, mask=index < 0))
        for feature in view.feature_names:
            joined[f"{name}__{feature}"] = taken[feature]
            out = out.append_column(f"{name}__{feature}", taken[feature])
    inputs = pd.DataFrame({
        "avg_purchase_price_30d": joined["user_activity__avg_purchase_price_30d"].to_pandas(),
        "top_categories_30d": joined["user_activity__top_categories_30d"].to_pandas(),
        "last_event_ts": joined["user_activity__last_event_ts"].to_pandas(),
        "request_price": frame["request_price"], "request_category_id": frame["request_category_id"],
        "request_ts": frame["request_ts"],
    })
    for name, values in on_demand_features(inputs).items():
        out = out.append_column(f"{spec.ON_DEMAND.name}__{name}", pa.array(values, from_pandas=True))
    return out


def _join_fast(settings: Settings, examples: pa.Table, start: date, end: date) -> pa.Table:
    return join_features(examples, read_view_tables(settings, start, end))


def _join_feast(settings: Settings, examples: pa.Table) -> pa.Table:
    from freshcart.features.store import feature_store

    frame = entity_frame(examples)
    store = feature_store(settings)
    result = store.get_historical_features(entity_df=frame, features=feature_refs(), full_feature_names=True)
    joined = result.to_df().drop(columns=["event_timestamp"])
    return pa.Table.from_pandas(joined, preserve_index=False)


def build_training_set(settings: Settings, start: date, end: date, out: Path | None = None,
                       method: str = "fast") -> tuple[pa.Table, TrainingSetReport]:
    """Labelled, point-in-time correct examples of ``[start, end)``; written to ``out`` as Parquet if given."""
    if method not in ("fast", "feast"):
        raise ValueError(f"method {method!r}: use 'fast' or 'feast'")
    started = time.perf_counter()
    examples = load_examples(settings, start, end)
    table = _join_fast(settings, examples, start, end) if method == "fast" else _join_feast(settings, examples)
    table = table.take(pc.sort_indices(table, sort_keys=[("event_time", "ascending"), ("event_id", "ascending")]))
    report = TrainingSetReport(start=start, end=end, method=method, examples=table.num_rows,
                               positives=int(pc.sum(table["label"]).as_py() or 0),
                               feature_columns=feature_columns())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out, compression="zstd")
        report.out = out
    report.seconds = time.perf_counter() - started
    return table, report
