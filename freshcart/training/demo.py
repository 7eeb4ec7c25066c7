"""The training step of `freshcart demo`: both models on the demo's data, evaluation, a champion."""

from __future__ import annotations

from datetime import date

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from freshcart.settings import Settings


def train_demo(settings: Settings, console: Console, start: date, end: date, din_max_epochs: int = 2) -> None:
    """Train XGBoost and the attention model on the views of ``[start, end)``, register both, promote the
    better one (the first promotion makes it champion) and print the metrics table.

    Needs the feature tables of ``[start, end)`` and the offline events up to ``end`` plus the horizon.
    ``din_max_epochs`` caps the attention model's epochs (about a minute each on 2 cores for the demo's week).
    """
    from freshcart.training.evaluate import HIGHER_IS_BETTER
    from freshcart.training.promote import promote
    from freshcart.training.registry import CHALLENGER, connect
    from freshcart.training.report import metrics_table
    from freshcart.training.train import TrainResult, train_model

    settings = settings.model_copy(update={"din_max_epochs": min(din_max_epochs, settings.din_max_epochs)})
    results: dict[str, TrainResult] = {}
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    for model_type in ("xgboost", "din"):
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(f"training {model_type}", total=None)

            def report(done: float, total: float, what: str, task: int = task, name: str = model_type) -> None:
                bar.update(task, completed=done, total=total, description=f"training {name}: {what}")

            results[model_type] = train_model(
                settings, model_type, start, end, set_challenger=False, progress=report,
                on_epoch=lambda epoch: bar.console.print(f"  {model_type} {epoch.line()}", highlight=False))
        result = results[model_type]
        console.print(f"{model_type}: trained in {result.train_seconds:.1f}s on {result.details['device']} "
                      f"({result.rows['train']:,} train / {result.rows['validation']:,} validation rows), "
                      f"registered {settings.registered_model} v{result.version}", highlight=False)
    metric = settings.promotion_metric
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    best = max(results.values(), key=lambda r: sign * r.report.model[metric])
    connect(settings).set_registered_model_alias(settings.registered_model, CHALLENGER, best.version)
    decision = promote(settings)
    first = next(iter(results.values()))
    console.print(metrics_table({name: r.report for name, r in results.items()},
                                f"holdout from {first.split.holdout_start:%Y-%m-%d %H:%M} "
                                f"({first.rows['holdout']:,} views)"))
    console.print(f"promotion on {metric}: {decision.action} v{best.version} ({best.model_type}): {decision.reason}; "
                  f"champion is v{decision.champion_after} -> models:/{settings.registered_model}@champion",
                  highlight=False)
    console.print(f"MLflow: {settings.tracking_uri.split('@')[-1]} (`make mlflow-ui` to browse)", highlight=False)
