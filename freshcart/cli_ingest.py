"""`freshcart ingest`: the landing zone of an interval of arrival dates -> the offline event store."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        err.print(f"[red]error:[/red] {option} {text!r} is not a date; use YYYY-MM-DD", highlight=False)
        raise typer.Exit(2) from None


def ingest(
    start: str = typer.Option(..., help="First arrival date (UTC), YYYY-MM-DD."),
    end: Optional[str] = typer.Option(None, help="Arrival date after the last one (exclusive), YYYY-MM-DD; default: the day after --start."),
) -> None:
    """Validate the records that arrived on dates [--start, --end) into the offline event store.

    Reads <data_dir>/landing/arrival_date=YYYY-MM-DD/*.jsonl and *.parquet.

    Writes Parquet by event date to <data_dir>/offline/events; late events land in their event date.

    Re-running an interval changes nothing. Rejected records go, with their reason, to <data_dir>/offline/_rejects.
    """
    from freshcart.cli import _fail, _settings
    from freshcart.offline_ingest import IngestIntervalError, ingest_interval

    first = _day(start, "--start")
    last = _day(end, "--end") if end is not None else first + timedelta(days=1)
    if last <= first:
        _fail(f"--end {last.isoformat()} must be after --start {first.isoformat()} (end is exclusive)", 2)
    settings = _settings()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
               TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("ingesting", total=None)
        try:
            report = ingest_interval(settings, first, last,
                                     progress=lambda done, total: bar.update(task, completed=done, total=total))
        except IngestIntervalError as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"{exc}; check that {settings.data_dir} is writable")
    console.print(f"ingested {report.interval}: {len(report.files)} file(s), {report.rows_read:,} records "
                  f"in {report.seconds:.1f}s ({report.records_per_second:,.0f} records/s)", highlight=False)
    counts = Table("count", "records", title="records")
    counts.add_row("read", f"{report.rows_read:,}")
    counts.add_row("valid", f"{report.valid:,}")
    counts.add_row("rejected", f"{report.rejected:,}")
    for reason, count in sorted(report.reasons.items()):
        counts.add_row(f"  {reason}", f"{count:,}")
    counts.add_row("duplicates (event_id already seen)", f"{report.duplicates:,}")
    counts.add_row("late (event date before arrival date)", f"{report.late:,}")
    counts.add_row("new events written", f"{report.new_events:,}")
    console.print(counts)
    dates = Table("event date", "new", "rows in partition", title="offline store partitions")
    for day in report.partitions:
        dates.add_row(day.isoformat(), f"{report.written[day]:,}", f"{report.partition_rows[day]:,}")
    console.print(dates)
    console.print(f"events:  {report.events_dir}", highlight=False)
    console.print(f"rejects: {report.rejects_dir} ({len(report.rejects_files)} arrival date file(s))", highlight=False)
    for path in report.skipped_files:
        err.print(f"[yellow]skipped[/yellow] {path} (not *.jsonl or *.parquet)", highlight=False)
