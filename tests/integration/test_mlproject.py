"""`mlflow run training -e train|evaluate|promote` (training/MLproject) runs FreshCart's own training code.

Local profile: MLflow on SQLite in a temporary data dir that holds a small simulated shop;
`mlflow run` points at the same tracking store (MLFLOW_TRACKING_URI) and experiment, as
training/README.md says. `mlflow run` is the real command line, with `--env-manager local`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from freshcart.settings import REPO_ROOT, Settings, load_settings
from freshcart.training.pyfunc import input_frame
from freshcart.training.registry import CHALLENGER, CHAMPION, connect, version_by_alias
from freshcart.training.train import train_model
from tests.unit.test_training import build_small_shop

VENV_BIN = Path(sys.executable).parent
PROJECT_PARAMS = {"model"}  # what `mlflow run` logs besides FreshCart's own parameters (start and end agree)


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated shop with its training set (build_small_shop), shared by the tests."""
    data_dir = tmp_path_factory.mktemp("mlproject-shop")
    build_small_shop(data_dir)
    return data_dir


@pytest.fixture
def shop(shop_dir: Path, tmp_path: Path) -> Settings:
    """Settings on the shop with a tracking store of the test's own; few boosting rounds, one thread."""
    return load_settings(profile="local", data_dir=shop_dir, training_threads=1, xgb_max_rounds=40,
                         mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                         mlflow_artifact_root=tmp_path / "artifacts")


def _interval(settings: Settings) -> tuple[date, date]:
    """Start and end of the training set that build_small_shop wrote (propensity_<start>_<end>.parquet)."""
    _, start, end = next((settings.data_dir / "training").glob("propensity_*.parquet")).stem.split("_")
    return date.fromisoformat(start), date.fromisoformat(end)


def _mlflow_run(settings: Settings, cwd: Path, entry_point: str, **params: str) -> subprocess.CompletedProcess[str]:
    """`mlflow run training -e ENTRY -P k=v ... --env-manager local` against the settings' tracking store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRESHCART_", "MLFLOW_"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", MLFLOW_TRACKING_URI=settings.tracking_uri,
               FRESHCART_PROFILE="local", FRESHCART_DATA_DIR=str(settings.data_dir),
               FRESHCART_MLFLOW_TRACKING_URI=settings.tracking_uri,
               FRESHCART_MLFLOW_ARTIFACT_ROOT=str(settings.mlflow_artifact_root),
               FRESHCART_TRAINING_THREADS=str(settings.training_threads),
               FRESHCART_XGB_MAX_ROUNDS=str(settings.xgb_max_rounds))
    argv = [str(VENV_BIN / "mlflow"), "run", str(REPO_ROOT / "training"), "-e", entry_point,
            "--env-manager", "local", "--experiment-name", settings.mlflow_experiment]
    for name, value in params.items():
        argv += ["-P", f"{name}={value}"]
    return subprocess.run(argv, cwd=cwd, env=env, text=True, capture_output=True, timeout=600)


def test_mlflow_run_trains_evaluates_and_promotes_as_freshcart_does(shop: Settings, tmp_path: Path) -> None:
    start, end = _interval(shop)
    plain = train_model(shop, "xgboost", start, end)  # what `freshcart train --model xgboost --start --end` calls

    trained = _mlflow_run(shop, tmp_path, "train", model="xgboost", start=str(start), end=str(end))
    assert trained.returncode == 0, trained.stdout + trained.stderr
    client = MlflowClient(tracking_uri=shop.tracking_uri, registry_uri=shop.tracking_uri)
    experiment = client.get_experiment_by_name(shop.mlflow_experiment)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert len(runs) == 2 and runs[0].info.run_id == plain.run_id  # FreshCart logged into the run of `mlflow run`
    ours, project = runs
    assert project.data.tags["mlflow.source.type"] == "PROJECT"
    assert project.data.tags["mlflow.project.entryPoint"] == "train"
    assert project.info.status == "FINISHED" and project.info.run_name == ours.info.run_name
    assert f"MLflow run {project.info.run_id}; registered {shop.registered_model} v2" in trained.stdout

    # the same code on the same data and seed: the same parameters, lineage and holdout figures
    assert project.data.params["model"] == "xgboost"
    assert {k: v for k, v in project.data.params.items() if k not in PROJECT_PARAMS} == ours.data.params
    assert ours.data.params["start"] == str(start) and ours.data.params["rows_holdout"] == str(plain.rows["holdout"])
    timing = {"train_seconds"}
    assert ({k: v for k, v in project.data.metrics.items() if k not in timing}
            == {k: v for k, v in ours.data.metrics.items() if k not in timing})
    assert project.data.metrics["holdout_auc"] == pytest.approx(plain.report.model["auc"])
    artifacts = {a.path for a in client.list_artifacts(project.info.run_id, "plots")}
    assert {"plots/roc.png", "plots/feature_importance.png"} <= artifacts

    version = client.get_model_version(shop.registered_model, "2")
    assert version.run_id == project.info.run_id
    first = client.get_model_version(shop.registered_model, plain.version)
    assert version.tags["data_hash"] == first.tags["data_hash"] and first.run_id == plain.run_id
    connect(shop)
    assert str(version_by_alias(client, shop.registered_model, CHALLENGER).version) == "2"
    batch = input_frame(pq.read_table(plain.training_set).slice(0, 200))
    scores = {v: np.asarray(mlflow.pyfunc.load_model(f"models:/{shop.registered_model}/{v}").predict(batch))
              for v in (plain.version, "2")}
    assert scores["2"] == pytest.approx(scores[plain.version])

    evaluated = _mlflow_run(shop, tmp_path, "evaluate")
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert "@challenger (v2)" in evaluated.stdout and "auc" in evaluated.stdout

    promoted = _mlflow_run(shop, tmp_path, "promote", margin="0.01")  # metric left empty: FreshCart's setting
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    champion = version_by_alias(client, shop.registered_model, CHAMPION)
    assert str(champion.version) == "2" and champion.tags["promotion.action"] == "promoted"
    assert (champion.tags["promotion.metric"], champion.tags["promotion.margin"]) == ("auc", "0.01")
    assert not (REPO_ROOT / "training" / "mlruns").exists() and not (REPO_ROOT / "training" / "mlflow.db").exists()


def test_train_stops_on_a_run_it_cannot_log_into(shop: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `mlflow run` hands over in MLFLOW_RUN_ID must be a run of FreshCart's store and experiment."""
    start, end = _interval(shop)
    client = connect(shop)
    count = len(client.search_model_versions(f"name='{shop.registered_model}'"))
    monkeypatch.setenv("MLFLOW_RUN_ID", uuid.uuid4().hex)
    with pytest.raises(ValueError, match="is no run of FreshCart's tracking store sqlite:///.*MLFLOW_TRACKING_URI"):
        train_model(shop, "xgboost", start, end)
    default = client.create_run(experiment_id="0")  # `mlflow run` without --experiment-name
    monkeypatch.setenv("MLFLOW_RUN_ID", default.info.run_id)
    with pytest.raises(ValueError, match="experiment 'Default'.*add `--experiment-name freshcart-propensity`"):
        train_model(shop, "xgboost", start, end)
    experiment = client.get_experiment_by_name(shop.mlflow_experiment)
    compact = client.create_run(experiment_id=experiment.experiment_id)
    client.log_param(compact.info.run_id, "start", f"{start:%Y%m%d}")  # -P start=20250107, a date as well
    monkeypatch.setenv("MLFLOW_RUN_ID", compact.info.run_id)
    with pytest.raises(ValueError, match=f"-P start={start:%Y%m%d}: FreshCart logs start as '{start}'"):
        train_model(shop, "xgboost", start, end)
    assert len(client.search_model_versions(f"name='{shop.registered_model}'")) == count
