"""Model inputs at request time, built as the training sets build their rows.

A training row (``freshcart.features.training_set``) holds the candidate's ids and
price, every stored feature as ``<view>__<feature>`` in the spec's Arrow type, and
the on-demand features from :func:`freshcart.features.on_demand.on_demand_columns`
over the same inputs (the user's average purchase price, top categories and latest
event time, the candidate's price and category, the request time in Unix seconds).
:func:`build_model_input` puts the online values into exactly that shape, so the
model's own input functions (``freshcart.training.data``: derived features, the
tabular matrix, the sequence codes) run on it unchanged; the skew test holds the
two equal column by column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from freshcart.features import spec
from freshcart.features.on_demand import on_demand_columns
from freshcart.serving.features import ViewRows

KEY_TYPES = {"product_id": pa.int64(), "category_id": pa.int64(), "price": pa.float64()}
USER_VIEWS = ("user_activity", "user_session")


@dataclass(frozen=True)
class Candidates:
    """The products to score, with the category and price each is scored at (None where unknown)."""

    product_ids: list[int]
    category_ids: list[int | None]
    prices: list[float | None]

    def __len__(self) -> int:
        return len(self.product_ids)


@dataclass
class OnlineRows:
    """The online rows behind one request: the user's views, each product's and each (user, category)'s."""

    user: dict[str, ViewRows]
    """``user_activity`` and ``user_session`` of the user (one key each)."""
    products: ViewRows
    """``product_activity``, one key per candidate."""
    user_categories: ViewRows
    """``user_category``, one key per candidate (the user and the candidate's category)."""

    def user_found(self) -> bool:
        return any(rows.found[0] for rows in self.user.values())

    def newest_user_time(self) -> datetime | None:
        times = [t for rows in (*self.user.values(), self.user_categories) if (t := rows.newest()) is not None]
        return max(times) if times else None

    def missing_views(self) -> list[str]:
        """Views with no row for this request (the user's views, or no candidate's row at all)."""
        missing = [name for name, rows in self.user.items() if not rows.found[0]]
        for rows in (self.products, self.user_categories):
            if not any(rows.found):
                missing.append(rows.view)
        return missing


def request_seconds(moment: datetime) -> float:
    """Unix seconds of a request time, computed as the training sets compute a view's (µs / 1e6)."""
    return (int(pd.Timestamp(moment).value) // 1000) / 1e6


TYPES = {(view.name, f.name): f.dtype for view in spec.VIEWS.values() for f in view.features}


def _column(view: str, feature: str, values: Sequence[Any]) -> pa.Array:
    return pa.array(values, type=TYPES[(view, feature)])


def build_model_input(candidates: Candidates, rows: OnlineRows, moment: datetime,
                      columns: Sequence[str]) -> pa.Table:
    """One row per candidate with ``columns`` (a model's inputs), in the training set's types.

    Stored features come from ``rows`` (a user value repeated on every row), on-demand ones from
    the shared function; a feature the rows lack is null, as in a training row without a feature row.
    Only the columns asked for are built.
    """
    n = len(candidates)
    wanted = set(columns)
    stored: dict[str, pa.Array] = {}
    for view, rows_ in rows.user.items():
        for feature in rows_.features:  # one value, repeated on every row
            if (name := f"{view}__{feature}") in wanted:
                stored[name] = pa.repeat(pa.scalar(rows_.values[feature][0], type=TYPES[(view, feature)]), n)
    for rows_ in (rows.products, rows.user_categories):
        for feature in rows_.features:
            if (name := f"{rows_.view}__{feature}") in wanted:
                stored[name] = _column(rows_.view, feature, rows_.values[feature])
    keys = {"product_id": lambda: pa.array(candidates.product_ids, type=pa.int64()),
            "category_id": lambda: pa.array(candidates.category_ids, type=pa.int64()),
            "price": lambda: pa.array(candidates.prices, type=pa.float64())}
    on_demand = f"{spec.ON_DEMAND.name}__"
    if any(name.startswith(on_demand) for name in wanted):
        for name, values in on_demand_columns(_on_demand_inputs(candidates, rows, moment)).items():
            stored[on_demand + name] = pa.array(values, from_pandas=True)
    out: dict[str, pa.Array] = {}
    for name in columns:
        if name in keys:
            out[name] = keys[name]()
        elif name in stored:
            out[name] = stored[name]
        else:
            out[name] = pa.nulls(n, type=declared_type(name))
    return pa.table(out)


def _on_demand_inputs(candidates: Candidates, rows: OnlineRows, moment: datetime) -> dict[str, Any]:
    """The inputs of :func:`on_demand_columns` for every candidate: the shopper's values repeated."""
    n = len(candidates)
    activity = rows.user["user_activity"].values

    def user_value(feature: str) -> Any:
        """The shopper's value of a served user_activity feature (None without one)."""
        return activity.get(feature, [None])[0]

    def repeated(value: Any) -> np.ndarray:
        return np.full(n, np.nan if value is None else float(value), dtype=np.float64)

    return {
        "avg_purchase_price_30d": repeated(user_value("avg_purchase_price_30d")),
        "top_categories_30d": [user_value("top_categories_30d")] * n,
        "last_event_ts": repeated(user_value("last_event_ts")),
        "request_price": np.array([np.nan if p is None else p for p in candidates.prices], dtype=np.float64),
        "request_category_id": list(candidates.category_ids),
        "request_ts": np.full(n, request_seconds(moment)),
    }


def declared_type(column: str) -> pa.DataType:
    """The Arrow type of a feature column from the specs (float64 for an unknown name)."""
    view, _, feature = column.partition("__")
    every = {**spec.VIEWS, spec.ON_DEMAND.name: spec.ON_DEMAND}
    if view in every and feature in every[view].feature_names:
        return next(f.dtype for f in every[view].features if f.name == feature)
    return KEY_TYPES.get(column, pa.float64())
