"""What every command shares: the consoles, the settings, the error exit and the parsers of dates and times.

Imports nothing of the command modules, so every one of them can import it.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from freshcart.settings import ConfigError, Settings, load_settings

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


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
