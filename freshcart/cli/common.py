"""What every command shares: the consoles, the settings, the error exit and the parsers of dates and times.

Imports nothing of the command modules, so every one of them can import it.
"""

from __future__ import annotations

import logging
import os
import sysconfig
import warnings
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable, NoReturn, Optional, TextIO

import typer
from rich.console import Console
from rich.markup import escape

from freshcart.privacy.pseudonym import Pseudonymiser, PseudonymKeyError, pseudonymiser_for
from freshcart.settings import ConfigError, Settings, load_settings

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


LIBRARY_LOGGERS = ("mlflow", "alembic", "sqlalchemy", "feast", "urllib3", "git", "numexpr")
"""Libraries whose INFO lines (database migrations, connections, "Creating initial MLflow database
tables") would interleave with FreshCart's own output."""
LIBRARY_DIRS = tuple(sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}))
"""Where installed libraries live: a UserWarning raised from there is a library's, not FreshCart's."""


def _library_noise(category: type[Warning], filename: str) -> bool:
    if issubclass(category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
        return True
    return issubclass(category, UserWarning) and str(filename).startswith(LIBRARY_DIRS)


def _own_warnings_only(show: Callable[..., None]) -> Callable[..., None]:
    """``warnings.showwarning`` that passes FreshCart's warnings to ``show`` and drops the libraries'."""

    def filtered(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
        if not _library_noise(category, filename):
            show(message, category, filename, lineno, file, line)

    filtered.freshcart_quiet = True  # type: ignore[attr-defined]
    return filtered


def quiet_libraries() -> None:
    """Keep the libraries' INFO lines, deprecation notes, warnings and MLflow's download bars off the output.

    Called by the root command unless ``freshcart --verbose``, so it is scoped to the CLI's
    process. Warnings are dropped where they are shown, not by filters: libraries (Feast among
    them) install filters of their own when they are imported, later than this runs.
    """
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow sets its logger's level on import
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if not getattr(warnings.showwarning, "freshcart_quiet", False):
        warnings.showwarning = _own_warnings_only(warnings.showwarning)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (2: bad usage, 1: the work failed)."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    """The effective settings; a bad FRESHCART_* value is an error naming the variable (exit 2)."""
    try:
        return load_settings()
    except ConfigError as exc:
        fail(str(exc), 2)


def pseudonymiser_or_exit(settings: Settings) -> Pseudonymiser | None:
    """The pseudonymiser when FRESHCART_PSEUDONYMISE is on (None when off); an unusable key exits 2."""
    try:
        return pseudonymiser_for(settings)
    except (PseudonymKeyError, OSError) as exc:
        fail(str(exc), 2)


def day(text: str, option: str) -> date:
    """A YYYY-MM-DD date given to ``option``; anything else exits 2 naming the option and the value."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r} is not a date; use YYYY-MM-DD", 2)


def optional_day(text: Optional[str], option: str) -> Optional[date]:
    """:func:`day`, or None when the option was not given."""
    return None if text is None else day(text, option)


def interval(start: str, end: Optional[str]) -> tuple[date, date]:
    """``[--start, --end)`` as dates; the end defaults to the day after the start."""
    first = day(start, "--start")
    return first, day(end, "--end") if end else first + timedelta(days=1)


def utc_day(text: str, option: str) -> datetime:
    """Midnight UTC of a YYYY-MM-DD date."""
    return datetime.combine(day(text, option), time(), tzinfo=timezone.utc)


def instant(text: str, option: str) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC unless it names a zone)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option} {text!r} is not a date or time; use e.g. 2025-01-09 or 2025-01-09T06:00", 2)
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
