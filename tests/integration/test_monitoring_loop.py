"""The closed loop for real, on one small drifted shop (fixture ``drifted_shop``, its champion v1 trained once).

`airflow dags test monitor_model` on drifted traffic records a retrain verdict and triggers
`train_evaluate` with the reason in its conf; a second verdict inside the cooldown triggers
nothing. Then the last step of the loop: a retrained champion promoted in the registry is
picked up by the scoring service's model holder without a restart, the windows after are
logged with the new version and judged against its reference, and the alarm is gone.
Real Kafka (the prediction log topic), MLflow (the champions and their reference samples), Evidently."""

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
import pytest

from freshcart.monitoring import tables
from freshcart.monitoring.reference import load_reference
from freshcart.monitoring.report import monitor_window
from freshcart.monitoring.scenario import Scenario, ServedModel, build_scenario, register_champion, serve_views
from freshcart.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).parent / "airflow"
HOUR = timedelta(hours=1)


def _tail(done: subprocess.CompletedProcess[str], lines: int = 60) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-lines:])


@pytest.fixture(scope="module")
def drifted_shop(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """A small shop with bot traffic from the onset (views until two and a half days after it) and its
    champion v1, XGBoost trained through MLflow with its reference sample, in a data dir of its own."""
    shop = load_settings(data_dir=tmp_path_factory.mktemp("drifted-shop"), profile="local", training_threads=1)
    scenario = build_scenario(shop, "bot_traffic", days=13)
    register_champion(scenario)
    return scenario


def test_drift_triggers_one_retraining_then_the_cooldown_holds(tmp_path: Path, settings: Settings, topic: str,
                                                                drifted_shop: Scenario) -> None:
    home = tmp_path / "airflow"
    home.mkdir()
    scenario = drifted_shop
    shop, version = scenario.settings.model_copy(update={"predictions_topic": topic}), scenario.reference.version
    data_dir = shop.data_dir
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


def test_the_service_holder_serves_the_promoted_champion_and_the_next_windows_recover(
        drifted_shop: Scenario) -> None:
    from freshcart.training.promote import promote
    from freshcart.training.registry import CHAMPION, connect
    from freshcart.training.train import train_model

    scenario, onset = drifted_shop, drifted_shop.onset
    shop = scenario.settings.model_copy(update={"serving_reload_seconds": 1.0})
    client, v1 = connect(shop), scenario.reference.version

    def logged_versions(first: object, last: object) -> set[str]:
        rows = tables.read_predictions(shop, first, last)
        assert rows is not None and rows.num_rows > 0
        return set(rows["model_version"].to_pylist())

    try:
        with ServedModel(shop) as served:
            assert served.current.info.version == v1
            before = []
            for start in (onset, onset + HOUR):  # the first two hours of the drift
                serve_views(shop, scenario.views, served.current, start, start + HOUR)
                before.append(monitor_window(shop, load_reference(shop), start, start + HOUR, html=False))
            assert logged_versions(onset, onset + 2 * HOUR) == {v1}
            assert [(r.model_version, r.alarm) for r in before] == [(v1, True), (v1, True)]

            # retrained on the views up to half a day into the drift (a full day of reference), then promoted
            first = scenario.views["event_time"][0].as_py().date() + timedelta(days=1)
            last = (onset + timedelta(hours=12)).date() + timedelta(days=1)
            retrain = shop.model_copy(update={"training_validation_share": 0.25, "training_holdout_share": 0.25})
            v2 = train_model(retrain, "xgboost", first, last).version
            assert v2 != v1
            promoted = promote(shop)
            assert (promoted.action, promoted.champion_after) == ("promoted", v2), promoted.reason
            assert str(client.get_model_version_by_alias(shop.registered_model, CHAMPION).version) == v2

            served.wait_for(v2, timeout=60)  # the watcher's check swaps it in
            assert [v for _, v in served.loads] == [v1, v2]  # one holder, no restart: v1, then v2
            after = []
            for start in (onset + 48 * HOUR, onset + 49 * HOUR):  # a day after the retraining's last view
                serve_views(shop, scenario.views, served.current, start, start + HOUR)
                reference = load_reference(shop)  # the champion's, as the monitor_model DAG reads it
                after.append(monitor_window(shop, reference, start, start + HOUR, html=False))
            assert logged_versions(onset + 48 * HOUR, onset + 50 * HOUR) == {v2}
            assert [(r.model_version, r.status) for r in after] == [(v2, "judged"), (v2, "judged")]
            assert not any(r.alarm for r in after), [r.reasons for r in after]
    finally:  # the module's shop keeps v1 as its champion
        client.set_registered_model_alias(shop.registered_model, CHAMPION, v1)
