"""The root ``freshcart`` command and the script's entry point; the command groups are added in ``__init__``."""

from __future__ import annotations

import sys

import typer

from freshcart.cli.common import quiet_libraries

app = typer.Typer(
    help="FreshCart: e-commerce purchase propensity and recommendation, from offline batch to real time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(verbose: bool = typer.Option(
        False, "--verbose", help="Also show the libraries' INFO lines and warnings (MLflow, Feast, SQLAlchemy).")
         ) -> None:
    """FreshCart: e-commerce purchase propensity and recommendation, from offline batch to real time."""
    if not verbose:
        quiet_libraries()


def main() -> None:
    """Entry point of the `freshcart` script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
