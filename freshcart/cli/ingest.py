"""`freshcart ingest-file` and `freshcart ingest`: files and landed records -> the offline event store."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from freshcart.cli.common import console, err, fail, interval, pseudonymiser_or_exit, settings_or_exit


def ingest_file(
    path: Path = typer.Argument(..., help="The file to load (a folder for native Parquet)."),
    fmt: str = typer.Option(..., "--format", "-f", help="rees46 | taobao | native"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: <data_dir>/offline/events)."),
) -> None:
    """Load a REES46 or Taobao CSV (or FreshCart Parquet / JSON Lines) into canonical events.

    Output is Parquet partitioned by event date (event_date=YYYY-MM-DD); re-loading a file
    changes nothing; rejected rows go to <out>/_rejects with their reason and line.
    """
    from freshcart.ingestion.file_ingest import ingest_file as load_file
    from freshcart.ingestion.formats import FORMATS, LoadError
    from freshcart.schema import TimeBounds

    settings = settings_or_exit()
    if fmt not in FORMATS:
        fail(f"--format {fmt!r} is not supported; use one of {', '.join(FORMATS)}", 2)
    out_dir = out or settings.offline_events_dir
    pseudonymiser = pseudonymiser_or_exit(settings)
    bounds = TimeBounds.around(datetime.now(timezone.utc), settings.event_time_floor, settings.max_future_seconds)
    size = path.stat().st_size if path.is_file() else None
    columns = [*Progress.get_default_columns()[:1], BarColumn(), DownloadColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(f"reading {path.name}", total=size)
        try:
            report = load_file(path, fmt, out_dir, bounds, settings.session_gap_minutes * 60,
                               progress=lambda n: bar.advance(task, n), pseudonymiser=pseudonymiser)
        except (LoadError, OSError) as exc:
            fail(str(exc))
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


def ingest(
    start: str = typer.Option(..., help="First arrival date (UTC), YYYY-MM-DD."),
    end: Optional[str] = typer.Option(None, help="Arrival date after the last one (exclusive), YYYY-MM-DD; default: the day after --start."),
) -> None:
    """Validate the records that arrived on dates [--start, --end) into the offline event store.

    Reads <data_dir>/landing/arrival_date=YYYY-MM-DD/*.jsonl and *.parquet.

    Writes Parquet by event date to <data_dir>/offline/events; late events land in their event date.

    Re-running an interval changes nothing. Rejected records go, with their reason, to <data_dir>/offline/_rejects.
    """
    from freshcart.ingestion.interval_ingest import IngestIntervalError, ingest_interval

    first, last = interval(start, end)
    if last <= first:
        fail(f"--end {last.isoformat()} must be after --start {first.isoformat()} (end is exclusive)", 2)
    settings = settings_or_exit()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
               TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("ingesting", total=None)
        try:
            report = ingest_interval(settings, first, last,
                                     progress=lambda done, total: bar.update(task, completed=done, total=total))
        except IngestIntervalError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"{exc}; check that {settings.data_dir} is writable")
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
