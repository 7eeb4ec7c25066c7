"""Performance of the served scores: measured once labels exist, estimated before they do.

The estimate follows NannyML's confidence-based performance estimation (CBPE): the
scores are first calibrated on the reference (isotonic regression of its labels on
its scores), then each calibrated probability is taken as the chance that the row is
a positive, which gives the expected AUC and log loss of the window without a label.
When the labels land, the estimate made for the window is compared with the real figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BINS = 10
EPS = 1e-6


def measured(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUC, PR AUC, log loss and calibration error (expected, over 10 score bins); NaN without both classes."""
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    labels = np.asarray(labels, dtype=np.int64)
    scores = np.clip(np.asarray(scores, dtype=np.float64), EPS, 1 - EPS)
    out = {"rows": float(len(labels)), "positives": float(labels.sum()), "mean_score": float(scores.mean()),
           "positive_rate": float(labels.mean()) if len(labels) else float("nan")}
    if len(labels) == 0 or labels.min() == labels.max():
        return {**out, "auc": float("nan"), "pr_auc": float("nan"),
                "log_loss": float("nan"), "calibration_error": float("nan")}
    return {**out, "auc": float(roc_auc_score(labels, scores)), "pr_auc": float(average_precision_score(labels, scores)),
            "log_loss": float(log_loss(labels, scores, labels=[0, 1])),
            "calibration_error": calibration_error(labels, scores)}


def calibration_error(labels: np.ndarray, scores: np.ndarray) -> float:
    """Expected calibration error: |mean score - positive rate| per equal-width bin, weighted by rows."""
    bins = np.minimum((scores * BINS).astype(np.int64), BINS - 1)
    total = 0.0
    for b in np.unique(bins):
        inside = bins == b
        total += inside.sum() * abs(scores[inside].mean() - labels[inside].mean())
    return float(total / len(labels))


def expected_auc(probabilities: np.ndarray, scores: np.ndarray) -> float:
    """AUC expected when row i is positive with probability p_i (ties count half)."""
    order = np.argsort(scores, kind="stable")
    s, p = scores[order], probabilities[order]
    q = 1.0 - p
    # for each distinct score: sums of p and q of the rows below it and at it
    _, start, counts = np.unique(s, return_index=True, return_counts=True)
    p_at = np.add.reduceat(p, start)
    q_at = np.add.reduceat(q, start)
    q_below = np.cumsum(q_at) - q_at
    numerator = float(np.sum(p_at * (q_below + 0.5 * q_at)) - 0.5 * np.sum(p * q))
    denominator = float(p.sum() * q.sum() - np.sum(p * q))
    return numerator / denominator if denominator > 0 else float("nan")


@dataclass
class Estimator:
    """Scores -> calibrated probabilities, fitted on the reference's labels."""

    model: object

    @classmethod
    def fit(cls, labels: np.ndarray, scores: np.ndarray) -> Estimator:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip")
        iso.fit(np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64))
        return cls(iso)

    def estimate(self, scores: np.ndarray) -> dict[str, float]:
        """Expected AUC and log loss of a window of ``scores`` (no labels needed)."""
        scores = np.clip(np.asarray(scores, dtype=np.float64), EPS, 1 - EPS)
        if len(scores) == 0:
            return {"auc": float("nan"), "log_loss": float("nan")}
        p = np.clip(self.model.predict(scores), EPS, 1 - EPS)  # type: ignore[attr-defined]
        loss = -np.mean(p * np.log(scores) + (1 - p) * np.log(1 - scores))
        return {"auc": expected_auc(p, scores), "log_loss": float(loss), "positive_rate": float(p.mean())}
