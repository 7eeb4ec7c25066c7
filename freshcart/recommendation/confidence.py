"""Confidence intervals of replay and propensity figures: the percentile bootstrap over shoppers.

Queries (and views) of one shopper are not independent draws: a shopper who buys
what they just viewed does so at every purchase. So the bootstrap resamples
*shoppers* with replacement (a cluster bootstrap) and recomputes the figure over
every row of each drawn shopper; the interval is the ``(1 - level) / 2`` and
``(1 + level) / 2`` percentiles of the draws. With few shoppers the interval is
wide, which is the point: a figure of a small sample is printed with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from freshcart.recommendation.metrics import CUTOFF, RECALL_AT

DRAWS = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A figure with its bootstrap interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def cluster_draws(clusters: np.ndarray, draws: int = DRAWS, seed: int = 0) -> list[np.ndarray]:
    """Row indices of ``draws`` bootstrap samples that resample whole clusters with replacement."""
    codes, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    if codes.shape[0] == 0:
        raise ValueError("the bootstrap needs at least one row; the sample is empty")
    order = np.argsort(inverse, kind="stable")
    offsets = np.zeros(codes.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(inverse, minlength=codes.shape[0]), out=offsets[1:])
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(draws):
        chosen = rng.integers(0, codes.shape[0], codes.shape[0])
        lengths = offsets[chosen + 1] - offsets[chosen]
        starts = np.repeat(offsets[chosen] - np.cumsum(lengths) + lengths, lengths)
        samples.append(order[starts + np.arange(int(lengths.sum()))])
    return samples


def interval(statistic: Callable[[np.ndarray], float], clusters: np.ndarray, draws: int = DRAWS,
             level: float = LEVEL, seed: int = 0, samples: list[np.ndarray] | None = None) -> Interval:
    """``statistic`` of all rows, with the percentile interval of its values over cluster-bootstrap draws.

    ``statistic`` takes row indices. A draw on which it is undefined (an AUC of a draw
    with one class only: it raises ``ValueError`` or returns NaN) is left out.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1 (0.95 for a 95% interval), got {level}")
    everything = np.arange(np.asarray(clusters).shape[0])
    values = []
    for rows in samples if samples is not None else cluster_draws(clusters, draws, seed):
        try:
            value = statistic(rows)
        except ValueError:
            continue
        if np.isfinite(value):
            values.append(value)
    if not values:
        raise ValueError("the statistic is undefined on every bootstrap draw; the sample is too small")
    low, high = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return Interval(float(statistic(everything)), float(low), float(high))


def per_query_values(ranks: np.ndarray, k: int = CUTOFF) -> dict[str, np.ndarray]:
    """Each rank metric of the replay as one value per query; the metric is their mean (see ``metrics``)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    values = {f"hr@{k}": (ranks <= k).astype(float), f"ndcg@{k}": np.where(ranks <= k, 1.0 / np.log2(ranks + 1), 0.0),
              "mrr": 1.0 / ranks}
    values.update({f"recall@{n}": (ranks <= n).astype(float) for n in RECALL_AT})
    return values


def rank_intervals(ranks: np.ndarray, users: np.ndarray, k: int = CUTOFF, draws: int = DRAWS,
                   level: float = LEVEL, seed: int = 0) -> dict[str, Interval]:
    """HR@k, NDCG@k, MRR and candidate recall of the queries' ``ranks``, with shopper-bootstrap intervals."""
    samples = cluster_draws(users, draws, seed)
    return {name: interval(lambda rows, v=values: float(v[rows].mean()), users, level=level, samples=samples)
            for name, values in per_query_values(ranks, k).items()}
