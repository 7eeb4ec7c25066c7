"""What monitoring reads and writes on disk.

Reads: the served predictions (``<offline>/predictions/prediction_date=*/``) and
purchases (``<offline>/events/event_date=*/``) of an interval. Writes three tables
under ``<data>/monitoring/``, each upserted by its key so a re-run window replaces
its rows: ``windows.parquet`` (one row per window: rows, drifted share, figures,
alarm and its reasons), ``columns.parquet`` (one row per window and column: score,
threshold, drifted) and ``decisions.parquet`` (one row per verdict: retrain or not,
the reason, the run it triggered).
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from freshcart.settings import Settings

WINDOWS, COLUMNS, DECISIONS = "windows", "columns", "decisions"
KEYS = {WINDOWS: ["window_start"], COLUMNS: ["window_start", "column"], DECISIONS: ["window_start"]}


def monitoring_dir(settings: Settings) -> Path:
    return settings.data_dir / "monitoring"


def table_path(settings: Settings, name: str) -> Path:
    return monitoring_dir(settings) / f"{name}.parquet"


def read_table(settings: Settings, name: str) -> pd.DataFrame:
    """One monitoring table (empty when nothing was written yet), sorted by window."""
    path = table_path(settings, name)
    if not path.is_file():
        return pd.DataFrame(columns=KEYS[name])
    return pq.read_table(path).to_pandas().sort_values(KEYS[name]).reset_index(drop=True)


def upsert(settings: Settings, name: str, rows: pd.DataFrame) -> pd.DataFrame:
    """Replace the rows of ``rows``' keys in table ``name`` (atomically); the table after."""
    before = read_table(settings, name)
    frames = [f for f in (before, rows) if not f.empty]
    merged = pd.concat(frames, ignore_index=True) if frames else rows
    merged = merged.drop_duplicates(KEYS[name], keep="last").sort_values(KEYS[name]).reset_index(drop=True)
    path = table_path(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex}.tmp")
    pq.write_table(pa.Table.from_pandas(merged, preserve_index=False), tmp, compression="zstd")
    os.replace(tmp, path)
    return merged


def _dates(start: datetime, end: datetime) -> list[str]:
    days, day = [], start.date()
    while datetime.combine(day, datetime.min.time(), start.tzinfo) < end:
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def _read_range(root: Path, key: str, time_column: str, start: datetime, end: datetime,
                columns: list[str] | None = None) -> pa.Table | None:
    paths = [root / f"{key}={d}" / "data.parquet" for d in _dates(start, end)]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        return None
    dataset = ds.dataset([str(p) for p in paths], format="parquet")
    field = ds.field(time_column)
    moment = pa.timestamp("us", tz="UTC")
    return dataset.to_table(columns=columns, filter=(field >= pa.scalar(start, moment)) & (field < pa.scalar(end, moment)))


def read_predictions(settings: Settings, start: datetime, end: datetime) -> pa.Table | None:
    """Prediction rows requested in [start, end), every column, or None when none are landed."""
    table = _read_range(settings.offline_dir / "predictions", "prediction_date", "requested_at", start, end)
    return table if table is not None and table.num_rows else None


def read_purchases(settings: Settings, start: datetime, end: datetime) -> pd.DataFrame:
    """Purchases (user_id, product_id, event_time) in [start, end) from the offline event store."""
    table = _read_range(settings.offline_events_dir, "event_date", "event_time", start, end,
                        ["user_id", "product_id", "event_time", "event_type"])
    if table is None:
        return pd.DataFrame({"user_id": pd.Series(dtype="int64"), "product_id": pd.Series(dtype="int64"),
                             "event_time": pd.Series(dtype="datetime64[us, UTC]")})
    frame = table.to_pandas()
    return frame[frame["event_type"] == "purchase"].drop(columns="event_type")


def events_until(settings: Settings) -> datetime | None:
    """The latest event time in the offline event store (labels need events up to a window's horizon)."""
    days = sorted(p.name.split("=", 1)[1] for p in settings.offline_events_dir.glob("event_date=*"))
    if not days:
        return None
    table = pq.read_table(settings.offline_events_dir / f"event_date={days[-1]}" / "data.parquet",
                          columns=["event_time"])
    return pc.max(table["event_time"]).as_py()
