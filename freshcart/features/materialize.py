"""Materialisation: the latest offline feature rows of an interval into the online store.

For each feature view, :func:`materialize` reads the offline rows of ``[start, end)``
from the view's FileSource folder (only the ``event_date=`` partitions of the interval),
keeps the latest row per entity key, writes it to the profile's online store and
records the interval in the registry as Feast does, so ``feast feature-views list``
shows it and :func:`materialize_incremental` continues from it.

- local profile: :mod:`freshcart.features.online_sqlite` writes Feast's SQLite tables
  directly (same bytes as Feast's writer, several times faster);
- production profile: Feast's own ``online_write_batch`` (Redis), in batches.

Intervals are half-open, like Airflow's data intervals. Feast's file offline store
includes ``end`` as well; contiguous intervals give the same online state either way.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from freshcart.features import online_sqlite
from freshcart.features.spec import TIMESTAMP
from freshcart.features.store import feature_store
from freshcart.settings import Settings
from freshcart.storage import list_partitions, partition_dir

FEAST_BATCH_ROWS = 10_000  # rows per online_write_batch call on Feast's path


class MaterializeError(RuntimeError):
    """Materialisation cannot run as asked; the message says what to do."""


@dataclass
class ViewReport:
    """What materialising one feature view did."""

    view: str
    start: datetime
    end: datetime
    files: int  # offline Parquet files read
    offline_rows: int  # rows of [start, end)
    entity_rows: int  # entity rows written online (the latest row of each key)
    seconds: float


@dataclass
class MaterializeReport:
    """What a materialisation run did, view by view."""

    online_store: str
    writer: str
    views: list[ViewReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def entity_rows(self) -> int:
        return sum(v.entity_rows for v in self.views)

    @property
    def rows_per_second(self) -> float:
        """Entity rows written per second of the whole run (reading, encoding, writing, registry)."""
        return self.entity_rows / self.seconds if self.seconds > 0 else 0.0


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def offline_files(source: Path, start: datetime, end: datetime) -> list[Path]:
    """Parquet files that can hold rows of [start, end): the interval's date partitions, else all files."""
    if source.is_file():
        return [source]
    days = list_partitions(source)
    if not days:
        return sorted(source.rglob("*.parquet")) if source.is_dir() else []
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    return [f for day in days if first <= day <= last for f in sorted(partition_dir(source, day).glob("*.parquet"))]


def read_latest(files: list[Path], keys: list[str], features: list[str], start: datetime,
                end: datetime) -> tuple[pa.Table, int]:
    """The latest row per key among the rows of [start, end) in ``files``, and how many rows that range held."""
    columns = [*keys, TIMESTAMP, *features]
    tables = []
    for path in files:
        try:
            tables.append(pq.read_table(path, columns=columns))
        except (pa.ArrowInvalid, OSError) as exc:
            raise MaterializeError(f"{path}: {exc}; rebuild it with `freshcart features build`") from None
    if not tables:
        return pa.table({c: pa.array([], pa.int64()) for c in columns}), 0
    table = pa.concat_tables(tables, promote_options="permissive")
    ts = pc.cast(table[TIMESTAMP], pa.timestamp("us", tz="UTC"))
    inside = pc.and_(pc.greater_equal(ts, pa.scalar(start, pa.timestamp("us", tz="UTC"))),
                     pc.less(ts, pa.scalar(end, pa.timestamp("us", tz="UTC"))))
    table = table.set_column(table.schema.get_field_index(TIMESTAMP), TIMESTAMP, ts).filter(inside)
    if table.num_rows == 0:
        return table, 0
    key_values = [table[k].to_numpy() for k in keys]
    order = np.lexsort([table[TIMESTAMP].cast(pa.int64()).to_numpy(), *key_values[::-1]])
    last = np.zeros(len(order), bool)  # the last row of each key in (key, time) order
    last[-1] = True
    for values in key_values:
        ordered = values[order]
        last[:-1] |= ordered[1:] != ordered[:-1]
    return table.take(pa.array(order[last])), table.num_rows


def _feature_views(store: Any, names: list[str] | None) -> list[Any]:
    known = {fv.name: fv for fv in store.registry.list_feature_views(store.project, allow_cache=False)}
    if not known:
        raise MaterializeError("the registry has no feature views: run `freshcart features apply` first")
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise MaterializeError(f"unknown feature view(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [known[n] for n in (names or sorted(known))]


def _begin(store: Any, fv: Any) -> Any:
    """Move the view to MATERIALIZING like Feast does; returns the state to restore on failure."""
    from feast.feature_view import FeatureViewState

    previous = fv.state
    if previous in (FeatureViewState.STATE_UNSPECIFIED, FeatureViewState.MATERIALIZING):
        return FeatureViewState.GENERATED if previous == FeatureViewState.MATERIALIZING else previous
    if not previous.can_transition_to(FeatureViewState.MATERIALIZING):
        raise MaterializeError(f"feature view {fv.name} is {previous.name} and cannot be materialised; "
                               "run `freshcart features apply`")
    fv.state = FeatureViewState.MATERIALIZING
    store.registry.apply_feature_view(fv, store.project, commit=True)
    return previous


@dataclass
class EncodedRows:
    """A view's rows encoded as Feast stores them (serialised entity keys, ``ValueProto`` bytes), sorted by key."""

    table: str  # the view's SQLite table
    keys: np.ndarray  # (rows, width) serialised entity keys
    seconds: np.ndarray  # event times as the SQLite store keeps them (epoch seconds)
    micros: np.ndarray  # event times in microseconds
    columns: dict[str, online_sqlite.Column]


def encode_rows(store: Any, fv: Any, table: pa.Table, check: bool = True) -> EncodedRows:
    """Encode ``table`` (keys, timestamp, features) as Feast stores it online, rows sorted by key bytes.

    ``check``: compare the fast encoding with Feast's on a sample of each column.
    """
    from feast.infra.online_stores.helpers import compute_table_id

    config = store.config
    keys = [c.name for c in fv.entity_columns]
    key_values = {k: table[k].to_numpy().astype(np.int64) for k in keys}
    order = np.lexsort([key_values[k].astype("<i8").byteswap().view(np.uint64) for k in sorted(keys, reverse=True)])
    matrix = online_sqlite.entity_keys({k: v[order] for k, v in key_values.items()},
                                       config.entity_key_serialization_version)
    micros = table[TIMESTAMP].cast(pa.int64()).to_numpy()[order]
    taken = table.take(pa.array(order))
    columns = {f.name: online_sqlite.encode_column(taken[f.name], f.dtype.to_value_type(), f.name, check)
               for f in fv.features}
    name = compute_table_id(config.project, fv, config.registry.enable_online_feature_view_versioning)
    return EncodedRows(name, matrix, online_sqlite.epoch_seconds(micros), micros, columns)


def _write_encoded(store: Any, encoded: EncodedRows, conn: sqlite3.Connection | None = None) -> None:
    """Upsert encoded rows into the online store and commit (``conn``: an open connection, else a new one)."""
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    own = conn is None
    conn = conn or sqlite3.connect(SqliteOnlineStore._get_db_path(store.config))
    try:
        with conn:
            online_sqlite.write_rows(conn, encoded.table, encoded.keys, encoded.seconds, encoded.columns)
    finally:
        if own:
            conn.close()


def _write_sqlite(store: Any, fv: Any, table: pa.Table, conn: sqlite3.Connection | None = None,
                  check: bool = True) -> None:
    """Upsert ``table`` (keys, timestamp, features) into the view's SQLite table and commit."""
    _write_encoded(store, encode_rows(store, fv, table, check), conn)


def _write_feast(store: Any, fv: Any, table: pa.Table) -> None:
    from feast.utils import _convert_arrow_to_proto

    provider = store._get_provider()
    join_keys = {entity.name: entity.dtype.to_value_type() for entity in fv.entity_columns}
    for batch in table.to_batches(max_chunksize=FEAST_BATCH_ROWS):
        rows = _convert_arrow_to_proto(batch, fv, join_keys)
        provider.online_write_batch(store.config, fv, rows, progress=None)


def _fast_sqlite(store: Any) -> bool:
    """Whether the fast SQLite writer matches this store's configuration (Feast's defaults)."""
    online = store.config.online_store
    return (online.type == "sqlite" and not getattr(online, "vector_enabled", False)
            and not getattr(online, "enable_openai_compatible_store", False)
            and store.config.entity_key_serialization_version == 3)


@dataclass
class _Prepared:
    """A view's work before the online write: its latest rows, encoded when the fast writer takes them."""

    fv: Any
    start: datetime
    end: datetime
    files: list[Path]
    offline_rows: int = 0
    table: pa.Table | None = None
    encoded: EncodedRows | None = None
    seconds: float = 0.0


def _prepare(store: Any, fv: Any, start: datetime, end: datetime, files: list[Path], fast: bool) -> _Prepared:
    """Read the latest rows of [start, end) and encode them for the fast writer when it applies."""
    began = time.perf_counter()
    prepared = _Prepared(fv, start, end, files)
    if not files:  # nothing to read: the registry's interval stays where it was
        return prepared
    keys = [c.name for c in fv.entity_columns]
    prepared.table, prepared.offline_rows = read_latest(files, keys, [f.name for f in fv.features], start, end)
    int_keys = all(c.dtype.to_value_type().name == "INT64" for c in fv.entity_columns)
    if fast and int_keys and prepared.table.num_rows:
        prepared.encoded = encode_rows(store, fv, prepared.table)
    prepared.seconds = time.perf_counter() - began
    return prepared


def _materialize_view(store: Any, prepared: _Prepared) -> ViewReport:
    """Write a prepared view online and record its interval in the registry, as Feast does."""
    fv, table = prepared.fv, prepared.table
    if table is None:
        return ViewReport(fv.name, prepared.start, prepared.end, 0, 0, 0, 0.0)
    began = time.perf_counter()
    previous = _begin(store, fv)
    try:
        if prepared.encoded is not None:
            _write_encoded(store, prepared.encoded)
        elif table.num_rows:
            _write_feast(store, fv, table)
    except Exception:
        if previous != fv.state and previous.name != "STATE_UNSPECIFIED":  # Feast's rollback
            fv.state = previous
            store.registry.apply_feature_view(fv, store.project, commit=True)
        raise
    store.registry.apply_materialization(fv, store.project, prepared.start, prepared.end)
    return ViewReport(fv.name, prepared.start, prepared.end, len(prepared.files), prepared.offline_rows,
                      table.num_rows, prepared.seconds + time.perf_counter() - began)


def _run(settings: Settings, intervals: list[tuple[Any, datetime, datetime]], store: Any,
         on_view: Callable[[ViewReport], None] | None) -> MaterializeReport:
    repo = Path(store.config.repo_path or settings.feature_repo_dir)
    fast = _fast_sqlite(store)
    report = MaterializeReport(store.config.online_store.type,
                               "fast SQLite writer" if fast else "Feast online_write_batch")
    began = time.perf_counter()
    found = {fv.name: offline_files(Path(fv.batch_source.path) if Path(fv.batch_source.path).is_absolute()
                                    else repo / fv.batch_source.path, start, end)
             for fv, start, end in intervals}
    if intervals and not any(found.values()):
        starts, ends = min(i[1] for i in intervals), max(i[2] for i in intervals)
        raise MaterializeError(
            f"no feature tables for [{starts.isoformat()}, {ends.isoformat()}) under "
            f"{settings.feature_tables_dir}: run `freshcart features build --start {starts:%Y-%m-%d} "
            f"--end {ends:%Y-%m-%d}` first")
    # the next view is read and encoded while this one is written (SQLite and numpy release the GIL)
    preparing = (_prepare(store, fv, start, end, found[fv.name], fast) for fv, start, end in intervals)
    for prepared in online_sqlite.prefetched(preparing):
        view = _materialize_view(store, prepared)
        report.views.append(view)
        if on_view:
            on_view(view)
    report.seconds = time.perf_counter() - began
    return report


def materialize(settings: Settings, start: datetime, end: datetime, views: list[str] | None = None, *,
                store: Any = None, on_view: Callable[[ViewReport], None] | None = None) -> MaterializeReport:
    """Write the latest offline rows of [start, end) of ``views`` (default: all) to the online store."""
    start, end = _utc(start), _utc(end)
    if start >= end:
        raise MaterializeError(f"empty interval: start {start.isoformat()} is not before end {end.isoformat()}")
    store = store or feature_store(settings)
    return _run(settings, [(fv, start, end) for fv in _feature_views(store, views)], store, on_view)


def materialize_incremental(settings: Settings, end: datetime, views: list[str] | None = None, *,
                            store: Any = None, on_view: Callable[[ViewReport], None] | None = None
                            ) -> MaterializeReport:
    """Continue each view from the end of its last materialised interval (or ``end - ttl``) up to ``end``."""
    end = _utc(end)
    store = store or feature_store(settings)
    intervals = []
    for fv in _feature_views(store, views):
        last = fv.most_recent_end_time
        start = _utc(last) if last is not None else end - (fv.ttl or timedelta(days=365))
        if start < end:
            intervals.append((fv, start, end))
    return _run(settings, intervals, store, on_view)

