"""The `freshcart` command line: one way in to every part of FreshCart."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from freshcart.settings import ConfigError, Settings, load_settings

app = typer.Typer(
    help="FreshCart: e-commerce purchase propensity and recommendation, from offline batch to real time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
services_app = typer.Typer(help="Start, stop and inspect the local servers (Kafka; Redis and PostgreSQL in production).",
                           no_args_is_help=True)
config_app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)
app.add_typer(services_app, name="services")
app.add_typer(config_app, name="config")

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings (environment FRESHCART_* applied), secrets masked."""
    settings = _settings()
    console.print(f"# FreshCart settings, profile {settings.profile}", highlight=False)
    shown = settings.masked()
    width = max(len(name) for name in shown)
    for name, value in shown.items():
        source = f"FRESHCART_{name.upper()}" if name in Settings.model_fields else "derived"
        console.print(f"{name:<{width}} = {value}    # {source}", highlight=False, soft_wrap=True)


@services_app.command("up")
def services_up() -> None:
    """Start the profile's servers: Kafka (KRaft, single node); with FRESHCART_PROFILE=production also Redis and PostgreSQL."""
    from freshcart import services

    settings = _settings()
    try:
        for line in services.up(settings):
            console.print(line, highlight=False)
    except services.ServiceError as exc:
        _fail(str(exc))


@services_app.command("down")
def services_down() -> None:
    """Stop every server that `services up` started."""
    from freshcart import services

    settings = _settings()
    lines = services.down(settings)
    for line in lines or ["nothing was running"]:
        console.print(line, highlight=False)


@services_app.command("status")
def services_status() -> None:
    """Show which servers run, with pids, addresses and log files."""
    from freshcart import services

    settings = _settings()
    table = Table("service", "state", "pid", "address", "log", title=f"FreshCart services ({settings.profile} profile)")
    table.columns[-1].overflow = "fold"
    for row in services.status(settings):
        state = "[green]running[/green]" if row.running else "[dim]stopped[/dim]"
        table.add_row(row.name, state, str(row.pid or "-"), row.address, str(row.log))
    console.print(table)


@app.command("ingest-file")
def ingest_file_command(
    path: Path = typer.Argument(..., help="The file to load (a folder for native Parquet)."),
    fmt: str = typer.Option(..., "--format", "-f", help="rees46 | taobao | native"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: <data_dir>/offline/events)."),
) -> None:
    """Load a REES46 or Taobao CSV (or FreshCart Parquet / JSON Lines) into canonical events.

    Output is Parquet partitioned by event date (event_date=YYYY-MM-DD); re-loading a file
    changes nothing; rejected rows go to <out>/_rejects with their reason and line.
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from freshcart.ingest import ingest_file
    from freshcart.loaders import FORMATS, LoadError
    from freshcart.schema import TimeBounds

    settings = _settings()
    if fmt not in FORMATS:
        _fail(f"--format {fmt!r} is not supported; use one of {', '.join(FORMATS)}", 2)
    out_dir = out or settings.offline_events_dir
    bounds = TimeBounds.around(datetime.now(timezone.utc), settings.event_time_floor, settings.max_future_seconds)
    size = path.stat().st_size if path.is_file() else None
    columns = [*Progress.get_default_columns()[:1], BarColumn(), DownloadColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(f"reading {path.name}", total=size)
        try:
            report = ingest_file(path, fmt, out_dir, bounds, settings.session_gap_minutes * 60,
                                 progress=lambda n: bar.advance(task, n))
        except (LoadError, OSError) as exc:
            _fail(str(exc))
    console.print(f"read {report.rows_read:,} rows from {path} ({fmt}) in {report.seconds:.1f}s")
    console.print(f"  valid     {report.valid:,}")
    console.print(f"  rejected  {report.rejected:,}" + (f"  -> {report.rejects_path}" if report.rejects_path else ""))
    for reason, count in report.reasons.most_common():
        console.print(f"    {reason:<20} {count:,}")
    console.print(f"  repeated rows in the file (same event_id, kept once)  {report.repeated_in_file:,}")
    console.print(f"  already in the output (unchanged)                      {report.already_present:,}")
    console.print(f"  new events written  {report.written:,} into {len(report.partitions)} partition(s) under {out_dir}")
    funnel = report.funnel()
    if funnel:
        console.print("  funnel  " + "  ".join(f"{k} {v:.2%}" for k, v in funnel.items() if v))


@app.command("demo")
def demo_command() -> None:
    """The main job end to end: simulate, replay through Kafka, ingest, build features, apply, materialise, train set (`make demo`)."""
    from freshcart.demo import run_demo

    run_demo(_settings(), console)


from freshcart.cli_ingest import ingest  # noqa: E402  (registered after the shared helpers exist)
from freshcart.cli_simulate import simulate  # noqa: E402  (registered after the shared helpers exist)
from freshcart.cli_features import features_app  # noqa: E402  (registered after the shared helpers exist)

app.command("simulate")(simulate)
app.command("ingest")(ingest)
app.add_typer(features_app, name="features")
from freshcart.cli_stream import stream_app  # noqa: E402  (registered after the shared helpers exist)

app.add_typer(stream_app, name="stream")


def main() -> None:
    """Entry point of the `freshcart` script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


from freshcart.cli_train import evaluate, promote, rollback, train  # noqa: E402  (registered after the shared helpers exist)

app.command("train")(train)
app.command("evaluate")(evaluate)
app.command("promote")(promote)
app.command("rollback")(rollback)
