"""Candidate lists of replayed days as ranking data, the ranker trained on them, both rankers judged.

:func:`ranking_day` replays the queries of a period with the service's sources
(:func:`~freshcart.recommendation.candidate_replay.propose_all`), blends each query's candidates with
the quotas, joins every candidate's feature rows strictly before the query and scores them with the
propensity model: the propensity model as ranker needs nothing more, and the learning-to-rank model
reads the same rows plus the candidate-source features. :func:`fit_ranker` trains the ranker on the
days before the validation day and early-stops on it; the holdout is never looked at.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from freshcart.recommendation.candidate_features import CandidateTable, blend_candidates, candidate_rows
from freshcart.recommendation.candidate_replay import CandidateLists, propose_all
from freshcart.recommendation.log import EventLog
from freshcart.recommendation.ranker import RankerModel, RankerParams, ranker_inputs, train_ranker
from freshcart.recommendation.replay import query_positions
from freshcart.training.data import tabular_matrix

PropensityScorer = Callable[[pa.Table], np.ndarray]
"""Purchase probabilities of feature rows (a training set's columns), e.g. ``XGBoostModel.predict``."""


@dataclass
class RankingDay:
    """The blended candidates of a replayed period with both rankers' inputs."""

    table: CandidateTable
    model_input: np.ndarray
    """The propensity model's input of each row (:func:`tabular_matrix`)."""
    model_columns: list[str]
    propensity: np.ndarray
    """The propensity model's score of each row: the propensity model as ranker."""
    seconds: dict[str, float]

    def ranker_inputs(self) -> tuple[np.ndarray, list[str]]:
        return ranker_inputs(self.model_input, self.model_columns, self.table, self.propensity)


def period_queries(log: EventLog, start_us: int, end_us: int, most: int | None = None) -> np.ndarray:
    """Positions of the purchases and add-to-carts of ``[start_us, end_us)`` (at most ``most``, evenly spread)."""
    queries = np.sort(np.concatenate(list(query_positions(log, start_us, end_us).values())))
    if most is not None and queries.shape[0] > most:
        queries = queries[np.linspace(0, queries.shape[0] - 1, most).astype(np.int64)]
    return queries


def ranking_day(log: EventLog, events: pa.Table, views: dict[str, pa.Table], propensity: PropensityScorer,
                queries: np.ndarray, quotas: dict[str, int] | None, limit: int = 100,
                lists: CandidateLists | None = None) -> RankingDay:
    """The candidates of ``queries`` (log positions, ascending) with features and propensity scores.

    ``events``: canonical events before the queries (the candidates' category and price);
    ``views``: the model views' feature rows (:func:`~freshcart.features.training_set.read_view_tables`);
    ``lists``: the sources' proposals of these queries when already replayed (at least ``limit`` each).
    """
    if queries.shape[0] == 0:
        raise ValueError("no purchases or add-to-carts to replay in the period; choose days with traffic")
    started = time.perf_counter()
    if lists is None:
        lists = propose_all(log, queries, limit)
    elif not np.array_equal(lists.positions, queries):
        raise ValueError("the candidate lists given are of other queries; pass the lists of these queries")
    proposed = time.perf_counter()
    table = blend_candidates(log, lists, quotas, limit)
    rows = candidate_rows(table, events, views)
    joined = time.perf_counter()
    model_input, columns = tabular_matrix(rows)
    scores = np.asarray(propensity(rows), dtype=np.float64)
    return RankingDay(table, model_input, columns, scores,
                      {"propose": proposed - started, "features": joined - proposed,
                       "score": time.perf_counter() - joined})


def concat_days(days: list[RankingDay]) -> RankingDay:
    """Several periods' candidates as one (queries numbered on)."""
    if not days:
        raise ValueError("no ranking days to put together; replay at least one training day")
    first = days[0].table
    if any(day.table.names != first.names or day.model_columns != days[0].model_columns for day in days):
        raise ValueError("the ranking days differ in their sources or model columns; build them with the same code")
    shift = np.cumsum([0] + [day.table.queries for day in days[:-1]])

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(day.table, name) for day in days])

    table = CandidateTable(
        names=first.names, query=np.concatenate([d.table.query + s for d, s in zip(days, shift)]),
        user_id=cat("user_id"), product_id=cat("product_id"), time_us=cat("time_us"), position=cat("position"),
        source=cat("source"), rank_in=cat("rank_in"), label=cat("label"), targets=cat("targets"),
        kinds=cat("kinds"))
    return RankingDay(table, np.concatenate([d.model_input for d in days]), days[0].model_columns,
                      np.concatenate([d.propensity for d in days]), {})


def fit_ranker(train: RankingDay, validation: RankingDay, params: RankerParams = RankerParams()) -> RankerModel:
    """The ranker trained on ``train``'s lists, early-stopped on ``validation``'s NDCG@10."""
    train_x, names = train.ranker_inputs()
    val_x, val_names = validation.ranker_inputs()
    if names != val_names:
        raise ValueError("training and validation candidates have different input columns; build them alike")
    return train_ranker(train_x, train.table, val_x, validation.table, names, params)


def ranker_scores(model: RankerModel, day: RankingDay) -> np.ndarray:
    """The ranker's score of each candidate row of ``day``."""
    x, names = day.ranker_inputs()
    return model.predict_matrix(x, names)
