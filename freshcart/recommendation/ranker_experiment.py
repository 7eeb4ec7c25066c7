"""Both rankers of the blend's candidates trained and judged on one shop's days, by replay.

The days, oldest first: the propensity model's views (their labels end before the ranker's days),
``ranker_days`` days of candidate lists the learning-to-rank model trains on, the validation day
(early stopping, the gate's comparison) and the holdout day (the figures; looked at once). Used by
the benchmark, the test of the ranker on small simulated data and ``freshcart recommend
train-ranker``'s offline comparison.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from freshcart.features.tables import build_feature_tables
from freshcart.features.training_set import read_view_tables
from freshcart.recommendation.base import TieBreak
from freshcart.recommendation.candidate_replay import CandidateLists
from freshcart.recommendation.log import EventLog
from freshcart.recommendation.ranker import RankerModel, RankerParams
from freshcart.recommendation.ranker_training import RankingDay, concat_days, fit_ranker, period_queries, \
    ranker_scores, ranking_day
from freshcart.recommendation.ranking_replay import ranking_rows, validation_ndcg
from freshcart.settings import Settings
from freshcart.training.data import load_or_build, split_by_time, tabular_matrix
from freshcart.training.xgb_model import XGBoostModel, XGBoostParams, train_xgboost

DAY_US = 86_400 * 1_000_000
RANKERS = ("blend", "propensity", "rank:ndcg")
"""The rows: the blend's own order, the propensity model as ranker, the learning-to-rank model."""


@dataclass
class RankerComparison:
    """The rankers' replay rows on the holdout day, their validation NDCG@10, and the models."""

    rows: list[dict[str, object]]
    validation_ndcg: dict[str, float]
    propensity: XGBoostModel
    ranker: RankerModel
    validation: RankingDay
    seconds: dict[str, float] = field(default_factory=dict)


def _day(us: int):
    return datetime.fromtimestamp(us / 1e6, tz=timezone.utc).date()


def train_propensity(settings: Settings, first_us: int, end_us: int, threads: int = 0) -> XGBoostModel:
    """The XGBoost propensity model on the views of ``[first_us, end_us)`` (days), as ``freshcart train``
    fits it (time split, early stopping on the validation part)."""
    from freshcart.training.train import split_table

    table, _, _ = load_or_build(settings, _day(first_us), _day(end_us))
    split = split_by_time(table, settings.training_validation_share, settings.training_holdout_share)
    train, validation, _ = split_table(table, split)
    x, names = tabular_matrix(train)
    vx, _ = tabular_matrix(validation)
    params = XGBoostParams(max_rounds=settings.xgb_max_rounds, threads=threads, seed=settings.training_seed)
    return train_xgboost(x, train["label"].to_numpy(), vx, validation["label"].to_numpy(), names, params)


def ensure_feature_tables(settings: Settings, first_us: int, end_us: int) -> None:
    """Build the feature tables of the days of ``[first_us, end_us)`` unless every view has every one of
    those days with every current column."""
    import pyarrow.parquet as pq

    from freshcart import storage
    from freshcart.features import spec
    from freshcart.features.tables import days_between

    wanted = days_between(_day(first_us), _day(end_us))
    for name, view in spec.VIEWS.items():
        root = settings.feature_tables_dir / name
        if not set(wanted) <= set(storage.list_partitions(root)):
            break
        files = [f for f in root.glob(f"event_date={wanted[-1].isoformat()}/*.parquet")]
        if not files or not set(view.feature_names) <= set(pq.read_schema(files[0]).names):
            break
    else:
        return
    build_feature_tables(settings, _day(first_us), _day(end_us))


def compare_rankers(settings: Settings, log: EventLog, events: pa.Table, start_us: int, end_us: int,
                    quotas: dict[str, int] | None, ranker_days: int = 2, limit: int = 100,
                    holdout_lists: CandidateLists | None = None, max_queries: int | None = None,
                    params: RankerParams = RankerParams(), threads: int = 0,
                    progress: Callable[[str], None] | None = None) -> RankerComparison:
    """Train the propensity model and the ranker on the days before ``[start_us, end_us)`` (the holdout,
    a day), early-stop on the day before it, and replay the holdout's queries with every ranker."""
    say = progress or (lambda line: None)
    seconds: dict[str, float] = {}
    validation_start = start_us - DAY_US
    ranker_start = validation_start - ranker_days * DAY_US
    first = int(log.time[0]) // DAY_US * DAY_US
    if ranker_start - first < DAY_US:
        raise ValueError(f"the events start {_day(first)}: too late for a propensity model's day before the "
                         f"{ranker_days} ranker days from {_day(ranker_start)}; replay a later day or fewer "
                         "ranker days")
    began = time.perf_counter()
    ensure_feature_tables(settings, first, end_us)
    seconds["feature_tables"] = time.perf_counter() - began
    began = time.perf_counter()
    propensity = train_propensity(settings, first, ranker_start, threads)
    seconds["propensity_fit"] = time.perf_counter() - began
    say(f"propensity model: views of [{_day(first)}, {_day(ranker_start)}), {propensity.best_iteration + 1} rounds, "
        f"{seconds['propensity_fit']:.1f} s (with its training set)")
    views = read_view_tables(settings, _day(ranker_start), _day(end_us))

    def day(begin: int, lists: CandidateLists | None = None) -> RankingDay:
        queries = lists.positions if lists is not None else period_queries(log, begin, begin + DAY_US, max_queries)
        built = ranking_day(log, events, views, propensity.predict, queries, quotas, limit, lists)
        say(f"candidates of {_day(begin)}: {built.table.queries:,} queries, {built.table.query.shape[0]:,} rows; "
            + ", ".join(f"{k} {v:.1f} s" for k, v in built.seconds.items()))
        return built

    train = concat_days([day(ranker_start + i * DAY_US) for i in range(ranker_days)])
    validation = day(validation_start)
    began = time.perf_counter()
    ranker = fit_ranker(train, validation, params)
    seconds["ranker_fit"] = time.perf_counter() - began
    val_ties = TieBreak.by_popularity(log, log.position(validation_start))
    scores = {"blend": -validation.table.position.astype(np.float64), "propensity": validation.propensity,
              "rank:ndcg": ranker_scores(ranker, validation)}
    checked = {name: validation_ndcg(log, validation.table, s, val_ties) for name, s in scores.items()}
    say(f"ranker: {ranker.best_iteration + 1} rounds, {seconds['ranker_fit']:.1f} s; validation NDCG@10 "
        + ", ".join(f"{name} {value:.4f}" for name, value in checked.items()))
    began = time.perf_counter()
    holdout = day(start_us, holdout_lists)
    seconds["holdout_candidates"] = time.perf_counter() - began
    ties = TieBreak.by_popularity(log, log.position(start_us))
    fits = {"blend": 0.0, "propensity": seconds["propensity_fit"], "rank:ndcg": seconds["ranker_fit"]}
    walk = sum(holdout.seconds.values())
    rows = []
    for name, scores_of in (("blend", -holdout.table.position.astype(np.float64)),
                            ("propensity", holdout.propensity), ("rank:ndcg", ranker_scores(ranker, holdout))):
        for row in ranking_rows(name, log, holdout.table, scores_of, ties, seconds=fits[name]):
            row["replay_seconds"] = walk
            row["ms_per_query"] = 1000 * walk / max(holdout.table.queries, 1)
            rows.append(row)
    return RankerComparison(rows, checked, propensity, ranker, validation, seconds)
