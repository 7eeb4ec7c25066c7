"""Materialisation into the local profile's SQLite online store: same bytes as Feast, hand-computed values.

No servers. One `feast apply` per module; the registry and empty online store it makes
are copied for each test, so every test starts from a freshly applied store.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from freshcart.features import online_sqlite, spec
from freshcart.features.materialize import MaterializeError, materialize, materialize_incremental
from freshcart.features.store import feature_store, run_feast
from freshcart.features.tables import write_feature_tables
from freshcart.settings import Settings, load_settings

DAY = datetime(2026, 10, 1, tzinfo=timezone.utc)
VIEWS = [*spec.VIEWS, *spec.CANDIDATE_VIEWS]
SPECS = {**spec.VIEWS, **spec.CANDIDATE_VIEWS}


def view_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of a view in its spec schema; features not given are null."""
    schema = spec.VIEWS[name].schema
    return pa.table({f.name: [row.get(f.name) for row in rows] for f in schema}, schema=schema)


def random_tables(seed: int, n: int = 400) -> dict[str, pa.Table]:
    """Rows over three days with the awkward values: nulls, NaN, -0.0, negative and huge ints, empty lists."""
    rng = np.random.default_rng(seed)
    tables = {}
    for name, view in SPECS.items():
        cols: dict[str, Any] = {k: rng.integers(1, 60, n) for k in view.keys}
        cols[view.keys[0]][:3] = [-5, 2**62, 0]
        micros = rng.integers(0, 3 * 86_400_000_000, n)
        micros[:2] = [0, 2 * 86_400_000_000]  # exactly at the start and at the end of [DAY, DAY + 2d)
        cols[spec.TIMESTAMP] = pa.array(int(DAY.timestamp() * 1e6) + micros, pa.timestamp("us", tz="UTC"))
        for f in view.features:
            if f.dtype == pa.int64():
                values = rng.integers(-3, 2**40, n) if f.name.startswith("views") else rng.integers(0, 30, n)
                cols[f.name] = pa.array(values, mask=rng.random(n) < 0.05)
            elif f.dtype == pa.float64():
                values = np.round(rng.normal(50, 40, n), int(rng.integers(0, 6)))
                values[rng.random(n) < 0.05] = np.nan
                values[rng.random(n) < 0.05] = -0.0
                cols[f.name] = pa.array(values, mask=rng.random(n) < 0.1)
            else:
                lists = [rng.integers(-2, 10**7, rng.integers(0, 21)).tolist() for _ in range(n)]
                cols[f.name] = pa.array([None if rng.random() < 0.1 else x for x in lists], pa.list_(pa.int64()))
        tables[name] = pa.table(cols).cast(view.schema)
    return tables


@pytest.fixture(scope="module")
def applied_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir right after `feast apply` (registry and empty SQLite tables), to copy."""
    data = tmp_path_factory.mktemp("applied")
    done = run_feast(load_settings(profile="local", data_dir=data), "apply", capture=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return data


def fresh_store(template: Path, where: Path, tables: dict[str, pa.Table], days: int = 4) -> Settings:
    """A freshly applied local store in ``where`` whose feature tables hold ``tables``."""
    shutil.copytree(template / "feast", where / "feast")
    settings = load_settings(profile="local", data_dir=where)
    write_feature_tables(settings.feature_tables_dir, tables, DAY.date(), DAY.date() + timedelta(days=days))
    # the template's registry names the template's table folders: point the views at this dir's
    store = feature_store(settings)
    for fv in store.list_feature_views():
        for source in (fv.batch_source, *([fv.stream_source.batch_source] if fv.stream_source else [])):
            source.file_options.uri = str(settings.feature_tables_dir / fv.name)
        store.registry.apply_feature_view(fv, store.project, commit=True)
    return settings


def sqlite_rows(settings: Settings, view: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(settings.data_dir / "feast" / "online_store.db") as conn:
        return conn.execute(
            f"SELECT entity_key, feature_name, value, typeof(value), value_text, typeof(value_text), event_ts, "
            f"typeof(event_ts), created_ts, vector_value FROM freshcart_{view} ORDER BY 1, 2").fetchall()


def online(settings: Settings, service: str, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    store = feature_store(settings)
    return store.get_online_features(features=store.get_feature_service(service), entity_rows=rows,
                                     full_feature_names=True).to_dict()


@pytest.mark.parametrize("chunk_rows", [online_sqlite.CHUNK_ROWS, 37], ids=["one-chunk", "many-chunks"])
def test_fast_path_writes_what_feast_writes(applied_template: Path, tmp_path: Path, chunk_rows: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(online_sqlite, "CHUNK_ROWS", chunk_rows)  # many chunks: prepared while others are written
    tables = random_tables(seed=7)
    by_feast = fresh_store(applied_template, tmp_path / "feast", tables)
    by_fast = fresh_store(applied_template, tmp_path / "fast", tables)
    end = DAY + timedelta(days=2)
    feature_store(by_feast).materialize(DAY, end - timedelta(microseconds=1))  # Feast's end is inclusive
    report = materialize(by_fast, DAY, end)
    assert report.writer == "fast SQLite writer"
    for view in VIEWS:
        theirs, ours = sqlite_rows(by_feast, view), sqlite_rows(by_fast, view)
        assert len(ours) > 100 and ours == theirs, view
    users = sorted(set(tables["user_activity"]["user_id"].to_pylist()))
    rows = [{"user_id": u, "product_id": u, "category_id": u % 7, "request_price": 12.5,
             "request_category_id": 3, "request_ts": DAY.timestamp()} for u in users]
    for service in ("propensity_xgboost", "propensity_sequence"):
        assert online(by_fast, service, rows) == online(by_feast, service, rows)
    fv = feature_store(by_fast).get_feature_view("user_activity")
    assert fv.materialization_intervals == [(DAY, end)] and fv.state.name == "AVAILABLE_ONLINE"


def test_the_latest_row_of_the_interval_is_served(applied_template: Path, tmp_path: Path) -> None:
    at = lambda day, hour: DAY + timedelta(days=day, hours=hour)  # noqa: E731
    user = {"top_categories_30d": [7, 8, 9], "avg_purchase_price_30d": 20.0, "last_event_ts": 1_000.0}
    tables = {
        "user_activity": view_table("user_activity", [
            {"user_id": 1, spec.TIMESTAMP: at(0, 10), "views_1h": 3, **user},
            {"user_id": 1, spec.TIMESTAMP: at(1, 9), "views_1h": 5, **user},
            {"user_id": 1, spec.TIMESTAMP: at(2, 1), "views_1h": 7, **user, "avg_purchase_price_30d": 0.0},
            {"user_id": 2, spec.TIMESTAMP: at(0, 12), "views_1h": 1, "top_categories_30d": []},
        ]),
        "user_session": view_table("user_session", [
            {"user_id": 1, spec.TIMESTAMP: at(1, 9), "session_events": 4, "recent_product_ids": [11, 12, 13]},
        ]),
    }
    settings = fresh_store(applied_template, tmp_path, tables)
    report = materialize(settings, DAY, DAY + timedelta(days=2))
    assert {v.view: v.entity_rows for v in report.views} == {
        "user_activity": 2, "user_session": 1, "product_activity": 0, "user_category": 0, "product_neighbours": 0}
    rows = [{"user_id": u, "product_id": 1, "category_id": 1, "request_price": 30.0, "request_category_id": 8,
             "request_ts": 1_600.0} for u in (1, 2, 3)]
    got = online(settings, "propensity_xgboost", rows)
    assert got["user_activity__views_1h"] == [5, 1, None]  # the 10-03 row lies after the interval
    assert got["propensity_on_demand__price_vs_user_avg"][0] == pytest.approx(1.5)  # 30 / 20
    assert got["propensity_on_demand__category_in_user_top3"] == [1, 0, 0]
    assert got["propensity_on_demand__seconds_since_last_event"][0] == pytest.approx(600.0)
    assert got["user_session__session_events"] == [4, None, None]
    seq = online(settings, "propensity_sequence", rows[:1])
    assert seq["user_session__recent_product_ids"] == [[11, 12, 13]]

    again = materialize_incremental(settings, DAY + timedelta(days=3))
    assert {v.view: (v.start, v.entity_rows) for v in again.views}["user_activity"] == (DAY + timedelta(days=2), 1)
    got = online(settings, "propensity_xgboost", rows[:1])
    assert got["user_activity__views_1h"] == [7]
    assert got["propensity_on_demand__price_vs_user_avg"] == [None]  # average price 0: no ratio
    fv = feature_store(settings).get_feature_view("user_activity")
    assert fv.materialization_intervals[-1] == (DAY + timedelta(days=2), DAY + timedelta(days=3))

    # a back-fill of the older interval does not take the online store back in time
    materialize(settings, DAY, DAY + timedelta(days=2))
    assert online(settings, "propensity_xgboost", rows[:2])["user_activity__views_1h"] == [7, 1]


def test_materialize_says_what_is_missing(applied_template: Path, tmp_path: Path) -> None:
    settings = fresh_store(applied_template, tmp_path, {})
    with pytest.raises(MaterializeError, match=r"no feature tables for \[2026-10-05T00:00:00\+00:00, "
                                               r"2026-10-06T00:00:00\+00:00\).*run `freshcart features build "
                                               r"--start 2026-10-05 --end 2026-10-06`"):
        materialize(settings, datetime(2026, 10, 5), datetime(2026, 10, 6))
    with pytest.raises(MaterializeError, match="unknown feature view.*nope; known: product_activity"):
        materialize(settings, DAY, DAY + timedelta(days=1), ["nope"])
    with pytest.raises(MaterializeError, match="empty interval"):
        materialize(settings, DAY, DAY)


@pytest.mark.parametrize("values, arrow, value_type", [
    ([0, 1, -1, 127, 128, 300, 2**63 - 1, -(2**63)], pa.int64(), ValueType.INT64),
    ([0, None, -300, 2**53], pa.int64(), ValueType.INT64),  # with nulls Feast goes through float64
    ([0.0, -0.0, 0.1, 1e16, 1e-5, 123456789.125, math.nan, math.inf, None], pa.float64(), ValueType.DOUBLE),
    ([[], None, [0], [-1, 1], [2**40] * 20, list(range(200))], pa.list_(pa.int64()), ValueType.INT64_LIST),
])
def test_columns_encode_as_feast_does(values: list[Any], arrow: pa.DataType, value_type: ValueType) -> None:
    column = online_sqlite.encode_column(pa.array(values, arrow), value_type)
    expected = online_sqlite._feast_column(pa.array(values, arrow), value_type)
    for i in range(len(values)):
        assert online_sqlite._cell(column, i) == online_sqlite._cell(expected, i), values[i]


def test_entity_keys_and_times_encode_as_feast_does() -> None:
    users, categories = np.array([1, -7, 2**62]), np.array([5, 0, 9])
    keys = online_sqlite.entity_keys({"user_id": users, "category_id": categories}, 3)
    for i in range(3):
        values = [ValueProto(int64_val=int(users[i])), ValueProto(int64_val=int(categories[i]))]
        proto = EntityKeyProto(join_keys=["user_id", "category_id"], entity_values=values)
        assert keys[i].tobytes() == serialize_entity_key(proto, 3)
    micros = np.array([0, 1_790_000_000_999_999, 1_790_000_001_000_000])
    assert online_sqlite.epoch_seconds(micros).tolist() == [0, 1_790_000_000, 1_790_000_001]


def test_hive_partitions_are_read_for_the_interval_only(tmp_path: Path) -> None:
    from freshcart.features.materialize import offline_files, read_latest

    table = view_table("user_category", [
        {"user_id": 1, "category_id": 2, spec.TIMESTAMP: DAY + timedelta(hours=h), "category_views_30d": h}
        for h in (1, 23, 25, 49)])
    write_feature_tables(tmp_path, {"user_category": table}, DAY.date(), date(2026, 10, 4))
    files = offline_files(tmp_path / "user_category", DAY + timedelta(hours=2), DAY + timedelta(days=1))
    assert [f.parent.name for f in files] == ["event_date=2026-10-01"]
    latest, rows = read_latest(files, ["user_id", "category_id"], ["category_views_30d"],
                               DAY + timedelta(hours=2), DAY + timedelta(days=1))
    assert rows == 1 and latest["category_views_30d"].to_pylist() == [23]
