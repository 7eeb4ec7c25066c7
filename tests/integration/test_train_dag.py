"""`train_evaluate` runs for real with `airflow dags test` on a migrated SQLite metadata DB (local profile):
training set -> XGBoost and DIN -> evaluate -> promote, ending with a champion in the MLflow registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.unit.test_training import build_small_shop

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).parent / "airflow"


def _tail(done: subprocess.CompletedProcess[str], lines: int = 60) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-lines:])


def test_train_evaluate_trains_both_models_and_registers_a_champion(tmp_path: Path) -> None:
    home, data_dir = tmp_path / "airflow", tmp_path / "data"
    home.mkdir()
    settings, table = build_small_shop(data_dir)
    first, last = str(table["event_time"][0].as_py().date()), "2025-01-10"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FRESHCART_", "FEAST_"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "FRESHCART_DATA_DIR": str(data_dir),
                "FRESHCART_PROFILE": "local", "FRESHCART_DIN_MAX_EPOCHS": "1", "FRESHCART_TRAINING_THREADS": "1"})

    def airflow(*args: str) -> subprocess.CompletedProcess[str]:
        started = time.perf_counter()
        done = subprocess.run([str(AIRFLOW), *args], env=env, cwd=home, text=True, capture_output=True, timeout=500)
        print(f"\n`airflow {' '.join(args)}` -> rc {done.returncode} in {time.perf_counter() - started:.1f}s")
        return done

    migrated = airflow("db", "migrate")
    assert migrated.returncode == 0, _tail(migrated)
    conf = {"start": first, "end": last, "models": ["xgboost", "din"]}
    run = airflow("dags", "test", "train_evaluate", "2025-01-12", "--conf", json.dumps(conf))
    assert run.returncode == 0, _tail(run)

    import sqlite3

    with sqlite3.connect(home / "airflow.db") as db:
        states = dict(db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = 'train_evaluate'"))
    assert states == {name: "success" for name in
                      ("build_training_set", "train_xgboost", "train_din", "evaluate", "promote",
                       "evaluate_recommendations", "train_ranker")}

    from freshcart.training.registry import CHAMPION, connect, version_by_alias

    client = connect(settings)
    versions = client.search_model_versions(f"name = '{settings.registered_model}'")
    assert sorted(v.tags["model_type"] for v in versions) == ["din", "xgboost"]
    champion = version_by_alias(client, settings.registered_model, CHAMPION)
    assert champion is not None and champion.tags["promotion.action"] == "promoted"
    replays = client.search_runs([client.get_experiment_by_name(settings.mlflow_experiment).experiment_id],
                                 "tags.model_version = '" + str(champion.version) + "'")
    assert len(replays) == 1 and "item-knn.purchase.ndcg_at_10" in replays[0].data.metrics
    from freshcart.recommendation.ranker_registry import RANKER_MODEL

    rankers = client.search_model_versions(f"name = '{RANKER_MODEL}'")  # registered, then gated
    assert len(rankers) == 1 and rankers[0].tags["ranker_promotion.action"] in ("promoted", "kept")
    built = pq.read_metadata(settings.data_dir / "training" / f"propensity_{first}_{last}.parquet")
    assert built.num_rows == table.num_rows  # the DAG rebuilt the same training set
