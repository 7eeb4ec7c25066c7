"""`freshcart monitor ...`: the served predictions, their labels, drift and performance verdicts, the Evidently UI."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from freshcart.cli.common import console, err, fail, instant, settings_or_exit

monitor_app = typer.Typer(help="Monitoring: land the prediction log, label it, judge drift and performance, "
                               "decide on retraining, open the Evidently UI.", no_args_is_help=True)
WINDOW_HELP = "Window {}: an ISO time, UTC (e.g. 2025-01-12T06:00)."


def _run(step: Any, *args: Any) -> dict[str, Any]:
    try:
        return step(*args)
    except (ValueError, OSError, LookupError) as exc:
        fail(str(exc))


def _show(result: dict[str, Any]) -> None:
    console.print_json(json.dumps(result, default=str))


@monitor_app.command("ui")
def ui(port: int = typer.Option(8000, min=1, max=65535, help="Port on 127.0.0.1.")) -> None:
    """Evidently UI over FreshCart's monitoring workspace on 127.0.0.1, telemetry off (Ctrl-C stops it)."""
    from freshcart.monitoring.workspace import start_ui, workspace_dir

    settings = settings_or_exit()
    err.print(f"Evidently UI on http://127.0.0.1:{port} (workspace {workspace_dir(settings)})", highlight=False)
    start_ui(settings, port)


@monitor_app.command("land")
def land(timeout: float = typer.Option(120.0, min=1.0, help="Longest wait for the topic, in seconds.")) -> None:
    """Land the prediction log from Kafka in the offline store, by date (re-running changes nothing)."""
    from freshcart.monitoring.tasks import land_predictions

    settings_or_exit()
    _show(_run(land_predictions, timeout))


@monitor_app.command("label")
def label(start: str = typer.Option(..., help=WINDOW_HELP.format("start")),
          end: str = typer.Option(..., help=WINDOW_HELP.format("end (exclusive)"))) -> None:
    """Label the window whose horizon closed by --end with what shoppers bought (open windows stay unlabelled)."""
    from freshcart.monitoring.tasks import label_window

    settings_or_exit()
    _show(_run(label_window, instant(start, "--start").isoformat(), instant(end, "--end").isoformat()))


@monitor_app.command("window")
def window(start: str = typer.Option(..., help=WINDOW_HELP.format("start")),
           end: str = typer.Option(..., help=WINDOW_HELP.format("end (exclusive)"))) -> None:
    """Judge a window's predictions against the champion's reference: drift, estimate, measured figures, report."""
    from freshcart.monitoring.tasks import report_window

    settings_or_exit()
    result = _run(report_window, instant(start, "--start").isoformat(), instant(end, "--end").isoformat())
    console.print(result.pop("line", ""), highlight=False, markup=False)


@monitor_app.command("verdict")
def verdict(start: str = typer.Option(..., help=WINDOW_HELP.format("start")),
            end: str = typer.Option(..., help=WINDOW_HELP.format("end (exclusive)"))) -> None:
    """Retrain or not, and why, for the window [start, end) (the decision is recorded either way)."""
    from freshcart.monitoring.tasks import decide

    settings_or_exit()
    _show(_run(decide, instant(start, "--start").isoformat(), instant(end, "--end").isoformat()))


SHOWN = {
    "windows": ("window_start", "status", "rows", "model_version", "drifted_share", "score_drift", "alarm", "reasons"),
    "decisions": ("window_start", "action", "trigger", "reason"),
}
"""The columns `freshcart monitor status` shows of each table (all of them are in the Parquet tables)."""


@monitor_app.command("status")
def status(last: int = typer.Option(12, min=1, help="How many of the newest windows and decisions to show.")) -> None:
    """The newest judged windows (drifted share, alarms) and retraining decisions with their reasons."""
    from freshcart.monitoring.tables import read_table, table_path

    settings = settings_or_exit()
    for name, wanted in SHOWN.items():
        frame = read_table(settings, name)
        if frame.empty:
            console.print(f"no {name} recorded yet (the monitor_model DAG or `freshcart monitor window` writes them)")
            continue
        frame = frame[[c for c in wanted if c in frame.columns]].tail(last)
        table = Table(*frame.columns, title=f"monitoring {name} (newest {len(frame)}; all columns in "
                      f"{table_path(settings, name)})")
        table.columns[-1].overflow = "fold"
        for row in frame.itertuples(index=False):
            table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
        console.print(table)
