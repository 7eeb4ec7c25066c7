"""Per-column drift scores and thresholds calibrated on the reference itself.

A column's score is Evidently's statistic for it: the normed Wasserstein distance
for numbers (distance over the reference's standard deviation) and the
Jensen-Shannon distance for ids. A fixed 0.1 fits neither a column that varies a lot
from hour to hour nor one that never moves, so each column's threshold comes from the
reference: split into window-sized chunks by time, every chunk is scored against the
rest, and a column drifts when a window's score exceeds the highest chunk score by
``monitor_threshold_margin``. The model's score is judged the same way (prediction drift).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshcart.monitoring.reference import CATEGORICAL_COLUMNS, SCORE

MIN_CHUNKS = 4
MIN_VALUES = 20
"""A column with fewer values (not missing) in a window gets score 0: too few to judge."""
FLOOR = 1e-3
"""Smallest threshold: a column the reference never moves still needs a real change to drift."""


def wasserstein_norm(reference_sorted: np.ndarray, current: np.ndarray, reference_std: float) -> float:
    """Evidently's ``wasserstein`` statistic (scipy's first Wasserstein distance over max(std(reference),
    0.001)), computed from an already sorted reference; missing values are left out of ``current``."""
    current = np.sort(current[~np.isnan(current)])
    if len(current) < MIN_VALUES or len(reference_sorted) < MIN_VALUES:
        return 0.0
    values = np.concatenate([reference_sorted, current])
    values.sort(kind="mergesort")
    deltas = np.diff(values)
    ref_cdf = np.searchsorted(reference_sorted, values[:-1], side="right") / len(reference_sorted)
    cur_cdf = np.searchsorted(current, values[:-1], side="right") / len(current)
    return float(np.sum(np.abs(ref_cdf - cur_cdf) * deltas) / max(reference_std, 0.001))


def jensenshannon_ids(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's ``jensenshannon`` statistic of a categorical column (shares of each value, natural log)."""
    from scipy.spatial import distance

    if len(current) < MIN_VALUES or len(reference) < MIN_VALUES:
        return 0.0
    keys, codes = np.unique(np.concatenate([reference, current]), return_inverse=True)
    ref = np.bincount(codes[:len(reference)], minlength=len(keys)) / len(reference)
    cur = np.bincount(codes[len(reference):], minlength=len(keys)) / len(current)
    return float(distance.jensenshannon(ref, cur))


@dataclass
class PreparedColumn:
    """One reference column, ready to be compared with many windows."""

    categorical: bool
    values: np.ndarray
    """Sorted values without missing ones (numbers), or every value (ids)."""
    std: float


def prepare(reference: dict[str, np.ndarray], columns: list[str]) -> dict[str, PreparedColumn]:
    out = {}
    for c in columns:
        values = reference[c]
        if c in CATEGORICAL_COLUMNS:
            out[c] = PreparedColumn(True, values, 0.0)
        else:
            kept = np.sort(values[~np.isnan(values)])
            out[c] = PreparedColumn(False, kept, float(np.std(kept)) if len(kept) else 0.0)
    return out


def column_score(reference: PreparedColumn, current: np.ndarray) -> float:
    """The drift statistic of one column of a window against its prepared reference column."""
    if reference.categorical:
        return jensenshannon_ids(reference.values, current)
    return wasserstein_norm(reference.values, current, reference.std)


def as_arrays(table: pa.Table, columns: list[str]) -> dict[str, np.ndarray]:
    """Columns as compared: ids as int64; numbers float64 (NaN for missing) on the signed log scale
    ``sign(x) * log1p(|x|)``: counts, prices and spends are heavy-tailed, and on that scale a change by a
    factor (prices up 30%) is a shift that one busy hour's noise does not drown."""
    out: dict[str, np.ndarray] = {}
    for name in columns:
        column = table[name]
        if name in CATEGORICAL_COLUMNS:
            out[name] = pc.fill_null(pc.cast(column, pa.int64()), -1).to_numpy()
        else:
            values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
            out[name] = np.sign(values) * np.log1p(np.abs(values))
    return out


DERIVED = ("product_unseen", "price_vs_reference")
"""Columns derived against the reference: 1 when the product is absent from it, and the log of the price
over the product's median price in it (a catalogue-wide price change moves every product; NaN when unseen)."""


def derive(reference: dict[str, np.ndarray], current: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The :data:`DERIVED` columns of ``current`` against ``reference`` (both need product_id and price,
    price on the compared log scale)."""
    ref_products, ref_prices = reference["product_id"], reference["price"]
    keep = ~np.isnan(ref_prices)
    keys, codes = np.unique(ref_products[keep], return_inverse=True)
    order = np.lexsort((ref_prices[keep], codes))
    counts = np.bincount(codes, minlength=len(keys))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    medians = ref_prices[keep][order][starts + counts // 2]
    at = np.clip(np.searchsorted(keys, current["product_id"]), 0, max(len(keys) - 1, 0))
    seen = (keys[at] == current["product_id"]) if len(keys) else np.zeros(len(current["product_id"]), bool)
    gap = np.where(seen, current["price"] - (medians[at] if len(keys) else 0.0), np.nan)
    return {"product_unseen": (~seen).astype(np.float64), "price_vs_reference": gap}


def score_columns(reference: dict[str, np.ndarray] | dict[str, PreparedColumn], current: dict[str, np.ndarray],
                  columns: list[str]) -> dict[str, float]:
    """Every column's drift score of ``current`` against ``reference`` (raw arrays or prepared columns)."""
    prepared = {c: v if isinstance(v, PreparedColumn) else prepare({c: v}, [c])[c]
                for c, v in reference.items() if c in columns}
    return {c: column_score(prepared[c], current[c]) for c in columns}


@dataclass
class Thresholds:
    """Per-column drift thresholds and what they were calibrated on."""

    values: dict[str, float]
    chunk_max: dict[str, float]
    chunks: int
    chunk_rows: int


def time_chunks(times_us: np.ndarray, window: timedelta) -> list[np.ndarray]:
    """Row indices of each window-long slice of time (aligned to the epoch), in time order."""
    width = int(window.total_seconds() * 1_000_000)
    buckets = times_us // width
    order = np.argsort(buckets, kind="stable")
    bounds = np.flatnonzero(np.diff(buckets[order])) + 1
    return list(np.split(order, bounds))


def calibrate(reference: pa.Table, columns: list[str], window: timedelta, rows: int, margin: float,
              seed: int = 0) -> Thresholds:
    """Thresholds from the reference's own chunks: each window-long chunk (sampled down to ``rows``, the
    size of the windows it will judge) against the rest of the reference; threshold = max * (1 + margin)."""
    times = pc.cast(pc.cast(reference["event_time"], pa.timestamp("us", tz="UTC")), pa.int64()).to_numpy()
    arrays = as_arrays(reference, [c for c in columns if c not in DERIVED])
    chunks = [c for c in time_chunks(times, window) if len(c) >= MIN_VALUES]
    if len(chunks) < MIN_CHUNKS:
        raise ValueError(f"reference of {reference.num_rows} rows spans {len(chunks)} windows of {window}: "
                         f"calibration needs at least {MIN_CHUNKS}; train on a longer interval or shorten "
                         "FRESHCART_MONITOR_WINDOW")
    rng = np.random.default_rng(seed)
    worst = {c: 0.0 for c in columns}
    used_rows = 0
    for chunk in chunks:
        rest = np.ones(reference.num_rows, dtype=bool)
        rest[chunk] = False
        if len(chunk) > rows:
            chunk = np.sort(rng.choice(chunk, size=rows, replace=False))
        used_rows = max(used_rows, len(chunk))
        base = {c: a[rest] for c, a in arrays.items()}
        current = {c: a[chunk] for c, a in arrays.items()}
        base.update(derive(base, base))
        current.update(derive(base, current))
        scores = score_columns(prepare(base, columns), current, columns)
        for c, value in scores.items():
            worst[c] = max(worst[c], value)
    values = {c: max(FLOOR, v * (1.0 + margin)) for c, v in worst.items()}
    return Thresholds(values=values, chunk_max=worst, chunks=len(chunks), chunk_rows=used_rows)


@dataclass
class ColumnVerdict:
    column: str
    score: float
    threshold: float
    drifted: bool
    kind: str
    """``input`` or ``prediction`` (the model's score)."""


def judge(scores: dict[str, float], thresholds: Thresholds) -> list[ColumnVerdict]:
    """One verdict per column, the most drifted first (by score over threshold)."""
    verdicts = [ColumnVerdict(column=c, score=s, threshold=thresholds.values[c], drifted=s > thresholds.values[c],
                              kind="prediction" if c == SCORE else "input") for c, s in scores.items()]
    return sorted(verdicts, key=lambda v: v.score / v.threshold, reverse=True)
