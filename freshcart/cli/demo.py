"""`freshcart demo` (`make demo`): the main job end to end, on one machine.

Simulates a week of shop traffic, replays a slice of it through the Kafka
broker and consumes it back, lands and ingests the week into the offline
store, builds the feature tables, applies the Feast repository, materialises
the online store, builds the candidates (co-occurrence neighbours, session index,
quotas) and reads a few rows back, builds a training set, trains and
registers a champion model, runs the stream processor on live traffic (one
shopper's online features change as their session goes on), starts the scoring
service (that shopper's recommendations move with their next clicks), and closes
the loop: drift injected, the monitoring verdict, the retraining it triggers and the
new champion served. Each step says how long it took.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from datetime import date, datetime, time as clock, timedelta, timezone

from rich.console import Console
from rich.table import Table

from freshcart.cli.common import console as stdout, settings_or_exit
from freshcart.settings import Settings

DEMO_SEED = 42
REPLAY_EVENTS = 20_000
LATE_SHARE = 0.005


@dataclass
class ReplayResult:
    produced: int
    consumed: int
    identical: bool
    produce_seconds: float
    consume_seconds: float
    partitions: int


def replay_through_kafka(settings: Settings, records: list[dict]) -> ReplayResult:
    """Produce ``records`` to the events topic, read exactly that range back, compare."""
    from freshcart.kafka_io import end_offsets, make_producer, produce, read_range

    payloads = {r["event_id"]: json.dumps(r, separators=(",", ":")).encode() for r in records}
    before = end_offsets(settings, settings.events_topic)
    producer = make_producer(settings)
    sent = produce(
        producer, settings.events_topic,
        ((str(r["user_id"]).encode(), payloads[r["event_id"]]) for r in records),
    )
    producer.close()
    after = end_offsets(settings, settings.events_topic)
    started = time.perf_counter()
    back = {}
    for message in read_range(settings, settings.events_topic, before, after):
        back[json.loads(message.value)["event_id"]] = message.value
    return ReplayResult(
        produced=sent.messages, consumed=len(back), identical=back == payloads,
        produce_seconds=sent.seconds, consume_seconds=time.perf_counter() - started,
        partitions=sum(1 for p in after if after[p] > before.get(p, 0)),
    )


def _offline_store(settings: Settings, console: Console, sim_dir: Path) -> tuple[date, date]:
    """Land the simulation by arrival date and ingest every arrival date into the offline store."""
    from freshcart.ingestion.interval_ingest import ingest_interval
    from freshcart.ingestion.landing import land_simulation
    from freshcart.privacy.pseudonym import pseudonymiser_for

    landed = land_simulation(sim_dir, settings.landing_dir, late_share=LATE_SHARE, seed=DEMO_SEED,
                             pseudonymiser=pseudonymiser_for(settings))
    first, last = min(landed.arrival_dates), max(landed.arrival_dates)
    console.print(f"landed {landed.events:,} events in {settings.landing_dir} "
                  f"({landed.late:,} arriving 1-2 days late)")
    report = ingest_interval(settings, first, last + timedelta(days=1))
    console.print(f"ingested arrival dates [{report.start}, {report.end}): {report.rows_read:,} read, "
                  f"{report.valid:,} valid, {report.rejected:,} rejected, {report.late:,} late, "
                  f"{report.new_events:,} new -> {settings.offline_events_dir}")
    return report.partitions[0], report.partitions[-1] + timedelta(days=1)


def _features(settings: Settings, console: Console, start: date, end: date) -> None:
    """Feature tables, feast apply, materialisation, and a few online rows."""
    from freshcart.features import spec
    from freshcart.features.materialize import materialize
    from freshcart.features.store import apply, feature_store
    from freshcart.features.tables import build_feature_tables, read_feature_table
    from freshcart.recommendation.neighbour_tables import build_neighbour_tables, choose_quotas

    built = build_feature_tables(settings, start, end)
    console.print(f"feature tables [{start}, {end}): " + ", ".join(
        f"{name} {rows:,}" for name, rows in built.rows.items()) + f" rows in {built.seconds:.1f}s")
    applied = apply(settings)
    if applied.returncode != 0:
        raise SystemExit(f"feast apply failed:\n{applied.stdout}{applied.stderr}")
    console.print(f"feast apply ({settings.profile} profile): "
                  f"{len(spec.VIEWS)} feature views, 1 on-demand view, 2 feature services")
    done = materialize(settings, _midnight(start), _midnight(end))
    rows = sum(view.entity_rows for view in done.views)
    console.print(f"materialised [{start}, {end}) into the {done.online_store} online store with the "
                  f"{done.writer}: {rows:,} entity rows (" + ", ".join(
                      f"{view.view} {view.entity_rows:,}" for view in done.views) + f") in {done.seconds:.1f}s")

    neighbours = build_neighbour_tables(settings, _midnight(end))
    quotas = choose_quotas(settings, _midnight(end), log_run=False)
    console.print(f"candidates: {neighbours.co_viewed_pairs:,} co-viewed and {neighbours.co_bought_pairs:,} "
                  f"co-bought pairs, {neighbours.online_rows:,} products' neighbours online, a session index of "
                  f"{neighbours.sessions:,} sessions; quotas of 100 chosen by replaying the last day's "
                  f"{quotas.get('queries', 0):,} purchases and carts: " + ", ".join(
                      f"{name} {quota}" for name, quota in quotas.get("quotas", {}).items()))

    users = read_feature_table(settings, "user_activity", end - timedelta(days=1), end)
    sample = users.slice(users.num_rows - 3, 3).to_pylist()
    online = feature_store(settings).get_online_features(
        features=[f"user_activity:{f}" for f in ("views_1h", "views_24h", "purchases_7d",
                                                 "avg_purchase_price_30d", "top_categories_30d")]
        + ["user_session:session_events", "user_session:recent_product_ids"],
        entity_rows=[{"user_id": row["user_id"]} for row in sample],
    ).to_dict()
    table = Table("user", "views 1h", "views 24h", "buys 7d", "avg price", "top cats", "session", "recent",
                  title=f"online features of 3 shoppers, read via Feast ({settings.profile} profile)")
    for i in range(len(sample)):
        avg = online["avg_purchase_price_30d"][i]
        table.add_row(str(online["user_id"][i]), str(online["views_1h"][i]), str(online["views_24h"][i]),
                      str(online["purchases_7d"][i]), "-" if avg is None else f"{avg:.2f}",
                      str(len(online["top_categories_30d"][i] or [])),
                      str(online["session_events"][i]), f"{len(online['recent_product_ids'][i] or [])} ids")
    console.print(table)


class Steps:
    """The demo's step headers; each step ends with how long it took, and the demo with the total."""

    def __init__(self, console: Console) -> None:
        self.console, self.began, self.current = console, time.perf_counter(), None

    def start(self, title: str | None) -> None:
        now = time.perf_counter()
        if self.current is not None:
            self.console.print(f"[dim]({self.current[0]} took {now - self.current[1]:.1f}s)[/dim]", highlight=False)
        self.current = (title.split(".")[0], now) if title else None
        if title:
            self.console.rule(title)
        else:
            self.console.print(f"[dim](the demo took {now - self.began:.0f}s)[/dim]", highlight=False)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, clock(), tzinfo=timezone.utc)


def run_demo(settings: Settings, console: Console) -> None:
    """Every step of the demo in order, printing to ``console``."""
    import pyarrow.compute as pc

    steps = Steps(console)
    from freshcart.features.training_set import build_training_set
    from freshcart.simulator import SimulationConfig, iter_records, oracle_auc_from_dir, write_simulation
    from freshcart.storage import read_events

    config = SimulationConfig(seed=DEMO_SEED, horizon_hours=settings.horizon_hours)
    out_dir = settings.simulation_dir
    steps.start("1. simulate a week of traffic")
    summary = write_simulation(config, out_dir)
    events = read_events(out_dir, columns=["event_id", "event_time", "event_type", "user_id",
                                            "product_id", "user_session"])
    console.print(f"{summary.total:,} events, {config.days} days from {config.start:%Y-%m-%d}, "
                  f"in {summary.seconds:.1f}s -> {out_dir}")
    table = Table("event type", "events", "share")
    for kind, count in summary.counts.items():
        table.add_row(kind, f"{count:,}", f"{count / summary.total:.2%}")
    console.print(table)
    users = len(pc.unique(events["user_id"]))
    sessions = len(pc.unique(events["user_session"]))
    products = len(pc.unique(events["product_id"]))
    console.print(f"{users:,} shoppers, {sessions:,} sessions, {products:,} products seen")
    console.print(f"oracle AUC (best achievable propensity ranking): {oracle_auc_from_dir(out_dir, config.horizon_hours):.4f}")

    steps.start("2. replay a slice through Kafka")
    records = list(itertools.islice(iter_records(config), REPLAY_EVENTS))
    result = replay_through_kafka(settings, records)
    console.print(
        f"produced {result.produced:,} events to {settings.events_topic} "
        f"({result.produced / result.produce_seconds:,.0f}/s) over {result.partitions} partitions; "
        f"consumed {result.consumed:,} back in {result.consume_seconds:.1f}s; "
        f"identical ids and contents: {'yes' if result.identical else 'NO'}"
    )

    steps.start("3. land and ingest into the offline store")
    start, end = _offline_store(settings, console, out_dir)

    steps.start("4. features: tables, feast apply, materialise, candidates, online rows")
    _features(settings, console, start, end)

    steps.start("5. a point-in-time training set")
    day = end - timedelta(days=3)
    path = settings.data_dir / "training" / f"propensity_{day}.parquet"
    _, report = build_training_set(settings, day, day + timedelta(days=1), path)
    console.print(f"{report.examples:,} labelled views of {day} ({report.positives / report.examples:.2%} "
                  f"bought within {settings.horizon_hours:g} h), {len(report.feature_columns)} features "
                  f"as of strictly before each view, in {report.seconds:.1f}s -> {path}")

    steps.start("6. train, evaluate, register a champion")
    from freshcart.training.demo import train_demo

    train_demo(settings, console, start + timedelta(days=1), end - timedelta(days=2))

    steps.start("7. real time: the stream processor while shoppers click")
    from freshcart.stream.demo import run_live

    run_live(settings, console, config)

    steps.start("8. serving: the champion recommends, the stream moves it")
    from freshcart.serving.demo import run_serving_demo

    run_serving_demo(settings, console)

    steps.start("9. the loop: drift, verdict, retraining, a new champion served")
    from freshcart.monitoring.demo import run_monitoring_demo

    run_monitoring_demo(settings, console)
    steps.start(None)

    console.rule("where things are")
    console.print(f"simulation  {out_dir}/event_date=YYYY-MM-DD/ (truth in _truth/)")
    console.print(f"landing     {settings.landing_dir}/arrival_date=YYYY-MM-DD/")
    console.print(f"offline     {settings.offline_events_dir}/ and {settings.feature_tables_dir}/<view>/")
    console.print(f"feast repo  {settings.feature_repo_dir} (registry and online store under {settings.data_dir}/feast)")
    console.print(f"broker      {settings.bootstrap_servers}, logs in {settings.logs_dir}")
    if not result.identical:
        raise SystemExit("the events read back from Kafka differ from those produced")


def demo_command() -> None:
    """The main job end to end: simulate, Kafka, ingest, features, train, stream, serve, monitor and retrain (`make demo`)."""
    run_demo(settings_or_exit(), stdout)
