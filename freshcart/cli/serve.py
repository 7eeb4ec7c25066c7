"""`freshcart serve` and `freshcart predictions ingest`: the scoring service and its prediction log."""

from __future__ import annotations

import subprocess
from typing import Optional

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from freshcart.cli.common import console, err, fail, settings_or_exit

predictions_app = typer.Typer(help="The scoring service's prediction log (Kafka -> offline store).",
                              no_args_is_help=True)


def serve(
    port: Optional[int] = typer.Option(None, min=1, max=65535, help="Port (default: FRESHCART_SERVING_PORT, 3000)."),
    host: Optional[str] = typer.Option(None, help="Address to bind (default: FRESHCART_SERVING_HOST, 127.0.0.1)."),
    gpu: bool = typer.Option(False, "--gpu", help="The CUDA variant (resources gpu: 1): the attention model on the "
                             "GPU when torch sees one."),
) -> None:
    """Run the scoring service (bentoml serve) on loopback with this profile's settings.

    Routes: POST /predict, /recommend, /explain; /livez, /readyz, /metrics; OpenAPI at /docs.
    Needs a champion (`freshcart promote`) and materialised features; Ctrl-C stops it.
    """
    from freshcart.serving.launch import BENTOS_DIR, bentoml_serve_command, serving_env

    from freshcart.services.credentials import exposure_warning, provision

    settings = provision(settings_or_exit(), ("serving_api_key",))
    warning = exposure_warning("the scoring service", host or settings.serving_host,
                               settings.serving_api_key is not None)
    if warning:
        err.print(warning, highlight=False)
    if settings.serving_api_key is not None:
        err.print(f"API key: send 'Authorization: Bearer <key>', the key is in {settings.secrets_path / 'serving_api_key'}"
                  " (or FRESHCART_SERVING_API_KEY)", highlight=False)
    command = bentoml_serve_command(settings, host, port, "gpu" if gpu else "cpu")
    err.print(f"scoring service ({settings.profile} profile) on http://{host or settings.serving_host}:"
              f"{port or settings.serving_port} (docs at /docs)", highlight=False)
    try:
        code = subprocess.call(command, cwd=BENTOS_DIR, env=serving_env(settings, host, port))
    except KeyboardInterrupt:
        code = 130
    if code not in (0, 130, -2):
        fail(f"bentoml serve exited with {code}; its message is above", code)


@predictions_app.command("ingest")
def ingest(timeout: float = typer.Option(60.0, min=1.0, help="Longest wait for the topic, in seconds.")) -> None:
    """Land the service's prediction records from Kafka (freshcart.predictions) in the offline store.

    Rows go to <data_dir>/offline/predictions/prediction_date=YYYY-MM-DD/, merged by request id and
    position, up to the topic's end when the command starts; re-running changes nothing.
    """
    from freshcart.serving.ingest import ingest_predictions

    settings = settings_or_exit()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(f"reading {settings.predictions_topic}", total=None)
        try:
            report = ingest_predictions(settings, timeout_s=timeout, progress=lambda records, rows: bar.update(
                task, description=f"reading {settings.predictions_topic}: {records:,} records, {rows:,} rows"))
        except (ValueError, OSError) as exc:
            fail(str(exc))
    console.print(f"{report.records:,} prediction records ({report.rows:,} rows, {report.undecodable:,} undecodable) "
                  f"in {report.seconds:.1f}s", highlight=False)
    for day, rows in sorted(report.dates.items()):
        console.print(f"  {day}  {rows:,} rows", highlight=False)
