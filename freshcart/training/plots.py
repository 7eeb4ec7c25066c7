"""Evaluation plots saved as PNG files (logged to MLflow as artifacts): ROC, PR, calibration,
XGBoost feature importance and example DIN attention weights.

Figures are drawn with Matplotlib's object API (no pyplot, no global backend), so
plotting works headless and leaves no figure behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from freshcart.training.evaluate import calibration_bins


def _subplots(width: float, height: float) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(width, height))
    return figure, figure.subplots()


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def curve_plots(folder: Path, labels: np.ndarray, curves: dict[str, np.ndarray]) -> list[Path]:
    """ROC, precision-recall and calibration plots of each named score array against ``labels``."""
    paths = []
    figure, axis = _subplots(5, 5)
    for name, scores in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        axis.plot(fpr, tpr, label=name)
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (holdout)")
    axis.legend()
    paths.append(_save(figure, folder / "roc.png"))

    figure, axis = _subplots(5, 5)
    for name, scores in curves.items():
        precision, recall, _ = precision_recall_curve(labels, scores)
        axis.plot(recall, precision, label=name)
    axis.axhline(float(np.mean(labels)), color="grey", linestyle=":", label="positive rate")
    axis.set(xlabel="recall", ylabel="precision", title="precision-recall (holdout)")
    axis.legend()
    paths.append(_save(figure, folder / "pr.png"))

    figure, axis = _subplots(5, 5)
    top = 0.0
    for name, scores in curves.items():
        mean, rate, _ = calibration_bins(np.asarray(scores, float), np.asarray(labels, float), 15)
        axis.plot(mean, rate, marker="o", label=name)
        top = max(top, float(mean.max()), float(rate.max()))
    axis.plot([0, top], [0, top], color="grey", linestyle=":", label="perfect")
    axis.set(xlabel="mean predicted probability", ylabel="observed purchase rate",
             title="calibration (holdout, 15 equal-count bins)")
    axis.legend()
    paths.append(_save(figure, folder / "calibration.png"))
    return paths


def importance_plot(folder: Path, importance: dict[str, float], top: int = 20) -> Path:
    """Horizontal bars of the ``top`` features by total gain."""
    items = list(importance.items())[:top][::-1]
    figure, axis = _subplots(7, 0.3 * len(items) + 1.5)
    axis.barh([name for name, _ in items], [value for _, value in items])
    axis.set(xlabel="total gain", title="XGBoost feature importance")
    return _save(figure, folder / "feature_importance.png")


def attention_plot(folder: Path, candidates: np.ndarray, sequences: np.ndarray, weights: np.ndarray) -> Path:
    """A heat map of attention weights: one row per example, one column per recent item (newest right).

    Cells where the recent item is the candidate product itself are marked with a dot.
    """
    figure, axis = _subplots(9, 0.4 * len(candidates) + 1.5)
    masked = np.where(sequences == 0, np.nan, weights)
    image = axis.imshow(masked, aspect="auto", cmap="viridis")
    same = np.argwhere((sequences == candidates[:, None]) & (sequences != 0))
    axis.scatter(same[:, 1], same[:, 0], s=12, color="red", label="the candidate product")
    axis.set(xlabel="recent items (oldest left, newest right)", ylabel="example",
             yticks=range(len(candidates)), yticklabels=[str(c) for c in candidates],
             title="DIN attention weights over the recent products, per candidate")
    axis.legend(loc="upper left", fontsize=7)
    figure.colorbar(image, ax=axis)
    return _save(figure, folder / "attention_weights.png")
