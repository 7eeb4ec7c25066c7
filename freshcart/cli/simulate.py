"""`freshcart simulate`: simulated shop traffic to Parquet, or live into Kafka."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from freshcart.cli.common import console, err, fail, instant, pseudonymiser_or_exit, settings_or_exit, utc_day


def simulate(
    seed: int = typer.Option(42, help="Random seed: the same seed gives the same data."),
    users: int = typer.Option(10_000, help="Number of shoppers."),
    products: int = typer.Option(5_000, help="Catalogue size."),
    categories: int = typer.Option(40, help="Number of leaf categories."),
    days: int = typer.Option(7, help="Days of traffic."),
    start: str = typer.Option("2025-01-06", help="First day (UTC), YYYY-MM-DD."),
    events_per_day: int = typer.Option(200_000, help="Expected events per day."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: <data_dir>/simulation)."),
    overwrite: bool = typer.Option(False, help="Delete the output folder first."),
    to_kafka: bool = typer.Option(False, "--to-kafka", help="Produce to the events topic instead of Parquet."),
    rate: Optional[float] = typer.Option(None, help="With --to-kafka: target events/s (default: as fast as possible)."),
    limit: Optional[int] = typer.Option(None, help="With --to-kafka: stop after this many events."),
    fault_share: float = typer.Option(0.0, help="With --to-kafka: share of malformed messages (e.g. 0.01)."),
    drift_from: Optional[str] = typer.Option(None, help="UTC time from which drift applies."),
    price_inflation: float = typer.Option(0.0, help="Drift: relative price change, e.g. 0.2."),
    category_shift: float = typer.Option(0.0, help="Drift: share of sessions with a shifted category mix."),
    new_products: int = typer.Option(0, help="Drift: products that appear at --drift-from."),
    bot_share: float = typer.Option(0.0, help="Drift: share of sessions that are bots."),
    landing: bool = typer.Option(False, "--landing", help="Also land the events in <data_dir>/landing by arrival date."),
    late_share: float = typer.Option(0.005, help="With --landing: share of events that arrive 1-2 days late."),
) -> None:
    """Simulate shop traffic with known ground truth (Parquet by date, or live into Kafka).

    For every view the true purchase probability within the horizon is written to
    <out>/_truth, so the oracle AUC is known. Drift knobs apply from --drift-from on.
    """
    from freshcart.simulator import DriftConfig, SimulationConfig, SimulationConfigError

    settings = settings_or_exit()
    if not to_kafka and (rate is not None or limit is not None or fault_share):
        fail("--rate, --limit and --fault-share apply to --to-kafka only", 2)
    if landing and to_kafka:
        fail("--landing applies to Parquet output, not --to-kafka", 2)
    if not 0.0 <= late_share <= 1.0:
        fail(f"--late-share {late_share!r} is out of range; give a fraction between 0 and 1", 2)
    try:
        drift = DriftConfig(
            drift_from=instant(drift_from, "--drift-from") if drift_from else None,
            price_inflation=price_inflation, category_shift=category_shift,
            new_products=new_products, bot_share=bot_share,
        )
        config = SimulationConfig(
            seed=seed, users=users, products=products, categories=categories, days=days,
            start=utc_day(start, "--start"), events_per_day=events_per_day,
            horizon_hours=settings.horizon_hours, drift=drift,
        )
    except SimulationConfigError as exc:
        fail(str(exc), 2)
    if to_kafka:
        _simulate_to_kafka(settings, config, rate, limit, fault_share)
    else:
        _simulate_to_parquet(config, out or settings.simulation_dir, overwrite)
        if landing:
            _land(out or settings.simulation_dir, settings.landing_dir, late_share, config.seed,
                  pseudonymiser_or_exit(settings))


def _progress(unit: str) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
        TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal,
    )


def _simulate_to_parquet(config, out_dir: Path, overwrite: bool) -> None:
    from freshcart.simulator import write_simulation
    from freshcart.storage import remove_tree

    if overwrite:
        remove_tree(out_dir)
    with _progress("days") as bar:
        task = bar.add_task("simulating", total=config.days)
        summary = write_simulation(config, out_dir, progress=lambda n: bar.advance(task, n))
    total = summary.total
    console.print(f"simulated {total:,} events over {config.days} days in {summary.seconds:.1f}s "
                  f"({total / max(summary.seconds, 1e-9):,.0f} events/s) -> {out_dir}")
    for kind, count in summary.counts.items():
        console.print(f"  {kind:<17} {count:>12,}  {count / max(total, 1):7.2%}")


def _land(sim_dir: Path, landing_dir: Path, late_share: float, seed: int, pseudonymiser) -> None:
    from freshcart.ingestion.landing import land_simulation

    summary = land_simulation(sim_dir, landing_dir, late_share=late_share, seed=seed, pseudonymiser=pseudonymiser)
    first, last = summary.arrival_dates[0], summary.arrival_dates[-1]
    console.print(f"landed {summary.events:,} events ({summary.late:,} late) in {len(summary.files)} files, "
                  f"arrival dates {first} .. {last} -> {landing_dir}")
    console.print(f"  next: freshcart ingest --start {first} --end {last + timedelta(days=1)}", highlight=False)


def _simulate_to_kafka(settings, config, rate: float | None, limit: int | None, fault_share: float) -> None:
    from freshcart.kafka_io import make_producer, produce
    from freshcart.simulator import inject_faults, iter_records

    records = iter_records(config)
    if limit is not None:
        records = itertools.islice(records, limit)
    messages = ((key, value) for key, value, _ in inject_faults(records, fault_share, seed=config.seed))
    pseudonymiser = pseudonymiser_or_exit(settings)
    try:
        producer = make_producer(settings)
    except Exception as exc:  # kafka-python raises NoBrokersAvailable and friends
        fail(f"cannot reach Kafka at {settings.bootstrap_servers} ({exc}); run `freshcart services up`")
    with _progress("events") as bar:
        task = bar.add_task(f"producing to {settings.events_topic}", total=limit)
        summary = produce(producer, settings.events_topic, messages, rate=rate,
                          progress=lambda n: bar.advance(task, n), pseudonymiser=pseudonymiser)
    producer.close()
    console.print(f"produced {summary.messages:,} messages to {settings.events_topic} in "
                  f"{summary.seconds:.1f}s ({summary.rate:,.0f}/s)")
