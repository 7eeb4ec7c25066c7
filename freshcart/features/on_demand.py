"""On-demand features: computed at request time from a candidate and the stored user features.

One function serves the Feast on-demand feature view (``feature_repo/``), the
fast training-set path and the online scorer, so all three agree.
"""

from __future__ import annotations

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


def on_demand_features(frame: pd.DataFrame) -> pd.DataFrame:
    """``price_vs_user_avg``, ``category_in_user_top3``, ``seconds_since_last_event`` of each row.

    ``frame`` holds the :data:`INPUTS` columns; missing user features give
    null ratios and 0 for the top-3 flag.
    """
    avg = pd.to_numeric(frame["avg_purchase_price_30d"], errors="coerce").astype("float64")
    price = pd.to_numeric(frame["request_price"], errors="coerce").astype("float64")
    ratio = (price / avg.where(avg > 0)).astype("float64")
    last = pd.to_numeric(frame["last_event_ts"], errors="coerce").astype("float64")
    since = pd.to_numeric(frame["request_ts"], errors="coerce").astype("float64") - last
    in_top = [_in_top(c, k) for c, k in zip(frame["top_categories_30d"], frame["request_category_id"])]
    return pd.DataFrame({
        "price_vs_user_avg": ratio.to_numpy(),
        "category_in_user_top3": np.asarray(in_top, dtype=np.int64),
        "seconds_since_last_event": since.to_numpy(),
    }, index=frame.index)
