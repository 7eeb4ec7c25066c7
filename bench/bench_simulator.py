"""Benchmark: simulate N events and write them to Parquet; print events/s per run and the median.

Target (brief): 10 million events generated and written in <= 60 s on 2 cores.

    .venv/bin/python bench/bench_simulator.py                 # 10 M events, 3 runs
    .venv/bin/python bench/bench_simulator.py --events 2000000 --runs 5
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from freshcart.simulator import SimulationConfig, write_simulation  # noqa: E402

DAYS = 7


def bench_config(events: int, seed: int) -> SimulationConfig:
    """A world sized like the brief's example (200k users, 50k products for 10 M events)."""
    scale = events / 10_000_000
    return SimulationConfig(
        seed=seed,
        users=max(1_000, int(200_000 * scale)),
        products=max(500, int(50_000 * scale)),
        days=DAYS,
        events_per_day=max(1, round(events / DAYS)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000, help="events to simulate per run")
    parser.add_argument("--runs", type=int, default=3, help="number of runs")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed")
    args = parser.parse_args(argv)

    config = bench_config(args.events, args.seed)
    print(
        f"simulator bench: {args.events:,} events target, users={config.users:,} "
        f"products={config.products:,} days={config.days} events_per_day={config.events_per_day:,}"
    )
    rates = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="freshcart-bench-") as folder:
            summary = write_simulation(config, Path(folder))
        rates.append(summary.events_per_second)
        print(
            f"run {run}: {summary.total:,} events in {summary.seconds:.2f} s "
            f"= {summary.events_per_second:,.0f} events/s"
        )
    median = statistics.median(rates)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"median: {median:,.0f} events/s -> {10_000_000 / median:.1f} s per 10 M events "
        "(target <= 60 s)"
    )
    print(f"peak memory (RSS): {peak_mb:,.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
