"""Benchmark: materialisation into the SQLite online store, Feast's default path vs FreshCart's.

Generates feature tables of a realistic shape in a temporary data dir (every view of
freshcart.features.spec, two days, several rows per key), runs `feast apply` once, and
then, on a fresh copy of the applied store each time, alternates

- Feast's default ``FeatureStore.materialize`` (local compute engine, SQLite writer), and
- FreshCart's ``freshcart.features.materialize.materialize`` (fast SQLite writer),

over the same interval. Prints seconds and entity rows per second (one row per entity
key and view written to the online store) of each run, the medians and their ratio,
and checks that both produced the same online store, byte for byte.

    .venv/bin/python bench/bench_materialize.py [--users 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from freshcart.features import spec
from freshcart.features.materialize import materialize
from freshcart.features.store import feature_store, run_feast
from freshcart.features.tables import write_feature_tables
from freshcart.settings import Settings, load_settings

DAY = datetime(2026, 10, 1, tzinfo=timezone.utc)
DAYS = 2


def _lists(rng: np.random.Generator, n: int, longest: int, high: int) -> pa.ListArray:
    lengths = rng.integers(0, longest + 1, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(rng.zipf(1.3, offsets[-1]) % high + 1))


def view_rows(view: spec.ViewSpec, keys: dict[str, np.ndarray], rng: np.random.Generator) -> pa.Table:
    """Offline rows of a view for the given keys (one row per key element), with plausible values."""
    n = len(next(iter(keys.values())))
    cols: dict[str, object] = dict(keys)
    micros = rng.integers(0, DAYS * 86_400_000_000, n) + int(DAY.timestamp() * 1_000_000)
    cols[spec.TIMESTAMP] = pa.array(micros, pa.timestamp("us", tz="UTC"))
    for feature in view.features:
        name = feature.name
        if feature.dtype == pa.int64():
            cols[name] = rng.poisson(1.5 if name.endswith(("1h", "carts_24h")) else 12, n)
        elif feature.dtype == pa.float64():
            if name == "last_event_ts":
                cols[name] = micros / 1e6
            elif name.startswith(("spend", "avg_purchase")):
                spend = np.round(rng.lognormal(3.5, 1.0, n), 2) * (rng.random(n) < 0.2)  # most shoppers buy nothing
                no_purchase = (spend == 0) if name.startswith("avg") else np.zeros(n, bool)
                cols[name] = pa.array(spend, mask=no_purchase)  # the average is null without purchases
            else:
                cols[name] = np.round(rng.random(n) * (400 if name == "current_price" else 1), 4)
        else:
            longest = 3 if name == "top_categories_30d" else spec.RECENT_ITEMS
            cols[name] = _lists(rng, n, longest, 300 if "categor" in name else 200_000)
    return pa.table(cols).cast(view.schema)


def generate(users: int, seed: int) -> dict[str, pa.Table]:
    """users, sessions: one key per user; products: users / 2; user-category pairs: 2.5 per user; 1.3 rows per key."""
    rng = np.random.default_rng(seed)
    user_ids = rng.permutation(users * 10)[:users] + 1
    products = np.arange(1, users // 2 + 1) * 7
    pairs = np.unique(np.stack([rng.choice(user_ids, int(users * 2.6)), rng.zipf(1.2, int(users * 2.6)) % 300 + 1]),
                      axis=1)
    keys = {"user_activity": {"user_id": user_ids}, "user_session": {"user_id": user_ids},
            "product_activity": {"product_id": products},
            "user_category": {"user_id": pairs[0], "category_id": pairs[1]}}
    tables = {}
    for name, view in spec.VIEWS.items():
        base = keys[name]
        repeat = rng.random(len(next(iter(base.values())))) < 0.3  # a second row for 30% of the keys
        tables[name] = view_rows(view, {k: np.concatenate([v, v[repeat]]) for k, v in base.items()}, rng)
    return tables


def online_digest(settings: Settings) -> tuple[int, str]:
    """Rows and a digest of every row of every online table (to compare two stores)."""
    digest, rows = hashlib.sha256(), 0
    with sqlite3.connect(settings.data_dir / "feast" / "online_store.db") as conn:
        for view in sorted(spec.VIEWS):
            for row in conn.execute(f"SELECT entity_key, feature_name, value, value_text, event_ts, created_ts "
                                    f"FROM freshcart_{view} ORDER BY entity_key, feature_name"):
                digest.update(repr(row).encode())
                rows += 1
    return rows, digest.hexdigest()


def entity_rows(settings: Settings) -> int:
    with sqlite3.connect(settings.data_dir / "feast" / "online_store.db") as conn:
        return sum(conn.execute(f"SELECT count(DISTINCT entity_key) FROM freshcart_{v}").fetchone()[0]
                   for v in spec.VIEWS)


def run_once(method: str, template: Path, where: Path) -> tuple[float, int, Settings]:
    shutil.copytree(template / "feast", where / "feast")
    settings = load_settings(profile="local", data_dir=where)
    store = feature_store(settings)
    store.list_feature_views()  # registry loaded before the clock starts, for both methods
    end = DAY + timedelta(days=DAYS)
    began = time.perf_counter()
    views = list(spec.VIEWS)  # the model views this benchmark writes tables for (not the candidate view)
    if method == "feast":
        store.materialize(DAY, end - timedelta(microseconds=1), feature_views=views)  # Feast's end is inclusive
    else:
        materialize(settings, DAY, end, views, store=store)
    seconds = time.perf_counter() - began
    return seconds, entity_rows(settings), settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000, help="users (about 5x as many entity rows in all)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each method (the median is reported)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="freshcart-bench-materialize-"))
    try:
        template = work / "template"
        settings = load_settings(profile="local", data_dir=template)
        began = time.perf_counter()
        tables = generate(args.users, args.seed)
        write_feature_tables(settings.feature_tables_dir, tables, DAY.date(), DAY.date() + timedelta(days=DAYS))
        offline = sum(t.num_rows for t in tables.values())
        applied = run_feast(settings, "apply", capture=True)
        if applied.returncode != 0:
            sys.exit(f"feast apply failed:\n{applied.stdout}{applied.stderr}")
        print(f"feature tables: {offline:,} offline rows over {DAYS} days "
              f"({', '.join(f'{n} {t.num_rows:,}' for n, t in tables.items())}); "
              f"generated and applied in {time.perf_counter() - began:.0f}s")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
              f"SQLite {sqlite3.sqlite_version}; interval [{DAY:%Y-%m-%d}, {DAY + timedelta(days=DAYS):%Y-%m-%d})")
        results: dict[str, list[float]] = {"feast": [], "fast": []}
        written: dict[str, int] = {}
        digests: dict[str, tuple[int, str]] = {}
        for repeat in range(args.repeats):
            for method in ("feast", "fast"):
                seconds, rows, run = run_once(method, template, work / f"{method}{repeat}")
                rate = rows / seconds
                results[method].append(rate)
                written[method] = rows
                if repeat == 0:
                    digests[method] = online_digest(run)
                shutil.rmtree(run.data_dir / "feast")
                label = "Feast store.materialize" if method == "feast" else "FreshCart fast path   "
                print(f"run {repeat + 1}  {label}  {rows:,} entity rows in {seconds:7.1f}s  {rate:10,.0f} rows/s",
                      flush=True)
        feast, fast = statistics.median(results["feast"]), statistics.median(results["fast"])
        print(f"\nmedian of {args.repeats}: Feast {feast:,.0f} entity rows/s, FreshCart {fast:,.0f} entity rows/s, "
              f"ratio {fast / feast:.1f}x")
        print("(rows/s = entity rows written to the SQLite online store per second: one per entity key and view; "
              f"{digests['fast'][0]:,} feature values in all)")
        same = digests["feast"] == digests["fast"] and written["feast"] == written["fast"]
        print(f"online stores identical byte for byte: {'yes' if same else 'NO'}")
        if not same:
            sys.exit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
