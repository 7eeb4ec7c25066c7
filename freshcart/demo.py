"""`freshcart demo`: the main job end to end, on one machine.

Simulates a week of shop traffic to Parquet, replays a slice of it through the
Kafka broker and consumes it back, then prints what happened.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass

import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from freshcart.settings import Settings

DEMO_SEED = 42
REPLAY_EVENTS = 20_000


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


def run_demo(settings: Settings, console: Console) -> None:
    from freshcart.simulator import SimulationConfig, iter_records, oracle_auc_from_dir, write_simulation
    from freshcart.storage import read_events

    config = SimulationConfig(seed=DEMO_SEED, horizon_hours=settings.horizon_hours)
    out_dir = settings.simulation_dir
    console.rule("1. simulate a week of traffic")
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

    console.rule("2. replay a slice through Kafka")
    records = list(itertools.islice(iter_records(config), REPLAY_EVENTS))
    result = replay_through_kafka(settings, records)
    console.print(
        f"produced {result.produced:,} events to {settings.events_topic} "
        f"({result.produced / result.produce_seconds:,.0f}/s) over {result.partitions} partitions; "
        f"consumed {result.consumed:,} back in {result.consume_seconds:.1f}s; "
        f"identical ids and contents: {'yes' if result.identical else 'NO'}"
    )

    console.rule("where things are")
    console.print(f"events      {out_dir}/event_date=YYYY-MM-DD/data.parquet")
    console.print(f"truth       {out_dir}/_truth/ (true purchase probability of every view)")
    console.print(f"broker      {settings.bootstrap_servers}, logs in {settings.logs_dir}")
    if not result.identical:
        raise SystemExit("the events read back from Kafka differ from those produced")
