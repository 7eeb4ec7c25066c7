"""Benchmark: the recommendation replay on the demo's simulated week, every baseline and the oracle.

Simulates the demo's shop (seed 42: 10,000 users, 5,000 products, a week, about 1.4 M
events), replays the purchases and add-to-carts of its last full day with global
popularity, trending, item-kNN, session-kNN and the oracle (each fitted on the days
before), and prints the metrics table: HR@10, NDCG@10, MRR, candidate recall@100/@500,
catalogue coverage and popularity bias of the top 10, per recommender and query kind.
Timings are the median of ``--runs`` replays of each recommender (fit, and the walk over
the day's queries); the metrics are the same in every run (the replay is deterministic).

    .venv/bin/python bench/bench_recommendation.py               # a few minutes on 2 cores
    .venv/bin/python bench/bench_recommendation.py --runs 1 --simulation data/simulation
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from freshcart.recommendation.log import build_log  # noqa: E402
from freshcart.recommendation.oracle import read_truth, truth_per_event  # noqa: E402
from freshcart.recommendation.replay import default_recommenders, replay  # noqa: E402
from freshcart.simulator import SimulationConfig, write_simulation  # noqa: E402
from freshcart.storage import read_events  # noqa: E402

DAY_US = 86_400 * 1_000_000
METRICS = ("queries", "hr@10", "ndcg@10", "mrr", "recall@100", "recall@500", "coverage@10", "popularity_bias@10")


def print_table(table: pa.Table, timings: dict[str, tuple[float, float]]) -> None:
    widths = {name: max(12, len(name) + 2) for name in METRICS}
    header = f"{'recommender':<12}{'event':<10}" + "".join(f"{name:>{widths[name]}}" for name in METRICS)
    print(header + f"{'fit s':>9}{'replay s':>10}{'ms/query':>10}")
    queries: dict[str, int] = {}
    for row in table.to_pylist():
        queries[row["recommender"]] = queries.get(row["recommender"], 0) + row["queries"]
    for row in table.to_pylist():
        fit, walk = timings[row["recommender"]]
        cells = "".join(f"{row[m]:>{widths[m]},}" if m == "queries" else f"{row[m]:>{widths[m]}.4f}"
                        for m in METRICS)
        print(f"{row['recommender']:<12}{row['event_type']:<10}{cells}{fit:>9.2f}{walk:>10.2f}"
              f"{1000 * walk / max(queries[row['recommender']], 1):>10.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="replays of each recommender (timings: median)")
    parser.add_argument("--simulation", type=Path, default=None,
                        help="a simulation folder written by `freshcart simulate` (default: simulate seed 42)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        folder = args.simulation
        if folder is None:
            started = time.perf_counter()
            folder = Path(scratch) / "simulation"
            summary = write_simulation(SimulationConfig(seed=42), folder)
            print(f"simulated {summary.total:,} events in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        log = build_log(read_events(folder))
        truth, covered = truth_per_event(log, read_truth(folder))
        print(f"log: {log.size:,} events, {log.products:,} products, {log.user_ids.shape[0]:,} users, "
              f"truth of {covered:.1%} of the views; read and indexed in {time.perf_counter() - started:.1f} s")

    end = int(log.time[-1]) // DAY_US * DAY_US  # midnight before the last (partial) day
    start = end - DAY_US  # the last full day
    print(f"replay: the purchases and add-to-carts of one day, fitted on the {log.position(start):,} events before")
    tables: list[pa.Table] = []
    timings: dict[str, tuple[float, float]] = {}
    for recommender_index in range(len(default_recommenders(log, truth))):
        fits, walks = [], []
        for _ in range(args.runs):
            recommender = default_recommenders(log, truth)[recommender_index]
            table = replay(log, [recommender], start, end)
            fits.append(table["fit_seconds"][0].as_py())
            walks.append(table["replay_seconds"][0].as_py())
        timings[recommender.name] = (statistics.median(fits), statistics.median(walks))
        tables.append(table)
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    print_table(table, timings)
    print(f"(fit s, replay s: median of {args.runs} runs, one walk over both query kinds; ms/query: per query)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
