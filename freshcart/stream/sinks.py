"""Where the stream processor writes feature rows: the Feast online store and the offline feature tables.

Online, two writers with the same result. Each prepares a batch on the calling thread
(``prepare``: conversions, encoding) and returns the write itself, which the processor
runs on its writer thread (I/O, no Python-heavy work there to contend for the GIL):

- :class:`PushWriter` calls ``FeatureStore.push`` on the view's PushSource (any online store);
- :class:`FastSqliteWriter` upserts into Feast's SQLite online store directly with Feast's own
  encoding (the writer of ``freshcart features materialize``), several times faster;
- :class:`FastRedisWriter` does the same for Feast's Redis online store.

Offline, :class:`OfflineWriter` appends the same rows as Parquet files to the feature
tables (``<feature_tables_dir>/<view>/event_date=D/stream-...parquet``), so that training
sees what serving saw. A file is named by the topic partition and offset range it covers.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from freshcart import storage
from freshcart.features import spec
from freshcart.features.stream import FeatureRow
from freshcart.settings import Settings


def rows_to_table(view: str, rows: list[FeatureRow]) -> pa.Table:
    """Feature rows of one view (a model view or a candidate view) as an Arrow table in its offline schema."""
    view_spec = spec.VIEWS.get(view) or spec.CANDIDATE_VIEWS[view]
    columns: dict[str, list[Any]] = {key: [row.key[i] for row in rows] for i, key in enumerate(view_spec.keys)}
    columns[spec.TIMESTAMP] = [row.timestamp_us for row in rows]
    for name in view_spec.feature_names:
        columns[name] = [row.values[name] for row in rows]
    arrays = []
    for f in view_spec.schema:
        if f.name == spec.TIMESTAMP:
            arrays.append(pa.array(columns[f.name], pa.int64()).cast(f.type))
        else:
            arrays.append(pa.array(columns[f.name], f.type))
    return pa.Table.from_arrays(arrays, schema=view_spec.schema)


class OnlineWriter(Protocol):
    name: str

    def prepare(self, view: str, table: pa.Table) -> Callable[[], None]:
        """Get ``table``'s rows ready to write; the returned call writes them (and may be retried)."""
        ...


class _Writer:
    """What every online writer shares: ``write`` = prepare, then write at once (benchmarks, tests)."""

    def prepare(self, view: str, table: pa.Table) -> Callable[[], None]:
        raise NotImplementedError

    def write(self, view: str, table: pa.Table) -> None:
        self.prepare(view, table)()


class _EncodingWriter(_Writer):
    """A writer that encodes rows as Feast stores them; each view's first batch is checked against Feast."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.views = {fv.name: fv for fv in store.list_feature_views()}
        self.checked: set[str] = set()

    def encode(self, view: str, table: pa.Table) -> Any:
        from freshcart.features.materialize import encode_rows

        encoded = encode_rows(self.store, self.views[view], table, check=view not in self.checked)
        self.checked.add(view)
        return encoded


class PushWriter(_Writer):
    """``FeatureStore.push(<view>_push, rows, to=ONLINE)``: Feast's supported stream ingestion.

    Feast's Redis store drops a write whose event time is not newer than the stored one. A
    key's row keeps the time of its latest event when a late event changes its counts, so
    that check would drop a correct update; the processor orders each key's writes itself
    (one writer per key, no online writes while replaying), so this writer's store object
    skips the check (``skip_dedup``). Other writers of the same store keep it.
    """

    name = "push"

    def __init__(self, store: Any) -> None:
        from feast.data_source import PushMode

        self.store, self.mode = store, PushMode.ONLINE
        if hasattr(store.config.online_store, "skip_dedup"):
            store.config.online_store.skip_dedup = True

    def prepare(self, view: str, table: pa.Table) -> Callable[[], None]:
        frame = table.to_pandas()
        if view in spec.CANDIDATE_VIEWS:  # no push source: batch-fed views are written to the online store directly
            return lambda: self.store.write_to_online_store(view, frame)
        return lambda: self.store.push(f"{view}_push", frame, to=self.mode)


class FastSqliteWriter(_EncodingWriter):
    """Direct upsert into Feast's SQLite online store, byte for byte what Feast writes.

    One connection for the process, in WAL mode (readers never wait for the writer) with
    ``synchronous=NORMAL``; the fast encoding is checked against Feast's on each view's first
    batch.
    """

    name = "fast"

    def __init__(self, store: Any) -> None:
        from feast.infra.online_stores.sqlite import SqliteOnlineStore

        super().__init__(store)
        self.conn = sqlite3.connect(SqliteOnlineStore._get_db_path(store.config), timeout=30,
                                    check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")

    def prepare(self, view: str, table: pa.Table) -> Callable[[], None]:
        from freshcart.features.online_sqlite import upsert_statements

        encoded = self.encode(view, table)
        statements = list(upsert_statements(encoded.table, encoded.keys, encoded.seconds, encoded.columns))

        def write() -> None:
            with self.conn:
                for sql, params in statements:
                    self.conn.execute(sql, params)
        return write


class FastRedisWriter(_EncodingWriter):
    """Direct HSETs into Feast's Redis online store, byte for byte what ``FeatureStore.push`` writes.

    Values are encoded by column (as for SQLite) and each batch goes out as one buffer of
    packed commands on one connection; like :class:`PushWriter`, it writes without Feast's
    timestamp check, since the processor orders each key's writes itself.
    """

    name = "fast"

    def __init__(self, store: Any, client: Any) -> None:
        super().__init__(store)
        self.client = client
        self.packer = client.connection_pool.make_connection()  # packs commands only; never connected

    def prepare(self, view: str, table: pa.Table) -> Callable[[], None]:
        from freshcart.features import online_redis

        commands = online_redis.hset_commands(self.store.config, self.views[view], self.encode(view, table),
                                              self.packer)
        return lambda: online_redis.send(self.client.connection_pool, commands)


def online_writer(settings: Settings, store: Any, choice: str | None = None) -> OnlineWriter:
    """The writer ``choice`` (default: the setting): auto = fast on SQLite and Redis, push otherwise."""
    from freshcart.features.materialize import _fast_sqlite
    from freshcart.features.online_redis import redis_client

    choice = choice or settings.stream_writer
    if choice in ("fast", "auto"):
        if _fast_sqlite(store):
            return FastSqliteWriter(store)
        client = redis_client(store.config)
        if client is not None:
            return FastRedisWriter(store, client)
        if choice == "fast":
            raise ValueError(f"stream_writer=fast needs Feast's SQLite or single-node Redis online store; this "
                             f"profile uses {store.config.online_store.type!r}: use push or auto")
    return PushWriter(store)


class OfflineWriter:
    """Appends stream rows to the offline feature tables, one file per view, day and offset range."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, view: str, rows: list[FeatureRow], label: str) -> int:
        """Write ``rows`` of ``view`` under files named ``stream-<label>.parquet``; the rows written."""
        if not rows:
            return 0
        table = rows_to_table(view, rows)
        for day, part in storage.split_by_date(table, spec.TIMESTAMP).items():
            folder = storage.partition_dir(self.root / view, day)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{uuid.uuid4().hex}.tmp"
            pq.write_table(part, tmp, compression="zstd")
            os.replace(tmp, folder / f"stream-{label}.parquet")
        return table.num_rows


def group_by_view(rows: list[FeatureRow]) -> dict[str, list[FeatureRow]]:
    grouped: dict[str, list[FeatureRow]] = defaultdict(list)
    for row in rows:
        grouped[row.view].append(row)
    return grouped
