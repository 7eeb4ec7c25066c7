"""Benchmark: the recommendation replay on the demo's simulated week, every baseline and the oracle.

Simulates the demo's shop (seed 42: 10,000 users, 5,000 products, a week, about 1.4 M
events), replays the purchases and add-to-carts of its last full day with global
popularity, trending, item-kNN, session-kNN and the oracle (each fitted on the days
before), and prints the metrics table: HR@10, NDCG@10, MRR, candidate recall@100/@500,
catalogue coverage and popularity bias of the top 10, per recommender and query kind.
Timings are the median of ``--runs`` replays of each recommender (fit, and the walk over
the day's queries); the metrics are the same in every run (the replay is deterministic).

Then the candidate sources of ``/recommend`` (session, recent, co_viewed, co_bought, sknn,
trending, popular) in the same replay: their quotas are searched on the day before (up to
``--quota-queries`` of its queries), and on the last day each source's recall alone, the share of
queries whose product it added to the blend and the blend's recall without it are printed, with
the blend's candidate recall@100/@500 against the oracle's.

Then the rankers of the blend's 100 candidates, as rows of the same table (same holdout day, same
queries): the blend's own order, the propensity model as ranker (XGBoost trained here on the views
of the days before the ranker's training days, its labels ending before them) and the
learning-to-rank model (XGBoost ``rank:ndcg`` over the candidate lists of the ``--ranker-days``
days before the validation day, early-stopped on the validation day, the day before the holdout).
Candidate features are the feature rows strictly before each query (the training sets' as-of join).
NDCG@10 and HR@10 of each against the best baseline are printed per query kind.

    .venv/bin/python bench/bench_recommendation.py               # about 15 minutes on 2 cores
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

from freshcart.recommendation.candidate_replay import propose_all  # noqa: E402
from freshcart.recommendation.log import build_log  # noqa: E402
from freshcart.recommendation.log import CART, PURCHASE  # noqa: E402
from freshcart.recommendation.quotas import contributions, hits, search_quotas  # noqa: E402
from freshcart.recommendation.replay import query_positions  # noqa: E402
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
    parser.add_argument("--quota-queries", type=int, default=3000,
                        help="queries of the training day the quota search replays (evenly spread)")
    parser.add_argument("--simulation", type=Path, default=None,
                        help="a simulation folder written by `freshcart simulate` (default: simulate seed 42)")
    parser.add_argument("--ranker-days", type=int, default=2,
                        help="days of candidate lists the learning-to-rank model trains on (before validation)")
    parser.add_argument("--no-rankers", action="store_true", help="leave out the rankers' rows")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch) / "data"
        folder = args.simulation
        if folder is None:
            started = time.perf_counter()
            folder = data_dir / "offline" / "events"
            summary = write_simulation(SimulationConfig(seed=42), folder)
            print(f"simulated {summary.total:,} events in {time.perf_counter() - started:.1f} s")
        else:
            (data_dir / "offline").mkdir(parents=True)
            (data_dir / "offline" / "events").symlink_to(folder.resolve())
        started = time.perf_counter()
        events = read_events(folder)
        log = build_log(events)
        truth, covered = truth_per_event(log, read_truth(folder))
        print(f"log: {log.size:,} events, {log.products:,} products, {log.user_ids.shape[0]:,} users, "
              f"truth of {covered:.1%} of the views; read and indexed in {time.perf_counter() - started:.1f} s")
        return run(args, log, truth, events, data_dir)


def run(args: argparse.Namespace, log, truth, events: pa.Table, data_dir: Path) -> int:
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
    search, test, at_100 = candidate_rows(log, start, end, table, args.quota_queries)
    if not args.no_rankers:
        from freshcart.recommendation.ranker_experiment import compare_rankers
        from freshcart.settings import load_settings

        print("\nrankers: feature tables, the propensity model, candidate lists of the ranker's days")
        settings = load_settings(data_dir=data_dir)
        compared = compare_rankers(settings, log, events, start, end, search.quotas, args.ranker_days,
                                   holdout_lists=at_100, progress=print)
        rows = compared.rows
        ranked = pa.Table.from_pylist(rows)
        timings.update({row["recommender"]: (row["fit_seconds"], row["replay_seconds"]) for row in rows})
        print("\nthe rankers of the blend's 100 candidates, on the same holdout day and queries as the table above:")
        print_table(pa.concat_tables([table, ranked.select(table.column_names).cast(table.schema)]), timings)
        print("(rankers: fit s = training (propensity: the model; rank:ndcg: the ranker), replay s = candidate "
              "features and scoring of the day)")
        ratios(table, ranked)
    return 0


def ratios(baselines: pa.Table, rankers: pa.Table) -> None:
    """NDCG@10 and HR@10 of each ranker against the best baseline, per query kind."""
    names = ("popularity", "trending", "item-knn", "sknn")
    rows = [r for r in baselines.to_pylist() if r["recommender"] in names]
    for kind in ("purchase", "cart"):
        mine = [r for r in rows if r["event_type"] == kind]
        best = max(mine, key=lambda r: r["ndcg@10"])
        best_hr = max(r["hr@10"] for r in mine)
        for row in (r for r in rankers.to_pylist() if r["event_type"] == kind):
            print(f"{kind:<9} {row['recommender']:<12} NDCG@10 {row['ndcg@10']:.4f} = "
                  f"{row['ndcg@10'] / best['ndcg@10']:.3f} x the best baseline's ({best['recommender']} "
                  f"{best['ndcg@10']:.4f}); HR@10 {row['hr@10']:.4f} vs the best baseline's {best_hr:.4f} "
                  f"({'above' if row['hr@10'] > best_hr else 'not above'})")


def candidate_rows(log, start: int, end: int, table: pa.Table, quota_queries: int):
    """The candidate blend: quotas searched on the day before ``start``, recalls on ``[start, end)``."""
    import numpy as np

    train = np.sort(np.concatenate(list(query_positions(log, start - DAY_US, start).values())))
    if train.shape[0] > quota_queries:
        train = train[np.linspace(0, train.shape[0] - 1, quota_queries).astype(np.int64)]
    began = time.perf_counter()
    search = search_quotas(propose_all(log, train, 100), 100, 5)
    print(f"\nquota search on {search.queries:,} queries of the day before: {search.evaluated} quota vectors, "
          f"{time.perf_counter() - began:.1f} s; recall@100 {search.recall:.4f} (even split {search.even_recall:.4f})")
    print("quotas of 100: " + ", ".join(f"{name} {quota}" for name, quota in search.quotas.items()))
    test = np.sort(np.concatenate(list(query_positions(log, start, end).values())))
    began = time.perf_counter()
    at_100, at_500 = propose_all(log, test, 100), propose_all(log, test, 500)
    print(f"proposals of the last day's {test.shape[0]:,} queries in {time.perf_counter() - began:.1f} s")
    shares = contributions(at_100, search.quotas, 100)
    print(f"{'source':<12}{'quota':>7}{'recall@100 alone':>18}{'added':>9}{'blend without it':>18}")
    for name, row in shares.items():
        print(f"{name:<12}{search.quotas[name]:>7}{row['recall_alone']:>18.4f}{row['added']:>9.4f}"
              f"{row['recall_without']:>18.4f}")
    found_100 = np.array(hits(at_100, search.quotas, 100))
    found_500 = np.array(hits(at_500, {n: 5 * q for n, q in search.quotas.items()}, 500))
    oracle = {r["event_type"]: r for r in table.to_pylist() if r["recommender"] == "oracle"}
    kinds = log.kind[test]
    for kind, code in (("purchase", PURCHASE), ("cart", CART), ("both", None)):
        mask = np.ones(test.shape[0], bool) if code is None else kinds == code
        r100, r500 = float(found_100[mask].mean()), float(found_500[mask].mean())
        line = f"blend, {kind:<9} ({int(mask.sum()):,} queries): recall@100 {r100:.4f}, recall@500 {r500:.4f}"
        if oracle:
            rows = [oracle[kind]] if kind in oracle else list(oracle.values())
            weights = [row["queries"] for row in rows]
            o100 = float(np.average([row["recall@100"] for row in rows], weights=weights))
            o500 = float(np.average([row["recall@500"] for row in rows], weights=weights))
            line += f"; oracle {o100:.4f} / {o500:.4f}; ratio {r100 / o100:.3f} / {r500 / o500:.3f}"
        print(line)
    kept = np.array(hits(propose_all(log, test, 100, exclude_days=0), search.quotas, 100))
    print(f"without leaving out the shopper's purchases of the last 7 days (as /recommend does): recall@100 "
          f"{kept[kinds == PURCHASE].mean():.4f} (purchase), {kept[kinds == CART].mean():.4f} (cart), "
          f"{kept.mean():.4f} (both)")
    return search, test, at_100


if __name__ == "__main__":
    raise SystemExit(main())
