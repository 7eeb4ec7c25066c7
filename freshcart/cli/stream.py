"""`freshcart stream ...`: run the stream processor, show its lag and freshness, inspect dead letters."""

from __future__ import annotations

import logging
import sys
import time
from typing import Optional

import typer
from rich.table import Table

from freshcart.cli.common import console, err, fail, settings_or_exit

SWITCH_INTERVAL_S = 0.001  # Python's default 5 ms would add up across thread hand-overs in each micro-batch

stream_app = typer.Typer(help="The stream processor: Kafka events -> features in the Feast online and offline stores.",
                         no_args_is_help=True)


@stream_app.command("consume")
def consume(
    batch_size: Optional[int] = typer.Option(None, min=1, help="Events per micro-batch (default: stream_batch_size)."),
    max_wait_ms: Optional[int] = typer.Option(None, min=1, help="Longest wait before a micro-batch is written "
                                              "(default: stream_max_wait_ms)."),
    writer: Optional[str] = typer.Option(None, help="Online writer: auto | push | fast (default: stream_writer)."),
    group: Optional[str] = typer.Option(None, help="Consumer group (default: stream_group)."),
    metrics_port: Optional[int] = typer.Option(None, help="Prometheus port (default: stream_metrics_port; 0: none)."),
    stop_when_idle: Optional[float] = typer.Option(None, help="Exit after this many seconds without a message "
                                                   "(default: run until SIGTERM or Ctrl-C)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also log the Kafka client's INFO lines "
                                 "(connections, metadata, group membership)."),
) -> None:
    """Consume freshcart.events in a consumer group and keep the online features fresh.

    Start several to share the partitions. SIGTERM or Ctrl-C flushes, checkpoints, commits and
    exits; after a crash a restart resumes from the last checkpoint without losing or
    double-counting an event. Rejected messages go to the dead-letter topic (`freshcart stream dlq`).
    """
    from freshcart.stream.consumer import StreamError, StreamProcessor, install_signal_handlers

    overrides = {k: v for k, v in {"stream_batch_size": batch_size, "stream_max_wait_ms": max_wait_ms,
                                   "stream_group": group}.items() if v is not None}
    settings = settings_or_exit().model_copy(update=overrides)
    if writer is not None and writer not in ("auto", "push", "fast"):
        fail(f"--writer {writer!r} is not one of auto, push, fast", 2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # kafka-python logs every connection and metadata refresh at INFO
        logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        processor = StreamProcessor(settings, writer=writer, max_idle_s=stop_when_idle, metrics_port=metrics_port)
    except ValueError as exc:
        fail(str(exc), 2)
    install_signal_handlers(processor)
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # the loop, the writer and the network threads hand over sooner
    try:
        summary = processor.run()
    except StreamError as exc:
        fail(str(exc))
    console.print(f"consumed {summary.consumed:,} messages in {summary.seconds:.1f}s: {summary.accepted:,} accepted, "
                  f"{summary.duplicates:,} duplicates, {summary.dead_letters:,} dead letters; "
                  f"{summary.rows_written:,} feature rows written online", highlight=False)


@stream_app.command("status")
def status() -> None:
    """Lag per partition (end offset - committed offset) and the latest freshness percentiles of each consumer."""
    from freshcart.stream.status import group_lag
    from freshcart.stream.metrics import read_statuses

    settings = settings_or_exit()
    try:
        lags = group_lag(settings)
    except Exception as exc:  # noqa: BLE001 - any broker failure is reported, not a traceback
        fail(f"cannot read offsets from {settings.bootstrap_servers}: {exc}")
    table = Table("topic", "partition", "end offset", "committed", "lag", title=f"group {settings.stream_group}")
    for row in lags:
        table.add_row(row.topic, str(row.partition), f"{row.end:,}",
                      "-" if row.committed is None else f"{row.committed:,}", f"{row.lag:,}")
    console.print(table)
    statuses = [s for s in read_statuses(settings.data_dir) if s.get("group") == settings.stream_group]
    if not statuses:
        console.print("no consumer has reported yet (start one with `freshcart stream consume`)")
        return
    fresh = Table("consumer pid", "state", "updated", "avg events/s", "stage", "n", "p50 ms", "p90 ms", "p99 ms", "max ms",
                  title="freshness: event produced -> features written online (recent events)")
    for s in statuses:
        state = "running" if s.get("running") else "stopped"
        age = f"{time.time() - s.get('updated', 0):.0f}s ago"
        stages = s.get("freshness_ms") or {"-": {}}
        for stage, p in stages.items():
            fresh.add_row(str(s.get("pid", "?")), state, age, f"{s.get('accepted_per_s', 0):,.0f}", stage,
                          f"{p.get('n', 0):,}", *(f"{p[k]:.0f}" if k in p else "-" for k in ("p50", "p90", "p99", "max")))
    console.print(fresh)


@stream_app.command("dlq")
def dlq(
    samples: int = typer.Option(0, "--samples", "-n", min=0, help="Print up to N messages per reason."),
    reason: Optional[str] = typer.Option(None, help="Only this reason (e.g. late, invalid_json)."),
) -> None:
    """Dead letters by reason (whole topic), optionally with samples: original bytes, source and detail."""
    from freshcart.stream.dlq import preview, read_dead_letters

    settings = settings_or_exit()
    try:
        summary = read_dead_letters(settings, samples=samples, reason=reason)
    except Exception as exc:  # noqa: BLE001
        fail(f"cannot read {settings.dlq_topic} from {settings.bootstrap_servers}: {exc}")
    table = Table("reason", "messages", title=f"{settings.dlq_topic}: {summary.total:,} dead letters")
    for name, count in summary.by_reason.most_common():
        table.add_row(name, f"{count:,}")
    console.print(table)
    for name, letters in summary.samples.items():
        for letter in letters:
            h = letter.headers
            console.print(f"[bold]{name}[/bold] {h.get('source_topic')}-{h.get('source_partition')}"
                          f"@{h.get('source_offset')} at {h.get('dead_lettered_at')}: {h.get('detail')}",
                          highlight=False)
            console.print(f"  {preview(letter.value)}", highlight=False, markup=False)
    if summary.total == 0:
        err.print("the dead-letter topic is empty")
