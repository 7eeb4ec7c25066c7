"""`freshcart config ...`: the effective settings."""

from __future__ import annotations

import typer

from freshcart.cli.common import console, settings_or_exit
from freshcart.settings import Settings

config_app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings (environment FRESHCART_* applied), secrets masked."""
    settings = settings_or_exit()
    console.print(f"# FreshCart settings, profile {settings.profile}", highlight=False)
    shown = settings.masked()
    width = max(len(name) for name in shown)
    for name, value in shown.items():
        source = f"FRESHCART_{name.upper()}" if name in Settings.model_fields else "derived"
        console.print(f"{name:<{width}} = {value}    # {source}", highlight=False, soft_wrap=True)
