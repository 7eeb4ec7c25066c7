"""The closed loop for real: `airflow dags test monitor_model` on drifted traffic records a retrain verdict
and triggers `train_evaluate` with the reason in its conf; a second verdict inside the cooldown triggers
nothing. Real Kafka (the prediction log topic), MLflow (the champion and its reference sample), Evidently."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

from freshcart.monitoring import tables
from freshcart.monitoring.scenario import build_scenario, register_champion, serve_views
from freshcart.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).parent / "airflow"
HOUR = timedelta(hours=1)


def _tail(done: subprocess.CompletedProcess[str], lines: int = 60) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-lines:])


def test_drift_triggers_one_retraining_then_the_cooldown_holds(tmp_path: Path, settings: Settings,
                                                                topic: str) -> None:
    home, data_dir = tmp_path / "airflow", tmp_path / "data"
    home.mkdir()
    shop = load_settings(data_dir=data_dir, training_threads=1, predictions_topic=topic)
    scenario = build_scenario(shop, "bot_traffic", days=12)  # views until a day and a half after the onset
    version = register_champion(scenario)
    reference = pq.read_metadata(data_dir / "monitoring" / "reference" / f"v{version}.parquet")
    assert reference.num_rows > 1_000  # training logged the reference sample with the version
    onset = scenario.onset
    for first, last in ((onset, onset + 2 * HOUR), (onset + 23 * HOUR, onset + 27 * HOUR)):
        serve_views(shop, scenario.views, scenario.model, first, last, version=version)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FRESHCART_", "FEAST_"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "FRESHCART_DATA_DIR": str(data_dir),
                "FRESHCART_PROFILE": "local", "FRESHCART_PREDICTIONS_TOPIC": topic,
                "FRESHCART_KAFKA_PORT": str(settings.kafka_port), "FRESHCART_RETRAIN_COOLDOWN_HOURS": "6",
                "FRESHCART_SECRETS_DIR": str(settings.secrets_path)})

    def airflow(*args: str) -> subprocess.CompletedProcess[str]:
        started = time.perf_counter()
        done = subprocess.run([str(AIRFLOW), *args], env=env, cwd=home, text=True, capture_output=True, timeout=500)
        print(f"\n`airflow {' '.join(args)}` -> rc {done.returncode} in {time.perf_counter() - started:.1f}s")
        return done

    assert (migrated := airflow("db", "migrate")).returncode == 0, _tail(migrated)
    first_run = onset + 25 * HOUR  # window [onset+24h, onset+25h); the labels of [onset, onset+1h) close
    for logical in (first_run, first_run + HOUR):
        run = airflow("dags", "test", "monitor_model", logical.isoformat())
        assert run.returncode == 0, _tail(run)

    decisions = tables.read_table(shop, tables.DECISIONS)
    print(decisions[["window_start", "action", "trigger", "reason"]].to_string())
    assert list(decisions["action"]) == ["retrain", "cooldown"], decisions["reason"].tolist()
    assert list(decisions["trigger"]) == [True, False]
    assert "cooldown" in decisions["reason"].iloc[1]
    with sqlite3.connect(home / "airflow.db") as db:
        runs = db.execute("SELECT run_id, conf FROM dag_run WHERE dag_id = 'train_evaluate'").fetchall()
        states = [state for (state,) in db.execute(
            "SELECT ti.state FROM task_instance ti JOIN dag_run r ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id "
            "WHERE ti.dag_id = 'monitor_model' AND ti.task_id = 'trigger_train_evaluate' ORDER BY r.logical_date")]
    assert states == ["success", "skipped"], states
    assert len(runs) == 1 and runs[0][0] == decisions["run_id"].iloc[0]
    conf = json.loads(runs[0][1]) if isinstance(runs[0][1], str) else runs[0][1]
    assert conf["reason"] == decisions["reason"].iloc[0] and "figures" in conf
    status = subprocess.run([str(AIRFLOW.with_name("freshcart")), "monitor", "status"], env=env, text=True,
                            capture_output=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "monitoring decisions" in status.stdout and "retrain" in status.stdout and "cooldown" in status.stdout
