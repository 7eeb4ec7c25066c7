"""The train_evaluate DAG parses without services, runs on the materialised-features asset, and is wired
build -> train both -> evaluate -> promote -> evaluate_recommendations and train_ranker; materialize_features emits that asset."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
FEATURES_URI = "freshcart://features/materialized"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
        patch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        patch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
        from airflow.dag_processing.dagbag import DagBag

        before = set(sys.modules)
        bag = DagBag(dag_folder=str(REPO / "dags"), safe_mode=False)
        bag.modules_loaded_by_parse = set(sys.modules) - before  # type: ignore[attr-defined]
        yield bag


def test_train_evaluate_parses_without_heavy_imports(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert "train_evaluate" in dagbag.dag_ids
    heavy = ("mlflow", "torch", "xgboost", "pandas", "freshcart.training", "freshcart.settings")
    loaded = sorted(m for m in dagbag.modules_loaded_by_parse if m.startswith(heavy))
    assert loaded == [], f"parsing dags/ imported {loaded}"


def test_train_evaluate_is_scheduled_on_the_materialised_features(dagbag: Any) -> None:
    from airflow.sdk.definitions.timetables.assets import AssetTriggeredTimetable

    dag = dagbag.dags["train_evaluate"]
    assert isinstance(dag.timetable, AssetTriggeredTimetable)
    assert [asset.uri for asset in dag.timetable.asset_condition.objects] == [FEATURES_URI]
    materialize = dagbag.dags["materialize_features"].task_dict["materialize_features"]
    assert [outlet.uri for outlet in materialize.outlets] == [FEATURES_URI]


def test_train_evaluate_wiring_and_params(dagbag: Any) -> None:
    dag = dagbag.dags["train_evaluate"]
    tasks = dag.task_dict
    assert set(tasks) == {"build_training_set", "train_xgboost", "train_din", "evaluate", "promote",
                          "evaluate_recommendations", "train_ranker"}
    assert tasks["build_training_set"].downstream_task_ids == {"train_xgboost", "train_din", "evaluate_recommendations",
                                                               "train_ranker"}
    assert tasks["train_xgboost"].downstream_task_ids == tasks["train_din"].downstream_task_ids == {"evaluate"}
    assert tasks["evaluate"].downstream_task_ids == {"promote"}
    assert tasks["promote"].downstream_task_ids == {"evaluate_recommendations", "train_ranker"}
    assert tasks["evaluate"].trigger_rule == "none_failed_min_one_success"  # one model type may be skipped
    params = copy.deepcopy(dag.params)
    assert params.validate() == {"start": None, "end": None, "models": ["xgboost", "din"]}
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        params.get_param("models").resolve(value=["lightgbm"])
    assert dag.doc_md and "champion" in dag.doc_md and dag.max_active_runs == 1


def test_training_interval_ends_a_horizon_before_the_features(monkeypatch: pytest.MonkeyPatch) -> None:
    from freshcart.pipeline import training_interval

    monkeypatch.setenv("FRESHCART_TRAINING_DAYS", "4")
    monkeypatch.setenv("FRESHCART_HORIZON_HOURS", "24")
    assert training_interval("2025-01-13T00:00:00+00:00") == ("2025-01-08T00:00:00+00:00",
                                                              "2025-01-12T00:00:00+00:00")
    monkeypatch.setenv("FRESHCART_HORIZON_HOURS", "36")  # labels need two more days of events
    start, end = training_interval("2025-01-13")
    assert (date.fromisoformat(start[:10]), date.fromisoformat(end[:10])) == (date(2025, 1, 7), date(2025, 1, 11))
