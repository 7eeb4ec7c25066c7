"""The DAG files in dags/ parse without services or a metadata DB, with the expected wiring."""

from __future__ import annotations

import copy
import importlib.util
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
ASSET_URI = "freshcart://offline/events"


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway AIRFLOW_HOME, set before Airflow is first imported (it writes logs/ there)."""
    home = tmp_path_factory.mktemp("airflow_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_HOME", str(home))
        patch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        patch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS))
        yield home


@pytest.fixture(scope="module")
def dagbag(airflow_home: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    before = set(sys.modules)
    started = time.perf_counter()
    bag = DagBag(dag_folder=str(DAGS), safe_mode=False)
    bag.modules_loaded_by_parse = set(sys.modules) - before  # type: ignore[attr-defined]
    print(f"\nparsed {len(bag.dags)} DAG(s) from {DAGS} in {time.perf_counter() - started:.3f}s")
    for stat in bag.dagbag_stats:
        print(f"  {stat.file}: {stat.duration.total_seconds():.3f}s, {stat.task_num} task(s)")
    return bag


@pytest.fixture(scope="module")
def materialize_module(dagbag: Any) -> ModuleType:
    """The materialize_features DAG file as a module (for its interval helper)."""
    spec = importlib.util.spec_from_file_location("freshcart_test_materialize_dag", DAGS / "materialize_features.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_errors_and_both_dags(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert {"ingest_events", "materialize_features"} <= set(dagbag.dag_ids)


def test_dag_files_import_no_heavy_library_at_parse_time(dagbag: Any) -> None:
    heavy = ("feast", "pandas", "pyarrow", "freshcart.ingestion.interval_ingest", "freshcart.features", "freshcart.settings")
    loaded = sorted(m for m in dagbag.modules_loaded_by_parse if m.split(".")[0] in heavy or m.startswith(heavy))
    assert loaded == [], f"parsing dags/ imported {loaded}"


def test_ingest_events_is_daily_over_a_data_interval(dagbag: Any) -> None:
    from airflow.sdk import CronDataIntervalTimetable

    dag = dagbag.dags["ingest_events"]
    assert list(dag.task_dict) == ["ingest_events"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)  # a real [start, end) interval per run
    assert dag.timetable.expression == "0 0 * * *"
    assert dag.catchup is False
    task = dag.task_dict["ingest_events"]
    assert [outlet.uri for outlet in task.outlets] == [ASSET_URI]
    assert task.retries >= 1 and task.retry_delay <= timedelta(minutes=5)
    assert task.owner == "freshcart" and "freshcart" in dag.tags
    assert dag.doc_md and "ingest" in dag.doc_md.lower()


def test_materialize_features_runs_on_the_asset(dagbag: Any) -> None:
    from airflow.sdk.definitions.timetables.assets import AssetTriggeredTimetable

    dag = dagbag.dags["materialize_features"]
    assert isinstance(dag.timetable, AssetTriggeredTimetable)
    assert [asset.uri for asset in dag.timetable.asset_condition.objects] == [ASSET_URI]
    assert set(dag.task_dict) == {"build_features", "materialize_features", "build_cooccurrence",
                                  "choose_candidate_quotas"}
    assert dag.task_dict["build_features"].downstream_task_ids == {"materialize_features"}
    assert dag.task_dict["materialize_features"].downstream_task_ids == {"build_cooccurrence"}
    assert dag.task_dict["build_cooccurrence"].downstream_task_ids == {"choose_candidate_quotas"}
    assert dag.task_dict["choose_candidate_quotas"].downstream_task_ids == set()
    assert {"start", "end"} <= set(dag.params)
    assert dag.params["start"] is None and dag.params["end"] is None
    assert all(t.retries >= 1 and t.owner == "freshcart" for t in dag.tasks)
    assert dag.doc_md and "asset" in dag.doc_md.lower()


def _asset_events(*extras: dict[str, str]) -> Any:
    """Triggering asset events as a task sees them (the SDK's own accessor and event type)."""
    from airflow.sdk.api.datamodels._generated import AssetReferenceAssetEventDagRun
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    asset = AssetReferenceAssetEventDagRun(name="freshcart_offline_events", uri=ASSET_URI, extra={})
    events = [
        AssetEventDagRunReferenceResult(
            asset=asset, extra=extra, source_task_id="ingest_events",
            source_dag_id="ingest_events", source_run_id=f"run{i}", source_map_index=-1, source_aliases=[],
            timestamp=datetime(2025, 1, 9, tzinfo=timezone.utc),
        )
        for i, extra in enumerate(extras)
    ]
    return TriggeringAssetEventsAccessor.build(events)


ANCHOR = datetime(2025, 3, 10, 15, 30, tzinfo=timezone.utc)


def _day(day: int) -> str:
    return f"2025-01-{day:02d}T00:00:00+00:00"


def test_interval_from_one_asset_event(materialize_module: ModuleType) -> None:
    events = _asset_events({"start": _day(6), "end": _day(7)})
    assert materialize_module.run_interval({"start": None, "end": None}, events, ANCHOR) == (_day(6), _day(7))


def test_interval_reaches_back_to_late_events(materialize_module: ModuleType) -> None:
    events = _asset_events({"start": _day(7), "end": _day(8), "event_start": _day(5), "event_end": _day(8)})
    assert materialize_module.run_interval({}, events, ANCHOR) == (_day(5), _day(8))


def test_interval_merges_several_asset_events(materialize_module: ModuleType) -> None:
    events = _asset_events(
        {"start": _day(7), "end": _day(8)},
        {"start": _day(5), "end": _day(6), "event_start": _day(4), "event_end": _day(6)},
        {},  # an event without an interval (e.g. created by hand) is ignored
    )
    assert materialize_module.run_interval({}, events, ANCHOR) == (_day(4), _day(8))


def test_params_win_over_asset_events_and_default_to_one_day(materialize_module: ModuleType) -> None:
    events = _asset_events({"start": _day(6), "end": _day(7)})
    run_interval = materialize_module.run_interval
    assert run_interval({"start": "2025-02-01", "end": "2025-02-03"}, events, ANCHOR) == (
        "2025-02-01T00:00:00+00:00", "2025-02-03T00:00:00+00:00")
    assert run_interval({"start": "2025-02-01", "end": None}, None, ANCHOR) == (
        "2025-02-01T00:00:00+00:00", "2025-02-02T00:00:00+00:00")
    assert run_interval({"start": None, "end": "2025-02-01"}, None, ANCHOR) == (
        "2025-01-31T00:00:00+00:00", "2025-02-01T00:00:00+00:00")


def test_manual_run_without_params_takes_the_day_before_the_run(materialize_module: ModuleType) -> None:
    assert materialize_module.run_interval({}, _asset_events(), ANCHOR) == (
        "2025-03-09T00:00:00+00:00", "2025-03-10T00:00:00+00:00")


def test_bad_param_is_rejected_when_the_run_is_created(dagbag: Any) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dagbag.dags["materialize_features"].params)
    assert params.validate() == {"start": None, "end": None}  # the defaults are valid
    start = params.get_param("start")
    for good in ("2025-01-06", "2025-01-06T00:00:00+00:00"):
        assert start.resolve(value=good) == good
    with pytest.raises(ParamValidationError, match="yesterday"):
        start.resolve(value="yesterday")
