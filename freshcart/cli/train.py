"""`freshcart train | evaluate | promote | rollback`: models, their evaluation and the MLflow registry."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from freshcart.cli.common import console, err, fail, optional_day, settings_or_exit


def train(
    model: str = typer.Option(..., "--model", "-m",
                              help="xgboost (boosted trees) or din (attention over recent items)."),
    start: Optional[str] = typer.Option(None, help="First date of the views to learn from, YYYY-MM-DD."),
    end: Optional[str] = typer.Option(None, help="End date of the views, exclusive, YYYY-MM-DD."),
    training_set: Optional[Path] = typer.Option(
        None, help="A training-set Parquet file: read it instead of building (with --start/--end: where to keep it)."),
    rebuild: bool = typer.Option(False, help="Build the training set again even if the file exists."),
) -> None:
    """Train a propensity model, evaluate it on the time-based holdout, register it as the challenger.

    Builds (or reuses, under <data_dir>/training/) the point-in-time training set of
    the views in [start, end), splits it by time into train, validation and holdout
    (FRESHCART_TRAINING_VALIDATION_SHARE, FRESHCART_TRAINING_HOLDOUT_SHARE), trains with
    early stopping, logs parameters, metrics, lineage, plots and the model to MLflow,
    and registers it as a new version of FRESHCART_REGISTERED_MODEL with the alias
    challenger. `freshcart promote` then decides whether it becomes champion.
    """
    from freshcart.features.tables import FeatureBuildError
    from freshcart.training.data import TrainingDataError
    from freshcart.training.report import metrics_table
    from freshcart.training.train import train_model

    if model not in ("xgboost", "din"):
        fail(f"--model {model!r}: use xgboost or din", 2)
    first, last = optional_day(start, "--start"), optional_day(end, "--end")
    if (first is None) != (last is None) or (first is None and training_set is None):
        fail("give both --start and --end (the views to train on), or --training-set FILE", 2)
    settings = settings_or_exit()
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(f"training {model}", total=None)

        def report(done: float, total: float, what: str) -> None:
            bar.update(task, completed=done, total=total, description=f"training {model}: {what}")

        try:
            result = train_model(settings, model, first, last, training_set, rebuild, progress=report,
                                 on_epoch=lambda epoch: bar.console.print(epoch.line(), highlight=False))
        except (FeatureBuildError, TrainingDataError, ValueError) as exc:
            fail(str(exc))
    title = f"{model} on the holdout (from {result.split.holdout_start:%Y-%m-%d %H:%M})"
    console.print(metrics_table({model: result.report}, title))
    console.print(f"rows: train {result.rows['train']:,}, validation {result.rows['validation']:,}, holdout "
                  f"{result.rows['holdout']:,}; trained in {result.train_seconds:.1f}s on {result.details['device']}",
                  highlight=False)
    console.print(f"MLflow run {result.run_id}; registered {settings.registered_model} v{result.version} "
                  f"(alias challenger); training set {result.training_set}", highlight=False)


def evaluate(
    model: str = typer.Option("@challenger", "--model", "-m",
                              help="A registered version number, or @alias (@challenger, @champion)."),
    compare: bool = typer.Option(True, help="Also evaluate the champion on the same holdout."),
) -> None:
    """Evaluate a registered model on its holdout: AUC, PR AUC, log loss, calibration error, HR@10, NDCG@10,
    against the popularity baseline and (on simulated data) the oracle AUC."""
    from freshcart.training.data import TrainingDataError
    from freshcart.training.promote import evaluate_version
    from freshcart.training.registry import RegistryError
    from freshcart.training.report import metrics_table

    settings = settings_or_exit()
    try:
        with console.status(f"scoring {settings.registered_model} {model} on its holdout ..."):
            report, version = evaluate_version(settings, model)
            reports = {f"{model} (v{version.version})": report}
            if compare and model != "@champion":
                from freshcart.training.promote import holdout_of
                from freshcart.training.registry import CHAMPION, connect, version_by_alias

                client = connect(settings)
                champion = version_by_alias(client, settings.registered_model, CHAMPION)
                if champion is not None and str(champion.version) != str(version.version):
                    other, _ = evaluate_version(settings, str(champion.version), holdout_of(client, version))
                    reports[f"@champion (v{champion.version})"] = other
    except (RegistryError, TrainingDataError) as exc:
        fail(str(exc))
    console.print(metrics_table(reports, f"{settings.registered_model} on the holdout of {model}"))


def promote(
    metric: Optional[str] = typer.Option(None, help="Metric to decide on (default FRESHCART_PROMOTION_METRIC: auc)."),
    margin: Optional[float] = typer.Option(None, help="Required improvement (default FRESHCART_PROMOTION_MARGIN)."),
) -> None:
    """Make the challenger champion only if it beats the champion on the same holdout by the margin.

    Otherwise the challenger stays challenger; either way the decision and its reason
    are logged and recorded as tags (promotion.*) on the challenger's model version.
    """
    from freshcart.training.promote import promote as decide
    from freshcart.training.registry import RegistryError

    settings = settings_or_exit()
    try:
        with console.status("scoring challenger and champion on the same holdout ..."):
            decision = decide(settings, metric, margin)
    except (RegistryError, ValueError) as exc:
        fail(str(exc))
    colour = {"promoted": "green", "kept": "yellow"}.get(decision.action, "white")
    console.print(f"[{colour}]{decision.action}[/{colour}]: {escape(decision.reason)}")
    console.print(f"champion: v{decision.champion_before or '-'} -> v{decision.champion_after or '-'}", highlight=False)


def rollback() -> None:
    """Give the champion alias back to the version the current champion replaced (recorded at promotion)."""
    from freshcart.training.promote import rollback as restore
    from freshcart.training.registry import RegistryError

    settings = settings_or_exit()
    try:
        decision = restore(settings)
    except RegistryError as exc:
        fail(str(exc))
    console.print(f"rolled back: {escape(decision.reason)}")
