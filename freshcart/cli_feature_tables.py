"""`freshcart features build` and `freshcart features training-set`: the batch side of the features."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from freshcart.cli_ingest import _day

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _interval(start: str, end: Optional[str]) -> tuple[date, date]:
    first = _day(start, "--start")
    last = _day(end, "--end") if end else first + timedelta(days=1)
    return first, last


def build(
    start: str = typer.Option(..., help="First event date, YYYY-MM-DD."),
    end: Optional[str] = typer.Option(None, help="End event date, exclusive (default: the day after --start)."),
) -> None:
    """Compute the feature rows of every view for event dates [start, end) into the offline store.

    Reads the offline events of the interval and the 31 days before it (the
    longest look-back), and replaces those dates' partitions of each feature
    table, so re-running an interval changes nothing.
    """
    from freshcart.cli import _settings
    from freshcart.features.tables import FeatureBuildError, build_feature_tables

    settings = _settings()
    first, last = _interval(start, end)
    with console.status(f"building feature tables for [{first}, {last}) ..."):
        try:
            report = build_feature_tables(settings, first, last)
        except FeatureBuildError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
    table = Table("feature view", "rows", title=f"feature tables [{first}, {last})")
    for name, rows in report.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(f"{report.events_in_interval:,} events in the interval ({report.events_read:,} read with the "
                  f"look-back) in {report.seconds:.1f}s -> {report.out_dir}", highlight=False)


def training_set(
    start: str = typer.Option(..., help="First date of the views, YYYY-MM-DD."),
    end: Optional[str] = typer.Option(None, help="End date, exclusive (default: the day after --start)."),
    out: Path = typer.Option(..., help="Parquet file to write."),
    method: str = typer.Option("fast", help="fast: FreshCart's as-of join; feast: Feast's get_historical_features."),
) -> None:
    """Labelled propensity examples: every view in [start, end), label = bought within the horizon.

    Features are joined as of strictly before each view (no leakage). Needs the
    feature tables of the interval (`freshcart features build`) and the offline
    events up to end + horizon for the labels.
    """
    from freshcart.cli import _settings
    from freshcart.features.tables import FeatureBuildError
    from freshcart.features.training_set import build_training_set

    if method not in ("fast", "feast"):
        err.print(f"[red]error:[/red] --method {method!r}: use fast or feast", highlight=False)
        raise typer.Exit(2)
    settings = _settings()
    first, last = _interval(start, end)
    with console.status(f"building the training set for [{first}, {last}) ..."):
        try:
            _, report = build_training_set(settings, first, last, out, method=method)
        except FeatureBuildError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
    console.print(f"{report.examples:,} examples, {report.positives:,} positive "
                  f"({report.positives / report.examples:.2%}), {len(report.feature_columns)} features, "
                  f"{report.method} join in {report.seconds:.1f}s -> {report.out}", highlight=False)
