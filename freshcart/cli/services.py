"""`freshcart services ...`: the local servers (Kafka; Redis and PostgreSQL in production)."""

from __future__ import annotations

import typer
from rich.table import Table

from freshcart.cli.common import console, fail, settings_or_exit

services_app = typer.Typer(help="Start, stop and inspect the local servers (Kafka; Redis and PostgreSQL in production).",
                           no_args_is_help=True)


@services_app.command("up")
def services_up() -> None:
    """Start the profile's servers: Kafka (KRaft, single node); with FRESHCART_PROFILE=production also Redis and PostgreSQL."""
    from freshcart import services

    settings = settings_or_exit()
    try:
        for line in services.up(settings):
            console.print(line, highlight=False)
    except services.ServiceError as exc:
        fail(str(exc))


@services_app.command("down")
def services_down() -> None:
    """Stop every server that `services up` started."""
    from freshcart import services

    settings = settings_or_exit()
    lines = services.down(settings)
    for line in lines or ["nothing was running"]:
        console.print(line, highlight=False)


@services_app.command("status")
def services_status() -> None:
    """Show which servers run, with pids, addresses and log files."""
    from freshcart import services

    settings = settings_or_exit()
    table = Table("service", "state", "pid", "address", "log", title=f"FreshCart services ({settings.profile} profile)")
    table.columns[-1].overflow = "fold"
    for row in services.status(settings):
        state = "[green]running[/green]" if row.running else "[dim]stopped[/dim]"
        table.add_row(row.name, state, str(row.pid or "-"), row.address, str(row.log))
    console.print(table)
