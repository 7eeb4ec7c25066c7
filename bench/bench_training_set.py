"""Benchmark: build a point-in-time training set of about 1 M labelled examples.

Target (brief): 1 M labelled examples, point-in-time correct, in <= 120 s on 2 cores.
Simulates a shop into a temporary offline store, builds the feature tables,
then times ``build_training_set`` (median of several runs). With ``--feast N``
it also times Feast's ``get_historical_features`` on the first N examples,
in the same run, and checks that both paths give the same values there.

    .venv/bin/python bench/bench_training_set.py               # ~1 M examples, 3 runs
    .venv/bin/python bench/bench_training_set.py --feast 20000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from freshcart import storage  # noqa: E402
from freshcart.features.tables import build_feature_tables  # noqa: E402
from freshcart.features.training_set import build_training_set  # noqa: E402
from freshcart.settings import load_settings  # noqa: E402
from freshcart.simulator import SimulationConfig, write_simulation  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events-per-day", type=int, default=220_000, help="simulated events a day")
    parser.add_argument("--example-days", type=int, default=5, help="days of views in the training set")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--feast", type=int, default=0, help="also time Feast's retrieval on this many examples")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fc-bench-ts-") as tmp:
        settings = load_settings(data_dir=Path(tmp))
        days = args.example_days + 4  # 2 days of history before, the label horizon and a spill day after
        config = SimulationConfig(seed=11, users=50_000, products=20_000, days=days,
                                  events_per_day=args.events_per_day)
        started = time.perf_counter()
        summary = write_simulation(config, settings.offline_events_dir)
        print(f"simulated {summary.total:,} events over {days} days in {time.perf_counter() - started:.1f}s")
        dates = storage.list_partitions(settings.offline_events_dir)
        start, end = dates[2], dates[2 + args.example_days]

        started = time.perf_counter()
        built = build_feature_tables(settings, dates[0], end)
        build_s = time.perf_counter() - started
        print(f"feature tables [{dates[0]}, {end}): {built.rows['user_activity']:,} user rows, "
              f"{built.events_read:,} events read, {build_s:.1f}s")

        timings = []
        for run in range(args.runs):
            started = time.perf_counter()
            table, report = build_training_set(settings, start, end, Path(tmp) / "training.parquet")
            timings.append(time.perf_counter() - started)
            print(f"run {run + 1}: {report.examples:,} examples ({report.positives:,} positive), "
                  f"{len(report.feature_columns)} features, {timings[-1]:.1f}s "
                  f"({report.examples / timings[-1]:,.0f} examples/s)")
        median = statistics.median(timings)
        print(f"training set [{start}, {end}): {report.examples:,} examples, median {median:.1f}s "
              f"(target <= 120 s for 1 M); with the feature-table build: {median + build_s:.1f}s")

        if args.feast:
            _compare_with_feast(settings, table, args.feast, report.examples / median)
    return 0


def _compare_with_feast(settings, fast_table, limit: int, fast_rate: float) -> None:
    """Feast's historical retrieval on the first ``limit`` examples: rate and equality."""
    from freshcart.features.store import apply_repo
    from freshcart.features.training_set import _join_feast, feature_columns

    apply_repo(settings)
    examples = fast_table.select(["event_id", "event_time", "user_id", "product_id", "category_id", "price",
                                  "label"]).slice(0, limit)
    started = time.perf_counter()
    feast_table = _join_feast(settings, examples)
    seconds = time.perf_counter() - started
    fast = fast_table.slice(0, limit).to_pandas().set_index("event_id").sort_index()
    slow = feast_table.to_pandas().set_index("event_id").sort_index()
    differing = [c for c in feature_columns()
                 if not fast[c].astype(str).equals(slow[c].astype(str))]
    print(f"Feast get_historical_features: {limit:,} examples in {seconds:.1f}s "
          f"({limit / seconds:,.0f}/s) vs FreshCart {fast_rate:,.0f}/s "
          f"({fast_rate / (limit / seconds):.0f}x); columns differing: {differing or 'none'}")


if __name__ == "__main__":
    raise SystemExit(main())
