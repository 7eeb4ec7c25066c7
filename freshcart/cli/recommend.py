"""`freshcart evaluate-recommendations`: the point-in-time replay of recommendations against the baselines;
`freshcart train-ranker`: the learning-to-rank ranker of the candidates, trained by replay and gated."""

from __future__ import annotations

from datetime import datetime, time, timezone
from typing import Optional

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from freshcart.cli.common import console, day, err, fail, interval, settings_or_exit

METRICS = {"hr@10": "HR@10", "ndcg@10": "NDCG@10", "mrr": "MRR", "recall@100": "R@100", "recall@500": "R@500",
           "coverage@10": "cover", "popularity_bias@10": "bias"}
"""The table's columns and their short headers (R@: candidate recall; cover: catalogue coverage and bias: popularity bias of the top k)."""


def evaluate_recommendations(
    start: str = typer.Option(..., help="First date of the events to replay (UTC), YYYY-MM-DD."),
    end: Optional[str] = typer.Option(None, help="End date, exclusive (default: the day after --start)."),
    k: int = typer.Option(10, min=1, max=100, help="Length of each recommendation list."),
    history_days: int = typer.Option(28, min=1, help="Days before --start the recommenders learn from."),
    log_to_mlflow: bool = typer.Option(True, help="Log the table to an MLflow run in FreshCart's tracking store."),
) -> None:
    """Replay the purchases and add-to-carts of [start, end) from the offline store and score the recommenders.

    At each event every recommender ranks the catalogue from what was known strictly before
    it: global popularity, trending in the shopper's categories, item co-occurrence
    (item-kNN), session-kNN, and on simulated data the oracle (the simulator's true purchase
    probabilities). Prints HR@10, NDCG@10, MRR, candidate recall@100/@500, catalogue coverage
    and popularity bias of the top k per recommender and event type.
    """
    from freshcart.recommendation.replay import evaluate_recommendations as replay
    from freshcart.recommendation.tracking import log_to_mlflow as log_run

    first, last = interval(start, end)
    settings = settings_or_exit()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("queries"),
               TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("replaying", total=None)

        def report(recommender: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"replaying {recommender}")

        try:
            table = replay(settings, first, last, k=k, progress=report, history_days=history_days)
        except (ValueError, OSError) as exc:
            fail(str(exc))
    shown = Table(title=f"replay of [{first}, {last}), top {k}", box=box.SIMPLE_HEAD, pad_edge=False,
                  padding=(0, 1, 0, 0))
    for header in ("recommender", "event", "n", *METRICS.values()):
        shown.add_column(header, no_wrap=True, min_width=max(len(header), 5))
    for row in table.to_pylist():
        shown.add_row(row["recommender"], row["event_type"], f"{row['queries']:,}",
                      *(f"{row[name]:.3f}" for name in METRICS))
    console.print(shown)
    if log_to_mlflow:
        console.print(f"logged to MLflow run {log_run(settings, table)}", highlight=False)


def train_ranker(
    validation_day: str = typer.Option(..., help="The day (UTC, YYYY-MM-DD) the ranker is early-stopped and "
                                                 "gated on; it trains on the days before it."),
    ranker_days: int = typer.Option(2, min=1, max=28, help="Days of candidate lists before it to train on."),
    max_queries: Optional[int] = typer.Option(None, min=1, help="Most queries replayed per day (evenly spread)."),
) -> None:
    """Train the learning-to-rank ranker of /recommend's candidates and gate it in the registry.

    Replays the purchases and add-to-carts of the days before --validation-day with the service's
    candidate sources, joins each candidate's features strictly before the query, trains XGBoost
    rank:ndcg on them (with the candidate source and rank, and the propensity champion's score),
    registers it in freshcart-ranker and promotes it only if its NDCG@10 on --validation-day beats the
    ranker champion and the propensity champion as ranker by the promotion margin.
    """
    from datetime import timedelta

    from freshcart.recommendation.ranker_job import train_and_gate
    from freshcart.training.registry import RegistryError

    first = day(validation_day, "--validation-day")
    settings = settings_or_exit()
    end = datetime.combine(first + timedelta(days=1), time(0), tzinfo=timezone.utc)
    try:
        summary = train_and_gate(settings, end, ranker_days, max_queries=max_queries)
    except (ValueError, OSError, RegistryError) as exc:
        fail(str(exc))
    console.print(f"freshcart-ranker v{summary['version']}: {summary['action']} ({summary['reason']}); "
                  f"/recommend ranks with the {summary['serving']} model", highlight=False)
