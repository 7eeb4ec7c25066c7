"""On-demand features: computed at request time from a candidate and the stored user features.

One function serves the Feast on-demand feature view (``feature_repo/``), the
fast training-set path and the online scorer, so all three agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

INPUTS = ("avg_purchase_price_30d", "top_categories_30d", "last_event_ts",
          "request_price", "request_category_id", "request_ts")


def _in_top(categories: object, category: object) -> int:
    if categories is None or category is None or (isinstance(category, float) and np.isnan(category)):
        return 0
    try:
        return int(int(category) in list(categories))
    except TypeError:  # a missing list arrives as NaN
        return 0


def _floats(values: Any) -> np.ndarray:
    """A column as float64, NaN where it is missing or not a number (``pd.to_numeric(errors="coerce")``)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return values.astype(np.float64, copy=False)
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def on_demand_columns(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``price_vs_user_avg``, ``category_in_user_top3``, ``seconds_since_last_event`` of each row.

    ``columns`` maps each of :data:`INPUTS` to a column (a pandas Series, a numpy array or a
    list); missing user features give null ratios and 0 for the top-3 flag. The scorer passes
    numpy arrays (no frame to build per request); Feast and the training sets go through
    :func:`on_demand_features`.
    """
    avg = _floats(columns["avg_purchase_price_30d"])
    price = _floats(columns["request_price"])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = price / np.where(avg > 0, avg, np.nan)
    since = _floats(columns["request_ts"]) - _floats(columns["last_event_ts"])
    in_top = [_in_top(c, k) for c, k in zip(columns["top_categories_30d"], columns["request_category_id"])]
    return {
        "price_vs_user_avg": ratio,
        "category_in_user_top3": np.asarray(in_top, dtype=np.int64),
        "seconds_since_last_event": since,
    }


def on_demand_features(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`on_demand_columns` of a frame, as a frame with the same index (Feast's on-demand view)."""
    return pd.DataFrame(on_demand_columns(frame), index=frame.index)
