"""The demo's closed-loop step: drift injected -> verdict -> retraining triggered -> a new champion served.

A small shop is simulated in ``<data>/monitoring-demo`` with bot traffic from the onset.
The champion (XGBoost, trained through MLflow with its reference sample) scores every
view as the service would log it; hourly windows are judged; the first retrain verdict
retrains XGBoost on the latest labelled views (the drift included) and promotes it when
it beats the champion on the same holdout; a later window is judged against the new
champion's reference to show the recovery.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from freshcart.monitoring import report as window_report
from freshcart.monitoring import verdict
from freshcart.monitoring.labels import label_window
from freshcart.monitoring.scenario import ChampionModel, build_scenario, register_champion, serve_views
from freshcart.monitoring.tables import read_predictions, read_purchases
from freshcart.settings import Settings, load_settings

HOUR = timedelta(hours=1)


def _label(settings: Settings, start: Any, end: Any) -> None:
    rows = read_predictions(settings, start, end)
    if rows is not None:
        frame = rows.select(["request_id", "position", "requested_at", "endpoint", "user_id", "product_id",
                             "score", "model_version"]).to_pandas()
        label_window(settings, frame, read_purchases(settings, start, end + timedelta(hours=settings.horizon_hours)),
                     start, end, as_of=end + timedelta(hours=settings.horizon_hours))


def run_monitoring_demo(settings: Settings, console: Any, kind: str = "bot_traffic",
                        windows: int = 3) -> dict[str, Any]:
    """Run the loop on a fresh simulated shop beside ``settings.data_dir``; print each step to ``console``
    (anything with ``print``); the champions before and after, the verdict and the recovery window."""
    from freshcart.training.promote import promote
    from freshcart.training.train import train_model

    began = time.perf_counter()
    shop = load_settings(data_dir=settings.data_dir / "monitoring-demo", profile="local",
                         training_threads=settings.training_threads, retrain_cooldown_hours=6,
                         training_validation_share=0.25, training_holdout_share=0.25)  # a full day of reference
    scenario = build_scenario(shop, kind, days=13)
    before = register_champion(scenario)
    console.print(f"champion v{before} trained before the drift; {kind} starts at {scenario.onset:%Y-%m-%d %H:%M}")
    decision = None
    for i in range(-1, windows):
        start = scenario.onset + i * HOUR
        serve_views(shop, scenario.views, scenario.model, start, start + HOUR, version=before)
        _label(shop, start, start + HOUR)
        judged = window_report.monitor_window(shop, scenario.reference, start, start + HOUR, html=i == 0)
        console.print(f"  {window_report.describe(judged)}")
        decision = verdict.decide(shop, start, start + HOUR)
        console.print(f"  verdict: {decision.action} - {decision.reason}")
        if decision.trigger:
            break
    result: dict[str, Any] = {"champion_before": before, "verdict": decision.row() if decision else None}
    if decision is None or not decision.trigger:
        console.print("no retraining triggered")
        return result
    first = scenario.views["event_time"][0].as_py().date() + timedelta(days=1)
    last = (scenario.onset + timedelta(hours=12)).date() + timedelta(days=1)
    trained = train_model(shop, "xgboost", first, last)
    promoted = promote(shop)
    console.print(f"retrained on {first}..{last}: v{trained.version}, promotion {promoted.action} "
                  f"({promoted.reason})")
    result.update(challenger=trained.version, promotion=promoted.action, champion_after=promoted.champion_after)
    if promoted.action == "promoted":
        from freshcart.monitoring.reference import load_reference

        model, reference = ChampionModel(shop), load_reference(shop)
        start = scenario.onset + 48 * HOUR  # a day after the retraining's last view
        serve_views(shop, scenario.views, model, start, start + HOUR, version=trained.version)
        recovered = window_report.monitor_window(shop, reference, start, start + HOUR, html=False)
        console.print(f"  new champion v{trained.version}: {window_report.describe(recovered)}")
        result["recovery_alarm"] = recovered.alarm
    result["seconds"] = round(time.perf_counter() - began, 1)
    return result
