"""Benchmark: the recommendation replay, the rankers and the propensity training on the real REES46 sample.

The sample (``../shared/data/rees46_2019-10_head.csv``: the first 17,434 events of October
2019, three night hours with a logging gap, almost all of them between 02:10 and 02:50 UTC)
is ingested as `freshcart ingest-file --format rees46` does. Nothing is fitted on anything
at or after ``--replay-from`` (default 02:40), whose purchases and add-to-carts are the
replay's queries:

- **propensity model**: the point-in-time training set of the views whose
  ``--horizon-minutes`` label window ends before the replay (a purchase of the viewed product
  within it is the label; the default 24 h horizon cannot be observed in three hours), split
  by time, XGBoost and the attention model (DIN) trained as `freshcart train` does; holdout
  AUC against the popularity baseline;
- **replay**: popularity, trending, item-kNN and session-kNN, fitted on the events before;
- **rankers** over the candidate blend of `/recommend` (co-occurrence and session index
  refreshed every ``--refresh-minutes``; quotas searched on the queries before the replay):
  the blend's own order (its recall@100 is the candidates' recall), the XGBoost propensity
  model as ranker, and the learning-to-rank model (XGBoost ``rank:ndcg``) trained on the
  candidate lists of the ``--ranker-minutes`` before the replay, early-stopped on the last
  ``--validation-minutes`` of them; their validation NDCG@10 (the gate's figure) is printed.

Every figure is printed with its 95% interval from a bootstrap over shoppers
(``freshcart.recommendation.confidence``). There is no oracle: the data is real.

    .venv/bin/python bench/bench_rees46.py                    # a few minutes on 2 cores
    .venv/bin/python bench/bench_rees46.py --sample other.csv --replay-from 02:30
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from freshcart.features.tables import build_feature_tables  # noqa: E402
from freshcart.features.training_set import EXAMPLE_COLUMNS, join_features, read_view_tables  # noqa: E402
from freshcart.ingestion.file_ingest import ingest_file  # noqa: E402
from freshcart.labels import label_views  # noqa: E402
from freshcart.recommendation.base import TieBreak  # noqa: E402
from freshcart.recommendation.candidate_replay import ReplaySources, propose_all  # noqa: E402
from freshcart.recommendation.confidence import Interval, interval, rank_intervals  # noqa: E402
from freshcart.recommendation.log import build_log, to_micros  # noqa: E402
from freshcart.recommendation.quotas import even_split, search_quotas  # noqa: E402
from freshcart.recommendation.ranker import RankerParams  # noqa: E402
from freshcart.recommendation.ranker_training import fit_ranker, period_queries, ranker_scores, \
    ranking_day  # noqa: E402
from freshcart.recommendation.ranking_replay import target_ranks, validation_ndcg  # noqa: E402
from freshcart.recommendation.replay import QUERY_KINDS, default_recommenders, query_positions, \
    replay_one  # noqa: E402
from freshcart.schema import TimeBounds  # noqa: E402
from freshcart.settings import load_settings  # noqa: E402
from freshcart.simulator.oracle import roc_auc  # noqa: E402
from freshcart.storage import read_events  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "data" / "rees46_2019-10_head.csv"
METRICS = ("hr@10", "ndcg@10", "mrr", "recall@100", "recall@500")
MIN_QUOTA_QUERIES = 50
MINUTE_US = 60 * 1_000_000


def _clock(day: date, text: str) -> datetime:
    hours, minutes = (int(part) for part in text.split(":"))
    return datetime(day.year, day.month, day.day, hours, minutes, tzinfo=timezone.utc)


def print_rows(title: str, rows: list[tuple[str, str, int, dict[str, Interval]]]) -> None:
    print(f"\n{title}")
    print(f"{'recommender':<14}{'event':<10}{'queries':>8}" + "".join(f"{m:>22}" for m in METRICS))
    for name, kind, queries, figures in rows:
        cells = "".join(f"{str(figures[m]) if m in figures else '':>22}" for m in METRICS)
        print(f"{name:<14}{kind:<10}{queries:>8}{cells}")


def candidate_lists(log, queries: np.ndarray, limit: int, refresh_minutes: float):
    """The sources' proposals at each query, their co-occurrence and session index rebuilt every few minutes."""
    return propose_all(log, queries, limit, ReplaySources(log, refresh_hours=refresh_minutes / 60))


def choose_quotas(log, start_us: int, refresh_minutes: float) -> tuple[dict[str, int], str]:
    """Quotas searched on the queries before ``start_us`` when there are enough, else an even split."""
    before = period_queries(log, int(log.time[0]), start_us)
    names = ReplaySources(log).names
    if before.shape[0] < MIN_QUOTA_QUERIES:
        return even_split(names, 100, 5), f"an even split (only {before.shape[0]} queries before the replay)"
    quotas = search_quotas(candidate_lists(log, before, 100, refresh_minutes), 100, 5).quotas
    return quotas, f"searched on the {before.shape[0]} queries before the replay"


def with_intervals(name: str, log, queries: np.ndarray, ranks: np.ndarray, draws: int):
    """One row per query kind of ``ranks`` (one per query of ``queries``) with intervals."""
    rows = []
    for kind, code in QUERY_KINDS.items():
        mask = log.kind[queries] == code
        rows.append((name, kind, int(mask.sum()), rank_intervals(ranks[mask], log.user[queries[mask]], draws=draws)))
    return rows


def replay_rows(log, start_us: int, end_us: int, draws: int):
    """Every baseline's figures, per query kind, with intervals."""
    fit_stop = log.position(start_us)
    ties = TieBreak.by_popularity(log, fit_stop)
    queries = period_queries(log, start_us, end_us)
    rows = []
    for recommender in default_recommenders(log):
        ranks, _, _, _ = replay_one(log, recommender, fit_stop, queries, ties)
        rows += with_intervals(recommender.name, log, queries, ranks, draws)
    return rows


def ranker_rows(settings, log, events: pa.Table, propensity, start_us: int, end_us: int, quotas: dict[str, int],
                args) -> list:
    """The blend's order, the propensity model and the learning-to-rank model over the blend's candidates."""
    day = datetime.fromtimestamp(start_us / 1e6, tz=timezone.utc).date()
    views = read_view_tables(settings, day, day + timedelta(days=1))
    validation_from = start_us - int(args.validation_minutes * MINUTE_US)
    periods = {"train": (start_us - int(args.ranker_minutes * MINUTE_US), validation_from),
               "validation": (validation_from, start_us), "holdout": (start_us, end_us)}
    built = {}
    for name, (begin, finish) in periods.items():
        queries = period_queries(log, begin, finish)
        lists = candidate_lists(log, queries, 100, args.refresh_minutes)
        built[name] = ranking_day(log, events, views, propensity.predict, queries, quotas, 100, lists)
    ranker = fit_ranker(built["train"], built["validation"], replace(RankerParams(), min_child_weight=1.0))
    scores = {name: {"blend order": -day_.table.position.astype(np.float64), "propensity": day_.propensity,
                     "rank:ndcg": ranker_scores(ranker, day_)} for name, day_ in built.items()}
    val_ties = TieBreak.by_popularity(log, log.position(validation_from))
    checked = {name: validation_ndcg(log, built["validation"].table, s, val_ties)
               for name, s in scores["validation"].items()}
    print(f"\nrankers: the learning-to-rank model trained on {built['train'].table.queries} queries' candidates "
          f"({ranker.best_iteration + 1} rounds kept), early-stopped on {built['validation'].table.queries}; "
          "validation NDCG@10 " + ", ".join(f"{name} {value:.3f}" for name, value in checked.items())
          + f": the gate picks {max(checked, key=checked.get)}")
    ties = TieBreak.by_popularity(log, log.position(start_us))
    holdout = built["holdout"]
    rows = []
    for name, values in scores["holdout"].items():
        ranks, _ = target_ranks(log, holdout.table, values, ties)
        rows += with_intervals(name, log, period_queries(log, start_us, end_us), ranks, args.draws)
    return rows


def training_examples(events: pa.Table, horizon_minutes: float, before: datetime) -> pa.Table:
    """Views whose label window ends by ``before``, labelled, in time order."""
    labels = label_views(events, horizon_minutes / 60)
    views = events.filter(pc.equal(events["event_type"], "view"))
    table = views.select(EXAMPLE_COLUMNS[:-1]).append_column("label", labels["label"])
    observed = pa.scalar(before - timedelta(minutes=horizon_minutes), pa.timestamp("us", tz="UTC"))
    table = table.filter(pc.less_equal(table["event_time"], observed))
    return table.take(pc.sort_indices(table, sort_keys=[("event_time", "ascending"), ("event_id", "ascending")]))


def auc_interval(scores: np.ndarray, labels: np.ndarray, users: np.ndarray, draws: int) -> Interval:
    return interval(lambda rows: roc_auc(scores[rows], labels[rows]), users, draws=draws)


def train_rows(settings, events: pa.Table, day: date, before: datetime, horizon_minutes: float, draws: int,
               min_child_weight: float):
    from freshcart.training.data import id_array, split_by_time
    from freshcart.training.din_train import train_din
    from freshcart.training.evaluate import PopularityBaseline
    from freshcart.training.train import din_params, split_table, xgboost_params
    from freshcart.training.data import tabular_matrix
    from freshcart.training.xgb_model import train_xgboost

    build_feature_tables(settings, day, day + timedelta(days=1))
    examples = training_examples(events, horizon_minutes, before)
    table = join_features(examples, read_view_tables(settings, day, day + timedelta(days=1)))
    split = split_by_time(table, settings.training_validation_share, settings.training_holdout_share)
    train, validation, holdout = split_table(table, split)
    print(f"\ntraining set: {table.num_rows:,} views up to {horizon_minutes:g} min before the replay, "
          f"{int(pc.sum(table['label']).as_py())} positive ({horizon_minutes:g} min horizon); split by time: "
          f"train {train.num_rows:,} ({int(pc.sum(train['label']).as_py())} positive), validation "
          f"{validation.num_rows:,} ({int(pc.sum(validation['label']).as_py())}) from "
          f"{split.validation_start:%H:%M:%S}, holdout {holdout.num_rows:,} "
          f"({int(pc.sum(holdout['label']).as_py())}) from {split.holdout_start:%H:%M:%S}")
    x, names = tabular_matrix(train)
    vx, _ = tabular_matrix(validation)
    params = replace(xgboost_params(settings), min_child_weight=min_child_weight)
    xgb = train_xgboost(x, train["label"].to_numpy(), vx, validation["label"].to_numpy(), names, params)
    din, _ = train_din(train, validation, din_params(settings))
    labels, users = holdout["label"].to_numpy(), id_array(holdout["user_id"])
    scored = {"xgboost": xgb.predict(holdout), "din": din.predict(holdout),
              "popularity": PopularityBaseline.fit(train).predict(holdout)}
    print(f"XGBoost: {xgb.best_iteration + 1} rounds kept (min_child_weight {min_child_weight:g})")
    print(f"{'model':<12}{'holdout AUC [95% interval]':>30}")
    for name, scores in scored.items():
        print(f"{name:<12}{str(auc_interval(scores, labels, users, draws)):>30}")
    print(f"({np.unique(users).shape[0]} shoppers in the holdout; intervals by a bootstrap over them)")
    return xgb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=Path, default=SAMPLE, help="a REES46 CSV file (default: the shared sample)")
    parser.add_argument("--replay-from", default="02:40", help="UTC time of day (HH:MM) the replayed queries start")
    parser.add_argument("--refresh-minutes", type=float, default=30.0,
                        help="how often the co-occurrence and session index are rebuilt in the replay")
    parser.add_argument("--horizon-minutes", type=float, default=15.0, help="label horizon of the training set")
    parser.add_argument("--ranker-minutes", type=float, default=20.0,
                        help="the learning-to-rank model's candidate lists: the queries of these minutes before "
                             "the replay")
    parser.add_argument("--validation-minutes", type=float, default=7.0,
                        help="the last minutes of those the ranker is early-stopped and gated on")
    parser.add_argument("--draws", type=int, default=1000, help="bootstrap draws per interval")
    parser.add_argument("--min-child-weight", type=float, default=2.0,
                        help="XGBoost's least hessian sum per leaf (the default 100 is sized for the simulated "
                             "shop's million rows; with a hundred positives no leaf could split)")
    args = parser.parse_args(argv)
    if not args.sample.is_file():
        parser.error(f"--sample {args.sample}: no such file; pass the REES46 CSV to read")
    if not 0 < args.validation_minutes < args.ranker_minutes:
        parser.error(f"--validation-minutes {args.validation_minutes:g} must be above 0 and below "
                     f"--ranker-minutes {args.ranker_minutes:g}")

    with tempfile.TemporaryDirectory(prefix="fc-bench-rees46-") as tmp:
        settings = load_settings(data_dir=Path(tmp))
        started = time.perf_counter()
        bounds = TimeBounds.around(datetime.now(timezone.utc), datetime(2000, 1, 1, tzinfo=timezone.utc), 3600)
        report = ingest_file(args.sample, "rees46", settings.offline_events_dir, bounds)
        events = read_events(settings.offline_events_dir)
        log = build_log(events)
        first, last = pc.min(events["event_time"]).as_py(), pc.max(events["event_time"]).as_py()
        print(f"REES46 sample {args.sample.name}: {events.num_rows:,} events ({report.rejected:,} rejected), "
              f"{log.user_ids.shape[0]:,} shoppers, {log.products:,} products, {first:%Y-%m-%d %H:%M} to "
              f"{last:%H:%M} UTC; ingested in {time.perf_counter() - started:.1f} s")

        day = first.date()
        replay_start = _clock(day, args.replay_from)
        start_us, end_us = to_micros(replay_start), int(log.time[-1]) + 1
        if log.position(start_us) == 0 or log.position(start_us) >= log.size:
            parser.error(f"--replay-from {args.replay_from}: no events before or after it in the sample")
        propensity = train_rows(settings, events, day, replay_start, args.horizon_minutes, args.draws,
                                args.min_child_weight)

        started = time.perf_counter()
        quotas, how = choose_quotas(log, start_us, args.refresh_minutes)
        rows = replay_rows(log, start_us, end_us, args.draws)
        rows += ranker_rows(settings, log, events, propensity, start_us, end_us, quotas, args)
        print_rows(f"replay of the queries from {args.replay_from} UTC, fitted on the {log.position(start_us):,} "
                   f"events before ({time.perf_counter() - started:.1f} s); figure [95% interval]", rows)
        print(f"blend quotas {how}: " + ", ".join(f"{name} {q}" for name, q in quotas.items()))
        kinds = {kind: sum(q for n, k, q, _ in rows if k == kind and n == "popularity") for kind in QUERY_KINDS}
        print(f"({kinds['purchase']} purchases and {kinds['cart']} add-to-carts; intervals by a bootstrap over "
              "their shoppers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
