"""The MLflow registry in both profiles: register, promote only the better, roll back, load @champion.

local: MLflow on SQLite in a temporary data dir. production: MLflow on the PostgreSQL
server that `make test` starts (`FRESHCART_PROFILE=production freshcart services up`),
in a database of the test's own that is dropped afterwards.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import mlflow
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from freshcart.services.process import port_open
from freshcart.settings import Settings, load_settings
from freshcart.training.data import TimeSplit, data_hash, default_training_set_path
from freshcart.training.promote import PREVIOUS_CHAMPION_TAG, promote, rollback
from freshcart.training.pyfunc import input_frame
from freshcart.training.registry import CHALLENGER, CHAMPION, connect, version_by_alias
from freshcart.training.train import train_model
from tests.unit.test_training import build_small_shop


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    """The small simulated shop and its training set (shared by both profiles)."""
    data_dir = tmp_path_factory.mktemp("registry-shop")
    _, table = build_small_shop(data_dir)
    return data_dir, table


@pytest.fixture
def local(shop: tuple[Path, pa.Table], tmp_path: Path) -> Settings:
    return load_settings(profile="local", data_dir=shop[0], training_threads=1,
                         mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                         mlflow_artifact_root=tmp_path / "artifacts")


@pytest.fixture
def production(shop: tuple[Path, pa.Table], tmp_path: Path) -> Iterator[Settings]:
    """Production settings with MLflow in a fresh PostgreSQL database on the project's server."""
    base = load_settings()
    if not port_open("127.0.0.1", base.postgres_port):
        pytest.fail(f"no PostgreSQL on 127.0.0.1:{base.postgres_port}: run `FRESHCART_PROFILE=production "
                    "freshcart services up` (make test does this for you)")
    database = f"freshcart_mlflow_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base.postgres_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    # as the production default (the profile's PostgreSQL through psycopg 3), in the test's own database
    settings = load_settings(profile="production", data_dir=shop[0], training_threads=1,
                             mlflow_artifact_root=tmp_path / "artifacts",
                             mlflow_tracking_uri=base.postgres_dsn(database).replace(
                                 "postgresql://", "postgresql+psycopg://", 1))
    yield settings
    mlflow.set_tracking_uri(None)
    with psycopg.connect(base.postgres_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _worse_training_set(settings: Settings, table: pa.Table, holdout_start: datetime) -> Path:
    """The same rows with the labels before the holdout shuffled: a model trained on it learns nothing."""
    train, validation, holdout = TimeSplit(holdout_start, holdout_start).masks(table)
    labels = table["label"].to_numpy().copy()
    before = np.flatnonzero(~holdout)
    labels[before] = np.random.default_rng(1).permutation(labels[before])
    path = settings.data_dir / "training" / "shuffled-labels.parquet"
    pq.write_table(table.set_column(table.column_names.index("label"), "label", pa.array(labels)), path)
    return path


@pytest.mark.parametrize("profile", ["local", "production"])
def test_promote_only_the_better_roll_back_and_load_the_champion(
    profile: str, shop: tuple[Path, pa.Table], request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    settings: Settings = request.getfixturevalue(profile)
    if profile == "production":
        assert settings.tracking_uri.startswith("postgresql+psycopg://")
    caplog.set_level(logging.INFO, logger="freshcart.training")
    table = shop[1]
    path = next((settings.data_dir / "training").glob("propensity_*.parquet"))

    good = train_model(settings, "xgboost", training_set=path)
    worse_path = _worse_training_set(settings, table, good.split.holdout_start)
    bad = train_model(settings, "xgboost", training_set=worse_path)
    assert bad.report.model["auc"] < good.report.model["auc"] - 0.05
    client = connect(settings)
    assert version_by_alias(client, settings.registered_model, CHALLENGER).version == int(bad.version)

    first = promote(settings)  # no champion yet: the (bad) challenger becomes champion
    assert (first.action, first.champion_after) == ("promoted", bad.version)

    # the good model, retrained (same seed, same data) as the challenger, beats it on the same holdout
    better = train_model(settings, "xgboost", training_set=path)
    decision = promote(settings)
    assert decision.action == "promoted" and decision.champion_after == better.version
    assert decision.challenger_value == pytest.approx(better.report.model["auc"])
    assert decision.champion_value == pytest.approx(bad.report.model["auc"])
    champion = version_by_alias(client, settings.registered_model, CHAMPION)
    assert str(champion.version) == better.version
    assert champion.tags[PREVIOUS_CHAMPION_TAG] == bad.version
    assert champion.tags["promotion.action"] == "promoted"

    # a deliberately worse challenger is never promoted; it stays challenger, the reason on its version
    worse = train_model(settings, "xgboost", training_set=worse_path)
    kept = promote(settings)
    assert kept.action == "kept" and kept.champion_after == better.version
    assert str(version_by_alias(client, settings.registered_model, CHAMPION).version) == better.version
    tags = client.get_model_version(settings.registered_model, worse.version).tags
    assert tags["promotion.action"] == "kept" and "does not beat champion" in tags["promotion.reason"]
    assert str(version_by_alias(client, settings.registered_model, CHALLENGER).version) == worse.version
    logged = [r.getMessage() for r in caplog.records if "model registry decision" in r.getMessage()]
    assert len(logged) == 3 and '"action": "kept"' in logged[-1]

    # the registry round trip: the champion loads by alias and scores a batch like the trained model
    batch = table.slice(table.num_rows - 500, 500)
    loaded = mlflow.pyfunc.load_model(f"models:/{settings.registered_model}@champion")
    scores = np.asarray(loaded.predict(input_frame(batch)))
    assert scores.shape == (500,) and ((scores > 0) & (scores < 1)).all()
    assert loaded.unwrap_python_model().model_type == "xgboost"
    assert scores == pytest.approx(loaded.unwrap_python_model().model.predict(batch))

    back = rollback(settings)
    assert (back.action, back.champion_before, back.champion_after) == ("rolled_back", better.version, bad.version)
    assert str(version_by_alias(client, settings.registered_model, CHAMPION).version) == bad.version
    run = client.get_run(better.run_id)
    assert run.data.params["data_hash"] == data_hash(pq.read_table(path))  # lineage: the exact rows
    assert run.data.params["feature_services"] == "propensity_xgboost,propensity_sequence"
    assert run.data.tags["env.xgboost"] and "holdout_auc" in run.data.metrics and "oracle_auc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(better.run_id, "plots")}
    assert {"plots/roc.png", "plots/pr.png", "plots/calibration.png", "plots/feature_importance.png"} <= artifacts
    assert default_training_set_path(settings, *_days(path)) == path


def _days(path: Path) -> tuple:
    from datetime import date

    _, first, last = path.stem.split("_")
    return date.fromisoformat(first), date.fromisoformat(last)


class _StaleModel(mlflow.pyfunc.PythonModel):
    """A champion registered before the features changed: it cannot score today's rows."""

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        raise KeyError("column 'user_activity__views_7d' is not in the model's inputs")


def test_a_champion_that_cannot_score_the_holdout_is_replaced(shop: tuple[Path, pa.Table], local: Settings) -> None:
    settings = local
    client = connect(settings)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=_StaleModel(),
                                registered_model_name=settings.registered_model)
    stale = max(int(v.version) for v in client.search_model_versions(f"name='{settings.registered_model}'"))
    client.set_registered_model_alias(settings.registered_model, CHAMPION, str(stale))

    path = next((settings.data_dir / "training").glob("propensity_*.parquet"))
    challenger = train_model(settings, "xgboost", training_set=path)
    decision = promote(settings)
    assert (decision.action, decision.champion_before, decision.champion_after) == (
        "promoted", str(stale), challenger.version)
    assert f"champion v{stale} cannot score the holdout" in decision.reason and "KeyError" in decision.reason
    assert decision.champion_value is None and decision.challenger_value == pytest.approx(
        challenger.report.model["auc"])
    champion = version_by_alias(client, settings.registered_model, CHAMPION)
    assert str(champion.version) == challenger.version and champion.tags[PREVIOUS_CHAMPION_TAG] == str(stale)
    assert rollback(settings).champion_after == str(stale)  # still possible, by choice
