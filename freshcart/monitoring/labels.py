"""Feedback labels: served predictions joined with what shoppers bought afterwards.

A prediction of (user, product) made at t is labelled 1 when that user bought that
product in (t, t + horizon]. A window [start, end) is labelled only once it is
*closed*: its last prediction's horizon has passed by the task's ``as_of`` (the end
of its data interval, never the wall clock), and the events up to then are in the
offline store. Until then it is *open* and nothing is written for it. Labels are
written per window (``<data>/monitoring/labels/window=<start>/data.parquet``,
replaced whole), so re-running a window leaves identical content.

Recommendations: the log holds every ranked candidate; the products served are the
top ``k`` by score of each request. Their hit rate is the share of served products
bought within the horizon, and the request hit rate the share of requests with at
least one.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from freshcart.settings import Settings

SERVED_K = 10
LABEL_COLUMNS = ("request_id", "position", "requested_at", "endpoint", "user_id", "product_id", "score",
                 "model_version", "label", "bought_at")


def label_predictions(predictions: pd.DataFrame, purchases: pd.DataFrame, horizon: timedelta) -> pd.DataFrame:
    """``predictions`` (request_id, position, requested_at, endpoint, user_id, product_id, score, ...) with
    ``label`` (1 when the user bought the product in (requested_at, requested_at + horizon]) and
    ``bought_at`` (that first purchase, else NaT). ``purchases``: user_id, product_id, event_time."""
    left = predictions.copy()
    left["requested_at"] = pd.to_datetime(left["requested_at"], utc=True).astype("datetime64[us, UTC]")
    left["_row"] = np.arange(len(left))
    right = purchases[["user_id", "product_id", "event_time"]].rename(columns={"event_time": "bought_at"})
    right = right.assign(bought_at=pd.to_datetime(right["bought_at"], utc=True).astype("datetime64[us, UTC]"))
    right = right.astype({"user_id": "int64", "product_id": "int64"}).sort_values("bought_at")
    left = left.astype({"user_id": "int64", "product_id": "int64"}).sort_values("requested_at")
    joined = pd.merge_asof(left, right, left_on="requested_at", right_on="bought_at", by=["user_id", "product_id"],
                           direction="forward", allow_exact_matches=False)
    hit = joined["bought_at"].notna() & (joined["bought_at"] <= joined["requested_at"] + horizon)
    joined["label"] = hit.astype("int8")
    joined.loc[~hit, "bought_at"] = pd.NaT
    return joined.sort_values("_row").drop(columns="_row").reset_index(drop=True)


def served_top_k(labelled: pd.DataFrame, k: int = SERVED_K) -> pd.DataFrame:
    """The recommendation rows that were served: the ``k`` highest scores of each request."""
    recs = labelled[labelled["endpoint"] == "recommend"]
    if recs.empty:
        return recs
    rank = recs.groupby("request_id")["score"].rank(method="first", ascending=False)
    return recs[rank <= k]


def hit_rates(labelled: pd.DataFrame, k: int = SERVED_K) -> dict[str, float]:
    """Hit rate of the served recommendations (per product and per request) and how many were served."""
    served = served_top_k(labelled, k)
    if served.empty:
        return {"served": 0.0, "requests": 0.0, "hit_rate": float("nan"), "request_hit_rate": float("nan")}
    per_request = served.groupby("request_id")["label"].max()
    return {"served": float(len(served)), "requests": float(len(per_request)),
            "hit_rate": float(served["label"].mean()), "request_hit_rate": float(per_request.mean())}


@dataclass
class WindowLabels:
    """What labelling one window did."""

    start: datetime
    end: datetime
    status: str
    """``closed`` (labelled), ``open`` (horizon not passed by as_of: nothing written) or ``empty``."""
    closes_at: datetime
    rows: int = 0
    positives: int = 0
    hits: dict[str, float] = field(default_factory=dict)
    path: Path | None = None


def labels_path(settings: Settings, start: datetime) -> Path:
    return settings.data_dir / "monitoring" / "labels" / f"window={start.strftime('%Y-%m-%dT%H%M')}" / "data.parquet"


def window_closes_at(settings: Settings, end: datetime) -> datetime:
    return end + timedelta(hours=settings.horizon_hours)


def label_window(settings: Settings, predictions: pd.DataFrame, purchases: pd.DataFrame, start: datetime,
                 end: datetime, as_of: datetime) -> WindowLabels:
    """Label the predictions of [start, end) once the window is closed at ``as_of``; write them (replacing)."""
    closes_at = window_closes_at(settings, end)
    if as_of < closes_at:
        return WindowLabels(start, end, "open", closes_at)
    if predictions.empty:
        return WindowLabels(start, end, "empty", closes_at)
    labelled = label_predictions(predictions, purchases, timedelta(hours=settings.horizon_hours))
    keep = [c for c in LABEL_COLUMNS if c in labelled.columns]
    path = labels_path(settings, start)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex}.tmp")
    pq.write_table(pa.Table.from_pandas(labelled[keep], preserve_index=False), tmp, compression="zstd")
    os.replace(tmp, path)
    views = labelled[labelled["endpoint"] == "predict"]
    return WindowLabels(start, end, "closed", closes_at, rows=len(labelled), positives=int(views["label"].sum()),
                        hits=hit_rates(labelled), path=path)


def read_labels(settings: Settings, start: datetime) -> pd.DataFrame | None:
    """The labelled predictions of the window starting at ``start``, or None while it is unlabelled."""
    path = labels_path(settings, start)
    return pq.read_table(path).to_pandas() if path.is_file() else None


def served_version(labelled: pd.DataFrame) -> str | None:
    """The model version that served most of a window's /predict rows (the prediction log records it)."""
    if "model_version" not in labelled or labelled.empty:
        return None
    views = labelled[labelled["endpoint"] == "predict"] if "endpoint" in labelled else labelled
    counts = views["model_version"].dropna().astype(str).value_counts()
    return str(counts.index[0]) if len(counts) else None
