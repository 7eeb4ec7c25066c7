"""The FreshCart page's data and HTML, and the Evidently dashboard's panels against a real window snapshot.

The registry is a real MLflow store on SQLite with two versions registered in code
(holdout figures as their runs log them, a promotion decision as ``promote`` tags it);
the monitoring tables are written with the package's own upsert.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from freshcart.monitoring import tables
from freshcart.monitoring.page import gather_page, report_file
from freshcart.monitoring.page_html import render_page
from freshcart.monitoring.report import evidently_report, window_key
from freshcart.monitoring.workspace import TOP_INPUTS, dashboard
from freshcart.settings import Settings, load_settings

START = datetime(2025, 1, 15, 12, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


@pytest.fixture
def shop(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, profile="local", mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                         retrain_cooldown_hours=6, monitor_ui_url="http://127.0.0.1:18000/")


def _register(settings: Settings) -> None:
    import mlflow

    from freshcart.training.registry import connect

    client = connect(settings)
    client.create_registered_model(settings.registered_model)
    for auc in (0.71, 0.74):
        with mlflow.start_run() as run:
            mlflow.log_metrics({"holdout_auc": auc, "holdout_log_loss": 0.1, "holdout_pr_auc": 0.2})
        version = client.create_model_version(settings.registered_model, f"{run.info.artifact_uri}/model",
                                              run.info.run_id, tags={"model_type": "xgboost"})
    client.set_registered_model_alias(settings.registered_model, "champion", "1")
    client.set_registered_model_alias(settings.registered_model, "challenger", version.version)
    for key, value in {"action": "kept", "reason": "challenger auc 0.74 does not beat champion 0.73 by the margin",
                       "metric": "auc", "challenger_value": "0.74", "champion_value": "0.73",
                       "decided_at": "2025-01-15T10:00:00+00:00"}.items():
        client.set_model_version_tag(settings.registered_model, version.version, f"promotion.{key}", value)


def _monitoring(settings: Settings) -> None:
    starts = [START, START + HOUR]
    tables.upsert(settings, tables.WINDOWS, pd.DataFrame({
        "window_start": starts, "window_end": [s + HOUR for s in starts], "status": "judged", "rows": [900, 950],
        "drifted_share": [0.25, 0.3], "estimated_auc": [0.69, 0.68], "measured_auc": [np.nan, np.nan],
        "model_version": "1", "report": [str(tables.monitoring_dir(settings) / "reports" / f"window={window_key(START)}"
                                              / "report.html"), ""]}))
    report = tables.monitoring_dir(settings) / "reports" / f"window={window_key(START)}"
    report.mkdir(parents=True)
    (report / "report.html").write_text("<html>window report</html>")
    (report / "snapshot.id").write_text("snap-1")
    tables.upsert(settings, tables.DECISIONS, pd.DataFrame({
        "window_start": starts, "window_end": [s + HOUR for s in starts], "action": ["retrain", "cooldown"],
        "reason": ["drift in 2 of the last 2 windows with the estimated AUC 0.69", "drift; not triggered: cooldown"],
        "trigger": [True, False], "run_id": ["monitor_retrain__2025-01-15T1200", ""],
        "drifted_columns": ["price,product_unseen", "price"]}))
    workspace = settings.data_dir / "monitoring" / "workspace" / "proj-1"
    workspace.mkdir(parents=True)
    (workspace / "metadata.json").write_text(json.dumps({"id": "proj-1", "name": "freshcart-propensity"}))


def test_page_shows_models_promotions_verdicts_reports_and_cooldown(shop: Settings) -> None:
    _register(shop)
    _monitoring(shop)
    data = gather_page(shop, now=START + 3 * HOUR)
    assert data.registry_error == ""
    assert (data.champion.version, data.challenger.version) == ("1", "2")
    assert data.champion.figures["auc"] == pytest.approx(0.71) and data.challenger.figures["auc"] == pytest.approx(0.74)
    assert [p["action"] for p in data.promotions] == ["kept"] and "margin" in data.promotions[0]["reason"]
    assert [v["action"] for v in data.verdicts] == ["cooldown", "retrain"]  # newest first
    assert data.verdicts[1]["report"] and data.verdicts[1]["snapshot_id"] == "snap-1"
    assert not data.verdicts[0]["report"]
    assert data.cooldown == {"hours": 6.0, "last_trigger": (START + HOUR).isoformat(),
                             "run_id": "monitor_retrain__2025-01-15T1200", "until": (START + 7 * HOUR).isoformat(),
                             "active": True}
    assert gather_page(shop, now=START + 8 * HOUR).cooldown["active"] is False
    json.dumps(data.as_json(), allow_nan=False)  # NaN figures become null

    page = render_page(data)
    assert "Champion: v1" in page and "Challenger: v2" in page and "0.7400" in page
    assert "does not beat champion" in page and "monitor_retrain__2025-01-15T1200" in page
    assert f'href="reports/{window_key(START)}"' in page
    assert 'href="http://127.0.0.1:18000/projects/proj-1/reports/snap-1"' in page
    assert 'id="evidently-dashboard" href="http://127.0.0.1:18000/projects/proj-1"' in page
    assert "Cooldown active" in page and (START + 7 * HOUR).isoformat() in page
    assert report_file(shop, window_key(START)).read_text() == "<html>window report</html>"


def test_page_without_registry_or_windows_says_so(shop: Settings) -> None:
    broken = shop.data_dir / "broken.db"
    broken.write_text("not a database")
    data = gather_page(shop.model_copy(update={"mlflow_tracking_uri": f"sqlite:///{broken}"}), now=START)
    assert data.champion is None and data.verdicts == [] and data.project_id is None
    assert data.registry_error.startswith(f"model registry sqlite:///{broken}: ")
    assert data.cooldown["last_trigger"] is None
    page = render_page(data)
    assert "no monitoring verdict yet" in page and "No retraining triggered yet" in page


def test_report_file_rejects_other_names(shop: Settings) -> None:
    with pytest.raises(ValueError, match="'../../etc/passwd' is not a window key"):
        report_file(shop, "../../etc/passwd")
    with pytest.raises(FileNotFoundError, match="no report for window 2025-01-15T1300"):
        report_file(shop, "2025-01-15T1300")


def test_every_dashboard_panel_finds_its_values_in_a_window_snapshot() -> None:
    rng = np.random.default_rng(5)
    columns = [*TOP_INPUTS]
    reference = {c: rng.normal(size=400) for c in ["score", *columns]}
    reference["score"] = rng.uniform(0.01, 0.3, 400)
    current = {c: rng.normal(0.5, size=300) for c in ["score", *columns]}
    current["score"] = rng.uniform(0.01, 0.4, 300)
    figures = {"rows": 300.0, "alarm": 1.0, "drifted_count": 3.0, "drifted_share": 0.075, "estimated_auc": 0.7,
               "measured_auc": 0.66, "champion_auc": 0.72, "measured_calibration_error": 0.02, "score_drift": 0.1}
    snapshot = evidently_report(reference, current, columns, (rng.random(400) < 0.1).astype(int),
                                (rng.random(300) < 0.1).astype(int), {"window_start": START}, figures)
    points = [(m["config"], m["value"]) for m in snapshot.dict()["metrics"]]
    board = dashboard()
    assert len({p.title for p in board.panels}) == len(board.panels) == 11
    for panel in board.panels:
        for value in panel.values:
            found = [v for params, v in points if params["type"] == value.metric
                     and params.items() >= value.metric_labels.items()]
            assert found, f"panel {panel.title!r}: no {value.metric} {value.metric_labels} in the snapshot"
    drifted = [v for params, v in points if params.get("figure") == "drifted_share"]
    assert drifted == [pytest.approx(0.075)]
