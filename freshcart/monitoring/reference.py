"""The reference sample: model inputs, scores and labels stored with every trained model version.

Training logs a seeded sample of the rows the model was *not* fitted on (validation
and holdout: the latest data before serving, with honest scores) as the run artifact
``monitoring/reference.parquet``. Monitoring reads the champion's own sample, so drift
is judged against the data that version learnt from, not against a guess.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from freshcart.settings import Settings
from freshcart.training.data import ABSOLUTE_TIME_COLUMNS, LIST_COLUMNS, model_input_columns

log = logging.getLogger(__name__)
ARTIFACT_DIR = "monitoring"
ARTIFACT_NAME = "reference.parquet"
CATEGORICAL_COLUMNS = ("product_id", "category_id")
"""Inputs judged as categories (their values are ids, not magnitudes)."""
SCORE = "score"


class ReferenceError(LookupError):
    """No reference sample for a model version; the message says which and what to do."""


def monitored_columns() -> list[str]:
    """The model inputs whose drift is judged: every input but the sequences and absolute times (40)."""
    return [c for c in model_input_columns() if c not in LIST_COLUMNS and c not in ABSOLUTE_TIME_COLUMNS]


def sample_rows(table: pa.Table, max_rows: int, seed: int) -> pa.Table:
    """At most ``max_rows`` rows, drawn without replacement with ``seed``, in their original order."""
    if table.num_rows <= max_rows:
        return table
    picked = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=max_rows, replace=False))
    return table.take(pa.array(picked))


def reference_sample(rows: pa.Table, scores: np.ndarray, max_rows: int, seed: int) -> pa.Table:
    """The stored columns of ``rows`` (time, monitored inputs, label) with their ``scores``, sampled."""
    if len(scores) != rows.num_rows:
        raise ValueError(f"reference sample: {len(scores)} scores for {rows.num_rows} rows; score every row")
    columns = {"event_time": rows["event_time"]}
    for name in monitored_columns():
        columns[name] = rows[name] if name in CATEGORICAL_COLUMNS else pc.cast(rows[name], pa.float64())
    columns["label"] = rows["label"]
    columns[SCORE] = pa.array(np.asarray(scores, dtype=np.float64))
    return sample_rows(pa.table(columns), max_rows, seed)


def log_reference(rows: pa.Table, score: Callable[[pa.Table], np.ndarray], max_rows: int, seed: int) -> int:
    """Sample ``rows``, score the sample and log it as an artifact of the active MLflow run; rows logged."""
    import mlflow

    picked = sample_rows(rows, max_rows, seed)
    sample = reference_sample(picked, np.asarray(score(picked)), max_rows, seed)
    with tempfile.TemporaryDirectory(prefix="freshcart-reference-") as tmp:
        path = Path(tmp) / ARTIFACT_NAME
        pq.write_table(sample, path, compression="zstd")
        mlflow.log_artifact(str(path), artifact_path=ARTIFACT_DIR)
    return sample.num_rows


@dataclass
class Reference:
    """A model version's reference sample and the holdout figures it is judged against."""

    version: str
    run_id: str
    model_type: str
    table: pa.Table
    holdout: dict[str, float]


def cache_path(settings: Settings, version: str) -> Path:
    return settings.data_dir / "monitoring" / "reference" / f"v{version}.parquet"


def load_reference(settings: Settings, alias: str = "champion", client: Any = None,
                   version_number: str | None = None) -> Reference:
    """The reference of version ``version_number``, else of the version that holds ``alias`` (downloaded
    once, then read from the data dir)."""
    from mlflow.exceptions import MlflowException

    from freshcart.training.registry import connect

    client = client or connect(settings)
    try:
        if version_number is not None:
            version = client.get_model_version(settings.registered_model, str(version_number))
        else:
            version = client.get_model_version_by_alias(settings.registered_model, alias)
    except MlflowException as exc:
        wanted = f"version {version_number}" if version_number is not None else f"a version with alias {alias!r}"
        raise ReferenceError(f"model {settings.registered_model!r} has no {wanted}: "
                             "train and promote one first (`freshcart train`, `freshcart promote`)") from exc
    run = client.get_run(version.run_id)
    holdout = {k.removeprefix("holdout_"): float(v) for k, v in run.data.metrics.items() if k.startswith("holdout_")}
    path = cache_path(settings, str(version.version))
    if not path.is_file():
        import mlflow.artifacts

        try:
            with tempfile.TemporaryDirectory(prefix="freshcart-reference-") as tmp:
                local = mlflow.artifacts.download_artifacts(run_id=version.run_id,
                                                            artifact_path=f"{ARTIFACT_DIR}/{ARTIFACT_NAME}",
                                                            dst_path=tmp, tracking_uri=settings.tracking_uri)
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(pq.read_table(local), path, compression="zstd")
        except (MlflowException, OSError) as exc:
            raise ReferenceError(f"version {version.version} of {settings.registered_model!r} (run "
                                 f"{version.run_id}) has no {ARTIFACT_DIR}/{ARTIFACT_NAME}: it was trained "
                                 "before monitoring existed; train a new version") from exc
    return Reference(version=str(version.version), run_id=version.run_id,
                     model_type=str(version.tags.get("model_type", "")), table=pq.read_table(path), holdout=holdout)
