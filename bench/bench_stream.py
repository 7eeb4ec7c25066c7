"""Benchmark: the stream processor's throughput and freshness, against raw batched ``FeatureStore.push``.

Needs the broker (and, for --profile production, Redis and PostgreSQL) that
`freshcart services up` starts. Each run uses its own topics, consumer group and
data dir (Feast repository applied once per profile).

1. Throughput: N simulated events are produced first; the processor (in this process)
   consumes them from the start. Figures: accepted events/s and online feature rows/s,
   from the first message to the last online write. Then the same rows (the latest row
   per key the processor wrote) are pushed with ``FeatureStore.push`` in 5,000-row
   batches into a fresh store: raw push rows/s, and the ratio of the processor's rows/s to it.
2. Freshness: `freshcart stream consume` runs as its own process; once it has restored the
   state of its partitions, this process produces events at --rate events/s for --seconds; the consumer's status file gives
   the freshness percentiles (event produce time -> online write), per stage: user views,
   and the product view (one more hop through the re-partitioned topic).

Medians of --repeats runs are printed; all figures of a profile come from the same run.

    .venv/bin/python bench/bench_stream.py [--profile local|production|both] [--events 40000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pyarrow as pa
import redis

from freshcart.features import spec
from freshcart.features.store import apply, feature_store
from freshcart import kafka_io
from freshcart.kafka_io import ensure_topics, make_producer
from freshcart.settings import Settings, load_settings
from freshcart.simulator import SimulationConfig, iter_records
from freshcart.stream.consumer import CONSUMER_SETTINGS, StreamProcessor
from freshcart.stream.metrics import read_statuses
from freshcart.stream.sinks import PushWriter, rows_to_table

PUSH_BATCH = 5_000
REDIS_DB = 12


def records(n: int, seed: int) -> list[bytes]:
    config = SimulationConfig(seed=seed, users=20_000, products=5_000, categories=30, days=2, events_per_day=n)
    return [json.dumps(r, separators=(",", ":"), default=str).encode() for r in itertools.islice(iter_records(config), n)]


def fresh(base: Settings, template: Path) -> Settings:
    """Settings with new topics and group, and a copy of the applied data dir (local) or the same one."""
    tag = uuid.uuid4().hex[:8]
    data_dir = base.data_dir
    if base.profile == "local":
        data_dir = Path(tempfile.mkdtemp(prefix="bench-stream-"))
        shutil.rmtree(data_dir)
        shutil.copytree(template, data_dir)
    else:
        redis.Redis(port=base.redis_port, db=REDIS_DB, password=base.redis_password.get_secret_value()
                    if base.redis_password else None).flushdb()
    settings = base.model_copy(update={
        "data_dir": data_dir, "events_topic": f"bench.events.{tag}", "product_topic": f"bench.by-product.{tag}",
        "dlq_topic": f"bench.dlq.{tag}", "stream_group": f"bench-{tag}", "stream_metrics_port": 0})
    ensure_topics(settings)
    return settings


def produce(settings: Settings, values: list[bytes], rate: float | None = None) -> float:
    producer = make_producer(settings)
    keyed = ((str(json.loads(value)["user_id"]).encode(), value) for value in values)
    summary = kafka_io.produce(producer, settings.events_topic, keyed, rate=rate)
    producer.close()
    return summary.seconds


def throughput(settings: Settings, template: Path, values: list[bytes]) -> dict[str, float]:
    produce(settings, values)
    processor = StreamProcessor(settings, max_idle_s=3)
    written: dict[str, list[pa.Table]] = {}
    original = processor.writer.prepare

    def keep(view: str, table: pa.Table):  # the batches, for the push comparison (no copy while timed)
        written.setdefault(view, []).append(table)
        return original(view, table)

    processor.writer.prepare = keep  # type: ignore[method-assign]
    summary = processor.run()
    busy = summary.busy_seconds
    # raw push of the same rows (the latest row of each key written) into a fresh store
    target = fresh(settings, template)
    store = feature_store(target)
    pusher = PushWriter(store)
    tables = {}
    for view, batches in written.items():
        frame = pa.concat_tables(batches).to_pandas()
        keys = (spec.VIEWS.get(view) or spec.CANDIDATE_VIEWS[view]).keys  # model views and product_neighbours
        latest = frame.drop_duplicates(subset=list(keys), keep="last")
        tables[view] = pa.Table.from_pandas(latest, schema=batches[0].schema, preserve_index=False)
    total = sum(t.num_rows for t in tables.values())
    started = time.perf_counter()
    for view, table in tables.items():
        for lo in range(0, table.num_rows, PUSH_BATCH):
            pusher.write(view, table.slice(lo, PUSH_BATCH))
    push_s = time.perf_counter() - started
    return {"events_per_s": summary.accepted / busy, "rows_per_s": summary.rows_written / busy,
            "events": summary.accepted, "rows": summary.rows_written, "busy_s": busy,
            "push_rows_per_s": total / push_s, "push_rows": total}


def ready(log_text: str) -> bool:
    """The consumer has restored the state of every partition it was assigned (it then reads them)."""
    assigned = log_text.count(": restoring its state") + log_text.count(": state kept in memory")
    return assigned > 0 and log_text.count(" restored ") >= log_text.count(": restoring its state")


def freshness(settings: Settings, values: list[bytes], rate: float) -> dict[str, dict[str, float]]:
    log = open(settings.data_dir / f"consumer-{settings.stream_group}.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "freshcart", "stream", "consume"],
                               env=settings.child_env(CONSUMER_SETTINGS),
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not ready(Path(log.name).read_text()):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the consumer did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.2)
        produce(settings, values, rate)
        time.sleep(3)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()
    statuses = [s for s in read_statuses(settings.data_dir) if s.get("group") == settings.stream_group]
    return statuses[0]["freshness_ms"]


def profile_settings(profile: str, root: Path) -> tuple[Settings, Path]:
    base = load_settings()
    if profile == "local":
        template = root / "local"
        settings = load_settings(profile="local", data_dir=template, secrets_dir=base.secrets_path)
    else:
        database = f"freshcart_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(base.postgres_dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        template = root / "production"
        settings = load_settings(profile="production", data_dir=template, secrets_dir=base.secrets_path,
                                 postgres_url=base.postgres_dsn(database),
                                 redis_url=f"redis://127.0.0.1:{base.redis_port}/{REDIS_DB}")
    result = apply(settings)
    if result.returncode:
        raise SystemExit(f"feast apply failed for {profile}")
    return settings, template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["local", "production", "both"], default="both")
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=2_000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    profiles = ["local", "production"] if args.profile == "both" else [args.profile]
    for profile in profiles:
        base, template = profile_settings(profile, root)
        runs, fresh_runs = [], []
        for repeat in range(args.repeats):
            settings = fresh(base, template)
            run = throughput(settings, template, records(args.events, seed=100 + repeat))
            runs.append(run)
            print(f"{profile} run {repeat + 1}: {run['events']:,} events, {run['rows']:,} rows online in "
                  f"{run['busy_s']:.1f}s: {run['events_per_s']:,.0f} events/s, {run['rows_per_s']:,.0f} rows/s; "
                  f"raw push of the same {run['push_rows']:,} rows: {run['push_rows_per_s']:,.0f} rows/s", flush=True)
        for repeat in range(args.repeats):
            settings = fresh(base, template)
            values = records(int(args.rate * args.seconds), seed=200 + repeat)
            stages = freshness(settings, values, args.rate)
            fresh_runs.append(stages)
            print(f"{profile} freshness run {repeat + 1} at {args.rate:,.0f} events/s: " + "; ".join(
                f"{stage} p50 {p['p50']:.0f} ms p99 {p['p99']:.0f} ms (n={p['n']:,})" for stage, p in stages.items()),
                flush=True)
        med = {k: statistics.median(r[k] for r in runs) for k in ("events_per_s", "rows_per_s", "push_rows_per_s")}
        print(f"== {profile}: processor {med['events_per_s']:,.0f} events/s ({med['rows_per_s']:,.0f} rows/s) vs raw "
              f"FeatureStore.push {med['push_rows_per_s']:,.0f} rows/s: {med['rows_per_s'] / med['push_rows_per_s']:.0%} "
              f"of raw push (targets: >= 10,000 events/s, >= 50%)")
        for stage in ("user", "product"):
            p50 = statistics.median(r[stage]["p50"] for r in fresh_runs if stage in r)
            p99 = statistics.median(r[stage]["p99"] for r in fresh_runs if stage in r)
            print(f"== {profile}: freshness at {args.rate:,.0f} events/s, {stage} features: p50 {p50:.0f} ms, "
                  f"p99 {p99:.0f} ms (targets: p50 <= 200 ms, p99 <= 1000 ms)")
        if profile == "production":
            with psycopg.connect(load_settings().postgres_dsn("postgres"), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{base.postgres_url.get_secret_value().rsplit("/", 1)[1]}" '
                             "WITH (FORCE)")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
