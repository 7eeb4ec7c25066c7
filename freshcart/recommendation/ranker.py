"""The learning-to-rank model of the blend's candidates: XGBoost ``rank:ndcg`` over candidate lists.

Its input is, per (query, candidate) row, the propensity model's input (:func:`~freshcart.training.data.tabular_matrix`
of the point-in-time feature rows, whatever columns it has today), the candidate-source features
(:func:`~freshcart.recommendation.candidate_features.source_matrix`: position in the blend, the adding
source, how many sources proposed it, its rank in each) and the propensity champion's score of the row.
Groups are the queries, the label is 1 for the product bought or carted. Trained on the candidate
lists of a training period and early-stopped on NDCG@10 of a validation period; the booster keeps
the rounds up to the best one.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from freshcart.recommendation.candidate_features import CandidateTable, source_columns, source_matrix
from freshcart.training.xgb_model import check_columns, load_booster, save_booster

PROPENSITY_COLUMN = "propensity_score"


@dataclass(frozen=True)
class RankerParams:
    """Hyper-parameters of the ranker.

    Up to 100 rounds at 0.15: on the replay benchmark's simulated week this keeps the validation
    NDCG@10 of 300 rounds at 0.1 (0.8176 against 0.8186; holdout purchases 0.7196 against 0.7202),
    fits in 61 s instead of 155 s and scores a request's candidates with a third of the trees.
    """

    max_rounds: int = 100
    early_stopping_rounds: int = 30
    learning_rate: float = 0.15
    max_depth: int = 6
    min_child_weight: float = 20.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    max_bin: int = 128
    threads: int = 0
    """Threads for training and scoring; 0 means every CPU core."""
    seed: int = 42

    def booster_params(self) -> dict[str, Any]:
        return {"objective": "rank:ndcg", "eval_metric": "ndcg@10", "tree_method": "hist",
                "lambdarank_pair_method": "topk", "lambdarank_num_pair_per_sample": 10,
                "eta": self.learning_rate, "max_depth": self.max_depth, "min_child_weight": self.min_child_weight,
                "subsample": self.subsample, "colsample_bytree": self.colsample_bytree, "max_bin": self.max_bin,
                "nthread": self.threads or os.cpu_count() or 1, "seed": self.seed}


def ranker_inputs(model_input: np.ndarray, model_columns: list[str], table: CandidateTable,
                  propensity: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The ranker's input: the propensity model's input, the source features and the propensity score."""
    if model_input.shape[0] != table.query.shape[0] or propensity.shape[0] != table.query.shape[0]:
        raise ValueError(f"{model_input.shape[0]} model-input rows and {propensity.shape[0]} propensity scores for "
                         f"{table.query.shape[0]} candidate rows; build all three from the same CandidateTable")
    matrix = np.column_stack([model_input.astype(np.float32), source_matrix(table),
                              propensity.astype(np.float32)[:, None]])
    return matrix, [*model_columns, *source_columns(table.names), PROPENSITY_COLUMN]


@dataclass
class RankerModel:
    """A trained ranking booster and its input columns."""

    booster: xgb.Booster
    feature_names: list[str]
    best_iteration: int
    train_seconds: float = 0.0
    best_score: float = float("nan")
    """Validation NDCG@10 of XGBoost's own (over the queries whose product is a candidate)."""

    def predict_matrix(self, matrix: np.ndarray, names: list[str]) -> np.ndarray:
        """A score per row of a :func:`ranker_inputs` matrix (higher ranks first)."""
        check_columns("ranker", self.feature_names, names)
        return self.booster.inplace_predict(matrix, iteration_range=(0, self.best_iteration + 1),
                                            validate_features=False).astype(np.float64)

    def save(self, folder: Path) -> Path:
        return save_booster(self.booster, self.best_iteration, folder / "ranker.json")

    @classmethod
    def load(cls, path: Path) -> RankerModel:
        booster, best_iteration = load_booster(path)
        return cls(booster=booster, feature_names=list(booster.feature_names or []), best_iteration=best_iteration)


def _matrix(x: np.ndarray, table: CandidateTable, names: list[str], threads: int, max_bin: int,
            ref: xgb.QuantileDMatrix | None = None) -> xgb.QuantileDMatrix:
    return xgb.QuantileDMatrix(x, table.label.astype(np.float32), qid=table.query, feature_names=names,
                               nthread=threads, max_bin=max_bin, ref=ref)


def train_ranker(train_x: np.ndarray, train: CandidateTable, val_x: np.ndarray, validation: CandidateTable,
                 names: list[str], params: RankerParams = RankerParams()) -> RankerModel:
    """Fit ``rank:ndcg`` on the training lists, stopping when the validation NDCG@10 stops improving.

    Queries whose product is not among the candidates teach nothing (no pair to order) and are left out.
    """
    started = time.perf_counter()
    threads = params.threads or os.cpu_count() or 1
    train_rows, train_part = _with_target(train)
    val_rows, val_part = _with_target(validation)
    if train_part.queries == 0 or val_part.queries == 0:
        raise ValueError(f"no query whose product is among its candidates ({train_part.queries} training, "
                         f"{val_part.queries} validation): replay more days or a longer candidate list")
    dtrain = _matrix(train_x[train_rows], train_part, names, threads, params.max_bin)
    dval = _matrix(val_x[val_rows], val_part, names, threads, params.max_bin, ref=dtrain)
    booster = xgb.train(params.booster_params(), dtrain, num_boost_round=params.max_rounds,
                        evals=[(dval, "validation")], early_stopping_rounds=params.early_stopping_rounds,
                        verbose_eval=False)
    return RankerModel(booster=booster, feature_names=names, best_iteration=int(booster.best_iteration),
                       train_seconds=time.perf_counter() - started, best_score=float(booster.best_score))


def _with_target(table: CandidateTable) -> tuple[np.ndarray, CandidateTable]:
    """The rows of the queries that have their product among the candidates, queries numbered again."""
    has = np.bincount(table.query[table.label == 1], minlength=table.queries) > 0
    rows = np.flatnonzero(has[table.query])
    renumber = np.cumsum(has) - 1
    part = CandidateTable(
        names=table.names, query=renumber[table.query[rows]], user_id=table.user_id[rows],
        product_id=table.product_id[rows], time_us=table.time_us[rows], position=table.position[rows],
        source=table.source[rows], rank_in=table.rank_in[rows], label=table.label[rows],
        targets=table.targets[has], kinds=table.kinds[has])
    return rows, part
