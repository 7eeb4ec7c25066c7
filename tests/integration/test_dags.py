"""Both DAGs run for real with `airflow dags test` on a migrated SQLite metadata DB (local profile).

A small simulation is landed, `ingest_events` ingests one arrival day and
updates the offline-events asset (its event carries the interval), and
`materialize_features` runs on that interval: feature tables in the offline
store, rows in the SQLite online store equal to the tables' latest rows.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from freshcart.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).parent / "airflow"
ASSET_URI = "freshcart://offline/events"
DAY = date(2025, 1, 7)  # the arrival day that is ingested
LOGICAL_DATE = "2025-01-08"  # a manual run at logical date D covers [D - 1 day, D)
INTERVAL = {"start": "2025-01-07T00:00:00+00:00", "end": "2025-01-08T00:00:00+00:00"}
# late arrivals of the day belong to 2025-01-06: the run changed the event dates [01-06, 01-08)
EVENT_RANGE = {"event_start": "2025-01-06T00:00:00+00:00", "event_end": "2025-01-08T00:00:00+00:00"}


@dataclass
class Sandbox:
    """An AIRFLOW_HOME with a migrated SQLite DB, and the FreshCart data dir the DAGs write to."""

    home: Path
    env: dict[str, str]
    settings: Settings

    def airflow(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        """Run the Airflow CLI in the sandbox; prints the wall time."""
        started = time.perf_counter()
        done = subprocess.run([str(AIRFLOW), *args], env=self.env, cwd=self.home, text=True,
                              capture_output=True, timeout=timeout)
        print(f"\n`airflow {' '.join(args)}` -> rc {done.returncode} in {time.perf_counter() - started:.1f}s")
        return done

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.home / "airflow.db") as db:
            return db.execute(sql, params).fetchall()


def _tail(done: subprocess.CompletedProcess[str], lines: int = 60) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-lines:])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    root = tmp_path_factory.mktemp("dags")
    home, data_dir = root / "airflow", root / "data"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FRESHCART_", "FEAST_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # so the asset queues materialize_features
        "FRESHCART_DATA_DIR": str(data_dir),
        "FRESHCART_PROFILE": "local",
    })
    box = Sandbox(home=home, env=env, settings=load_settings(data_dir=data_dir, profile="local"))
    migrated = box.airflow("db", "migrate")
    assert migrated.returncode == 0, _tail(migrated)
    return box


@pytest.fixture(scope="module")
def landed(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three simulated days (2025-01-06 .. 08) in the landing zone, 10% of events arriving late."""
    from freshcart.ingestion.landing import land_simulation
    from freshcart.simulator import SimulationConfig, write_simulation

    sim_dir = tmp_path_factory.mktemp("simulation")
    config = SimulationConfig(seed=11, users=60, products=120, categories=8, days=3, events_per_day=3_000)
    write_simulation(config, sim_dir)
    land_simulation(sim_dir, sandbox.settings.landing_dir, late_share=0.1, seed=1)
    return sandbox.settings.landing_dir


@pytest.fixture(scope="module")
def ingest_run(sandbox: Sandbox, landed: Path) -> subprocess.CompletedProcess[str]:
    return sandbox.airflow("dags", "test", "ingest_events", LOGICAL_DATE)


@pytest.fixture(scope="module")
def asset_extra(sandbox: Sandbox, ingest_run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The extra of the asset event that the ingestion run recorded."""
    assert ingest_run.returncode == 0, _tail(ingest_run)
    rows = sandbox.query(
        "SELECT e.extra, e.source_dag_id, e.source_task_id FROM asset_event e "
        "JOIN asset a ON a.id = e.asset_id WHERE a.uri = ?", ASSET_URI)
    assert len(rows) == 1, rows
    assert rows[0][1:] == ("ingest_events", "ingest_events")
    return json.loads(rows[0][0])


@pytest.fixture(scope="module")
def applied(sandbox: Sandbox) -> None:
    """`feast apply` of feature_repo/ for the sandbox's data dir, as a user does once before materialising."""
    from freshcart.features.store import apply

    done = apply(sandbox.settings)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def materialize_run(
    sandbox: Sandbox, asset_extra: dict[str, Any], applied: None
) -> subprocess.CompletedProcess[str]:
    """`materialize_features` on the event range the asset event carries (`dags test` makes a manual run)."""
    conf = {"start": asset_extra["event_start"], "end": asset_extra["event_end"]}
    return sandbox.airflow("dags", "test", "materialize_features", LOGICAL_DATE, "--conf", json.dumps(conf))


def test_ingest_events_fills_the_offline_store_for_its_interval(
    sandbox: Sandbox, landed: Path, ingest_run: subprocess.CompletedProcess[str]
) -> None:
    import pyarrow.parquet as pq

    from freshcart import storage

    assert ingest_run.returncode == 0, _tail(ingest_run)
    events_dir = sandbox.settings.offline_events_dir
    arrival = landed / f"arrival_date={DAY.isoformat()}"
    on_time = pq.read_metadata(arrival / "events.parquet").num_rows
    late = {p.name: pq.read_metadata(p).num_rows for p in arrival.glob("late-*.parquet")}
    assert on_time > 0 and late, "the simulation should land on-time and late events on the day"
    partition_rows = {day: pq.read_metadata(storage.partition_dir(events_dir, day) / storage.DATA_FILE).num_rows
                      for day in storage.list_partitions(events_dir)}
    assert partition_rows[DAY] == on_time
    for name, rows in late.items():  # late arrivals go to their own (earlier) event date
        assert partition_rows[date.fromisoformat(name.removeprefix("late-").removesuffix(".parquet"))] == rows
    # only the arrivals of the interval: nothing of the next day's landing folder
    assert max(partition_rows) == DAY


def test_the_asset_event_carries_the_interval_and_queues_materialize(
    sandbox: Sandbox, asset_extra: dict[str, Any]
) -> None:
    assert asset_extra == {**INTERVAL, **EVENT_RANGE}
    queued = sandbox.query(
        "SELECT q.target_dag_id FROM asset_dag_run_queue q JOIN asset a ON a.id = q.asset_id WHERE a.uri = ?",
        ASSET_URI)
    assert queued == [("materialize_features",)]  # the scheduler would start it from this queue


def test_materialize_features_builds_the_feature_tables(
    sandbox: Sandbox, materialize_run: subprocess.CompletedProcess[str]
) -> None:
    from freshcart.features import spec
    from freshcart.features.tables import read_feature_table

    assert materialize_run.returncode == 0, _tail(materialize_run)
    late_day = DAY - timedelta(days=1)  # rebuilt: it received late events
    for view in spec.VIEWS:
        for day in (late_day, DAY):
            assert read_feature_table(sandbox.settings, view, day, day + timedelta(days=1)).num_rows > 0, (view, day)
        in_range = read_feature_table(sandbox.settings, view, late_day, DAY + timedelta(days=1)).num_rows
        assert read_feature_table(sandbox.settings, view).num_rows == in_range, f"{view}: only the event range"


def _latest_rows(table: pa.Table, key: str) -> dict[int, dict[str, Any]]:
    """The latest row of every key (rows sorted by time, the last one wins)."""
    ordered = table.sort_by([(key, "ascending"), ("event_timestamp", "ascending")])
    return {row[key]: row for row in ordered.to_pylist()}


def test_online_store_holds_the_latest_feature_rows(
    sandbox: Sandbox, materialize_run: subprocess.CompletedProcess[str]
) -> None:
    from freshcart.features.store import feature_store
    from freshcart.features.tables import read_feature_table

    assert materialize_run.returncode == 0, _tail(materialize_run)
    store = feature_store(sandbox.settings)
    checks = {"user_activity": ("user_id", ["views_24h", "purchases_30d", "last_event_ts"]),
              "product_activity": ("product_id", ["views_24h", "current_price"])}
    for view, (key, features) in checks.items():
        latest = _latest_rows(read_feature_table(sandbox.settings, view), key)
        keys = sorted(latest)[:25]
        assert keys, view
        online = store.get_online_features(
            features=[f"{view}:{name}" for name in features],
            entity_rows=[{key: k} for k in [*keys, 10**15]],  # the last key never occurred
        ).to_dict()
        assert online[key] == [*keys, 10**15]
        for name in features:
            expected = [latest[k][name] for k in keys]
            assert any(v is not None for v in expected), f"{view}:{name} is null for every key"
            assert online[name][:-1] == pytest.approx(expected, nan_ok=True), f"{view}:{name}"
            assert online[name][-1] is None, f"{view}:{name} has a value for an unknown key"


def test_materialize_features_puts_the_neighbours_online_and_chooses_the_quotas(
    sandbox: Sandbox, materialize_run: subprocess.CompletedProcess[str]
) -> None:
    import pyarrow.parquet as pq

    from freshcart.features import spec
    from freshcart.features.store import feature_store
    from freshcart.recommendation.online_sources import quotas_path, read_shares, session_index_path
    from freshcart.recommendation.session_index import load_session_index

    assert materialize_run.returncode == 0, _tail(materialize_run)
    table = pq.read_table(sandbox.settings.feature_tables_dir / spec.PRODUCT_NEIGHBOURS.name)
    assert table.num_rows > 0 and set(table["event_date"].to_pylist()) == {"2025-01-07"}  # as of the end, 01-08
    rows = {row["product_id"]: row for row in table.to_pylist()}
    keys = sorted(rows)[:10]
    online = feature_store(sandbox.settings).get_online_features(
        features=["product_neighbours:co_viewed_ids", "product_neighbours:co_bought_weights"],
        entity_rows=[{"product_id": k} for k in keys]).to_dict()
    assert online["co_viewed_ids"] == [rows[k]["co_viewed_ids"] for k in keys]
    for got, want in zip(online["co_bought_weights"], [rows[k]["co_bought_weights"] for k in keys]):
        assert got == pytest.approx(want)
    assert load_session_index(session_index_path(sandbox.settings)).size > 0
    shares = read_shares(quotas_path(sandbox.settings))
    assert set(shares) == {"session", "recent", "co_viewed", "co_bought", "sknn", "trending", "popular"}
    assert sum(shares.values()) == pytest.approx(1.0)
