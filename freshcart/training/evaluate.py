"""Evaluation: propensity and recommendation metrics, the popularity baseline and the oracle.

Propensity (one score per view): ROC AUC, PR AUC (average precision), log loss
and expected calibration error. Recommendation (next purchases): for each
holdout user with more than ``k`` candidate products (the distinct products the
user viewed in the holdout, each scored at its first view) and at least one of
them bought within the horizon, HR@k (a bought product is in the top k) and
NDCG@k (binary relevance). The popularity baseline scores a product by its
purchases in the training period; the oracle AUC ranks the holdout views by the
simulator's recorded true purchase probabilities, when the data is simulated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.metrics import average_precision_score

from freshcart.settings import Settings
from freshcart.simulator.oracle import roc_auc
from freshcart.training.data import id_array

K = 10
CALIBRATION_BINS = 10
HIGHER_IS_BETTER = {"auc": True, "pr_auc": True, "log_loss": False, "calibration_error": False,
                    "hr_at_10": True, "ndcg_at_10": True}
"""Every metric a promotion can be decided on, and its direction."""


def log_loss(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7]."""
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def calibration_bins(scores: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean score, observed positive rate and row count of equal-count bins of the scores."""
    order = np.argsort(scores, kind="mergesort")
    parts = [p for p in np.array_split(order, bins) if len(p)]
    mean = np.array([scores[p].mean() for p in parts])
    rate = np.array([labels[p].mean() for p in parts])
    count = np.array([len(p) for p in parts])
    return mean, rate, count


def calibration_error(scores: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error: count-weighted mean |mean score - positive rate| over equal-count bins."""
    mean, rate, count = calibration_bins(np.asarray(scores, float), np.asarray(labels, float), bins)
    return float(np.sum(count * np.abs(mean - rate)) / np.sum(count))


def ranking_metrics(users: np.ndarray, products: np.ndarray, times: np.ndarray, scores: np.ndarray,
                    labels: np.ndarray, k: int = K) -> dict[str, float]:
    """HR@k and NDCG@k over users with more than ``k`` candidates and at least one bought; see the module doc."""
    frame = pd.DataFrame({"user": users, "product": products, "time": times, "score": scores, "label": labels})
    first = frame.sort_values(["time", "product"], kind="mergesort").drop_duplicates(["user", "product"])
    size = first.groupby("user")["product"].transform("size")
    bought = first.groupby("user")["label"].transform("sum")
    first = first[(size > k) & (bought > 0)]
    if first.empty:
        return {f"hr_at_{k}": float("nan"), f"ndcg_at_{k}": float("nan"), "ranking_users": 0.0}
    first = first.sort_values(["user", "score", "product"], ascending=[True, False, True], kind="mergesort")
    rank = first.groupby("user").cumcount().to_numpy() + 1
    relevant = first["label"].to_numpy() > 0
    top = rank <= k
    user_codes = pd.factorize(first["user"])[0]
    n_users = int(user_codes.max()) + 1
    hit = np.zeros(n_users, bool)
    np.logical_or.at(hit, user_codes[top & relevant], True)
    dcg = np.bincount(user_codes[top & relevant], weights=1.0 / np.log2(rank[top & relevant] + 1), minlength=n_users)
    n_relevant = np.minimum(np.bincount(user_codes[relevant], minlength=n_users), k)
    ideal_table = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(1, k + 1) + 1))])
    ndcg = dcg / ideal_table[n_relevant]
    return {f"hr_at_{k}": float(hit.mean()), f"ndcg_at_{k}": float(ndcg.mean()), "ranking_users": float(n_users)}


def propensity_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUC, PR AUC, log loss and calibration error of one score per row."""
    labels = np.asarray(labels).astype(np.int64)
    return {"auc": roc_auc(scores, labels), "pr_auc": float(average_precision_score(labels, scores)),
            "log_loss": log_loss(scores, labels), "calibration_error": calibration_error(scores, labels)}


def all_metrics(table: pa.Table, scores: np.ndarray) -> dict[str, float]:
    """Propensity and ranking metrics of ``scores`` on the rows of ``table`` (a holdout)."""
    labels = table["label"].to_numpy()
    times = table["event_time"].to_numpy()
    return {**propensity_metrics(scores, labels),
            **ranking_metrics(id_array(table["user_id"]), id_array(table["product_id"]), times, scores, labels)}


@dataclass
class PopularityBaseline:
    """Scores a product by its purchases in the training rows (a smoothed purchase rate as the probability)."""

    rates: dict[int, float]
    default: float

    @classmethod
    def fit(cls, train: pa.Table) -> PopularityBaseline:
        """Per-product positive rate of the training rows, shrunk towards the overall rate."""
        frame = pd.DataFrame({"product": id_array(train["product_id"]), "label": train["label"].to_numpy()})
        overall = float(frame["label"].mean())
        stats = frame.groupby("product")["label"].agg(["sum", "count"])
        prior = 20.0
        rates = (stats["sum"] + prior * overall) / (stats["count"] + prior)
        return cls(rates=dict(zip(stats.index.to_numpy().tolist(), rates.to_numpy().tolist())), default=overall)

    def predict(self, table: pa.Table) -> np.ndarray:
        """Each row's product rate (the overall rate for a product not seen in training)."""
        return pd.Series(id_array(table["product_id"])).map(self.rates).fillna(self.default).to_numpy(np.float64)


def truth_dirs(settings: Settings) -> list[Path]:
    """Where the simulator's recorded probabilities may be: the simulation dir or beside the offline events."""
    return [settings.simulation_dir / "_truth", settings.offline_events_dir / "_truth"]


def oracle_scores(settings: Settings, table: pa.Table) -> np.ndarray | None:
    """The simulator's true purchase probability of each row, or None when the data is not simulated."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from freshcart.simulator import TRUTH_SCHEMA

    for folder in truth_dirs(settings):
        if not folder.is_dir():
            continue
        ids = table["event_id"]
        truth = ds.dataset(folder, format="parquet", schema=TRUTH_SCHEMA, partitioning="hive").to_table(
            columns=["event_id", "purchase_proba"], filter=pc.field("event_id").isin(ids.combine_chunks()))
        lookup = pd.Series(truth["purchase_proba"].to_numpy(), index=truth["event_id"].to_numpy(zero_copy_only=False))
        lookup = lookup[~lookup.index.duplicated()]
        values = lookup.reindex(ids.to_numpy(zero_copy_only=False)).to_numpy()
        if not np.isnan(values).any():
            return values
    return None


@dataclass
class EvaluationReport:
    """Metrics of a model, the popularity baseline and (on simulated data) the oracle, on one holdout."""

    rows: int
    positives: int
    model: dict[str, float]
    baseline: dict[str, float]
    oracle_auc: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def oracle_gap(self) -> float | None:
        """Oracle AUC minus the model's AUC (how far from the best achievable ranking)."""
        return None if self.oracle_auc is None else self.oracle_auc - self.model["auc"]

    def flat(self) -> dict[str, float]:
        """Every figure as one flat mapping for MLflow: ``holdout_<metric>``, ``baseline_<metric>``, oracle."""
        out = {f"holdout_{k}": v for k, v in self.model.items()}
        out.update({f"baseline_{k}": v for k, v in self.baseline.items()})
        out.update({"holdout_rows": float(self.rows), "holdout_positives": float(self.positives)})
        if self.oracle_auc is not None:
            out.update({"oracle_auc": self.oracle_auc, "oracle_auc_gap": float(self.oracle_gap or 0.0)})
        return {k: v for k, v in {**out, **self.extra}.items() if v == v}


def evaluate_scores(settings: Settings, holdout: pa.Table, scores: np.ndarray,
                    baseline: PopularityBaseline) -> EvaluationReport:
    """An :class:`EvaluationReport` of ``scores`` on ``holdout``."""
    oracle = oracle_scores(settings, holdout)
    labels = holdout["label"].to_numpy()
    return EvaluationReport(
        rows=holdout.num_rows, positives=int(labels.sum()), model=all_metrics(holdout, scores),
        baseline=all_metrics(holdout, baseline.predict(holdout)),
        oracle_auc=None if oracle is None else roc_auc(oracle, labels))
