"""The demo's closed-loop step: drift injected -> verdict -> retraining triggered -> a new champion served.

A small shop is simulated in ``<data>/monitoring-demo`` with bot traffic from the onset.
The champion (XGBoost, trained through MLflow with its reference sample) is loaded by the
scoring service's own model reload, :class:`freshcart.monitoring.scenario.ServedModel`: the
service's ``ModelHolder`` on the shop's registry and a watcher thread calling
``holder.check()`` every ``serving_reload_seconds`` (2 s here), as the service's
``freshcart-model-watch`` thread does. Each hourly window is scored by ``holder.current``,
taken once per window, and logged with its version as the service logs /predict; the
windows are labelled and judged; the first retrain verdict retrains XGBoost on the latest
labelled views (the drift included) and promotes it when it beats the champion on the same
holdout. Promotion only moves the ``champion`` alias: the watcher's next check loads the new
version and swaps it in, nothing is restarted, and the windows after it are scored and
logged by the new champion and judged against its own reference, showing the recovery.

Why not a running ``bentoml serve``: a service reads its features from the online store,
which holds only each key's latest values, so it cannot score a past window's views with
the features they had; the windows keep the point-in-time training rows the scenario builds
and go through the service's model holder and its reload, which decide the version served.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from freshcart.monitoring import report as window_report
from freshcart.monitoring import verdict
from freshcart.monitoring.labels import label_window
from freshcart.monitoring.scenario import Scenario, ServedModel, build_scenario, register_champion, serve_views
from freshcart.monitoring.tables import read_predictions, read_purchases
from freshcart.settings import Settings, load_settings

HOUR = timedelta(hours=1)
RELOAD_SECONDS = 2.0
"""How often the demo's serving holder checks the alias (the service's FRESHCART_SERVING_RELOAD_SECONDS)."""
RECOVERY_WINDOWS = 2
"""Windows scored after the promotion, starting a day after the retraining's last view."""


def _label(settings: Settings, start: Any, end: Any) -> None:
    rows = read_predictions(settings, start, end)
    if rows is not None:
        frame = rows.select(["request_id", "position", "requested_at", "endpoint", "user_id", "product_id",
                             "score", "model_version"]).to_pandas()
        label_window(settings, frame, read_purchases(settings, start, end + timedelta(hours=settings.horizon_hours)),
                     start, end, as_of=end + timedelta(hours=settings.horizon_hours))


def _serve(scenario: Scenario, served: ServedModel, start: Any) -> str:
    """Score the window starting at ``start`` with the model the holder serves now; its version."""
    model = served.current  # taken once, as a request takes it
    serve_views(scenario.settings, scenario.views, model, start, start + HOUR)
    return model.info.version


def run_monitoring_demo(settings: Settings, console: Any, kind: str = "bot_traffic",
                        windows: int = 3) -> dict[str, Any]:
    """Run the loop on a fresh simulated shop beside ``settings.data_dir``; print each step to ``console``
    (anything with ``print``); the champions before and after, the verdict, the versions that scored each
    window and the recovery windows."""
    began = time.perf_counter()
    shop = load_settings(data_dir=settings.data_dir / "monitoring-demo", profile="local",
                         training_threads=settings.training_threads, retrain_cooldown_hours=6,
                         training_validation_share=0.25, training_holdout_share=0.25,  # a full day of reference
                         serving_reload_seconds=RELOAD_SECONDS)
    scenario = build_scenario(shop, kind, days=13)
    before = register_champion(scenario)
    console.print(f"champion v{before} trained before the drift; {kind} starts at {scenario.onset:%Y-%m-%d %H:%M}")
    with ServedModel(shop) as served:
        console.print(f"serving: the scoring service's model holder loaded v{served.current.info.version} "
                      f"(@{shop.serving_model_alias}); its watcher checks the alias every {RELOAD_SECONDS:g} s")
        result = _loop(scenario, served, console, before, windows)
    result["seconds"] = round(time.perf_counter() - began, 1)
    return result


def _loop(scenario: Scenario, served: ServedModel, console: Any, before: str, windows: int) -> dict[str, Any]:
    from freshcart.monitoring.reference import load_reference
    from freshcart.training.promote import promote
    from freshcart.training.train import train_model

    shop = scenario.settings
    decision, scored_by = None, {}
    for i in range(-1, windows):
        start = scenario.onset + i * HOUR
        scored_by[f"{start:%Y-%m-%dT%H%M}"] = version = _serve(scenario, served, start)
        _label(shop, start, start + HOUR)
        judged = window_report.monitor_window(shop, load_reference(shop, version_number=version), start,
                                              start + HOUR, html=i == 0)
        console.print(f"  scored by v{version}: {window_report.describe(judged)}")
        decision = verdict.decide(shop, start, start + HOUR)
        console.print(f"  verdict: {decision.action} - {decision.reason}")
        if decision.trigger:
            break
    result: dict[str, Any] = {"champion_before": before, "verdict": decision.row() if decision else None,
                              "scored_by": scored_by}
    if decision is None or not decision.trigger:
        console.print("no retraining triggered")
        return result
    first = scenario.views["event_time"][0].as_py().date() + timedelta(days=1)
    last = (scenario.onset + timedelta(hours=12)).date() + timedelta(days=1)
    trained = train_model(shop, "xgboost", first, last)
    promoting = time.monotonic()
    promoted = promote(shop)
    took = time.monotonic() - promoting
    console.print(f"retrained on {first}..{last}: v{trained.version}, promotion {promoted.action} "
                  f"({promoted.reason})")
    result.update(challenger=trained.version, promotion=promoted.action, champion_after=promoted.champion_after)
    if promoted.action != "promoted":
        console.print(f"serving: the holder keeps v{served.current.info.version}")
        return result
    served.wait_for(trained.version, timeout=3 * RELOAD_SECONDS + 120)
    result["reload_seconds"] = round(served.loads[-1][0] - promoting, 1)
    console.print(f"serving: the holder's watcher swapped v{trained.version} in for v{before} "
                  f"{result['reload_seconds']:.1f} s after promote began (promote took {took:.1f} s), "
                  "without a restart")
    recovery = []
    for i in range(RECOVERY_WINDOWS):
        start = scenario.onset + (48 + i) * HOUR  # a day after the retraining's last view
        scored_by[f"{start:%Y-%m-%dT%H%M}"] = version = _serve(scenario, served, start)
        judged = window_report.monitor_window(shop, load_reference(shop, version_number=version), start,
                                              start + HOUR, html=False)
        console.print(f"  scored by v{version}: {window_report.describe(judged)}")
        recovery.append(judged.alarm)
    result["recovery_alarm"] = any(recovery)
    return result
