"""Replay results into MLflow: one run of FreshCart's tracking store per replay."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from freshcart.settings import Settings

METRIC_COLUMNS_SKIPPED = ("recommender", "event_type")


def metric_name(recommender: str, event_type: str, column: str) -> str:
    """``item-knn.purchase.ndcg_at_10``: MLflow metric names take no ``@``."""
    return re.sub(r"[^0-9A-Za-z_\-./ ]", "_", f"{recommender}.{event_type}.{column.replace('@', '_at_')}")


def log_to_mlflow(settings: Settings, results: pa.Table, model_version: str | None = None) -> str:
    """Log a replay table (from ``evaluate_recommendations``) as one MLflow run; returns the run id.

    Every cell becomes a metric ``<recommender>.<event_type>.<column>``; the period and
    sizes are parameters; the table itself is an artifact (``recommendation_replay.csv``).
    ``model_version`` (the ranker's registered version, when one took part) is a tag.
    """
    import mlflow  # heavy: only when logging

    from freshcart.training.registry import connect

    missing = [c for c in METRIC_COLUMNS_SKIPPED if c not in results.column_names]
    if missing:
        raise ValueError(f"the results lack the columns {missing}; pass the table evaluate_recommendations returns")
    connect(settings)
    metadata = {key.decode(): value.decode() for key, value in (results.schema.metadata or {}).items()}
    metrics: dict[str, float] = {}
    for row in results.to_pylist():
        for column, value in row.items():
            if column not in METRIC_COLUMNS_SKIPPED and isinstance(value, (int, float)):
                metrics[metric_name(str(row["recommender"]), str(row["event_type"]), column)] = float(value)
    with mlflow.start_run(run_name="recommendation replay") as run:
        mlflow.set_tags({"freshcart.kind": "recommendation-replay",
                         "model_version": model_version if model_version is not None else "none"})
        mlflow.log_params(metadata)
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "recommendation_replay.csv"
            pacsv.write_csv(results.replace_schema_metadata(None), path)
            mlflow.log_artifact(str(path))
        return run.info.run_id
