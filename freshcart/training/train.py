"""Training a propensity model end to end, tracked in MLflow.

:func:`train_model` reads (or builds) the point-in-time training set, splits it
by time, trains the chosen model with early stopping on the validation part,
evaluates it on the holdout against the popularity baseline and the oracle,
and logs everything to one MLflow run: parameters, metrics, lineage (feature
services, time range, a hash of the training data), the environment, plots, and
the model (a ``pyfunc`` with signature and input example) as a new version of
the registered model, which then holds the ``challenger`` alias. Started by
``mlflow run`` (``training/MLproject``), it logs into the run MLflow started
(``MLFLOW_RUN_ID``) once :func:`check_project_run` has found it usable.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import mlflow
import numpy as np
import pyarrow as pa
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from freshcart.monitoring.reference import log_reference
from freshcart.settings import Settings
from freshcart.training import plots
from freshcart.training.data import FEATURE_SERVICES, TimeSplit, data_hash, load_or_build, read_training_set, \
    split_by_time, tabular_matrix
from freshcart.training.din_model import DINParams
from freshcart.training.evaluate import EvaluationReport, PopularityBaseline, evaluate_scores
from freshcart.training.pyfunc import MODEL_TYPES, input_frame, signature
from freshcart.training.registry import CHALLENGER, connect, environment_tags, pip_requirements, register_version, \
    set_version_tags
from freshcart.training.xgb_model import XGBoostParams

if TYPE_CHECKING:
    from freshcart.training.din_train import EpochReport

MODEL_CODE = Path(__file__).with_name("model_code.py")
"""The registered model's code (MLflow models from code: rebuilt at load, never unpickled)."""

Progress = Callable[[float, float, str], None]
ATTENTION_EXAMPLES = 12


@dataclass
class TrainResult:
    """What one training run produced: the run, the registered version, the holdout figures."""

    model_type: str
    run_id: str
    version: str
    training_set: Path
    start: date | None
    end: date | None
    split: TimeSplit
    rows: dict[str, int]
    report: EvaluationReport
    train_seconds: float
    details: dict[str, Any] = field(default_factory=dict)


def xgboost_params(settings: Settings) -> XGBoostParams:
    """XGBoost hyper-parameters from the settings."""
    return XGBoostParams(max_rounds=settings.xgb_max_rounds, threads=settings.training_threads,
                         seed=settings.training_seed)


def din_params(settings: Settings) -> DINParams:
    """Attention-model hyper-parameters from the settings."""
    return DINParams(max_epochs=settings.din_max_epochs, patience=settings.din_patience,
                     batch_size=settings.din_batch_size, device=settings.din_device, seed=settings.training_seed,
                     threads=settings.training_threads)


def split_table(table: pa.Table, split: TimeSplit) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The train, validation and holdout rows of ``table``."""
    return tuple(table.filter(pa.array(mask)) for mask in split.masks(table))  # type: ignore[return-value]


def _fit(model_type: str, settings: Settings, train: pa.Table, validation: pa.Table,
         progress: Progress | None, on_epoch: Callable[[EpochReport], None] | None = None
         ) -> tuple[Any, dict[str, Any], dict[str, list[float]], float, str]:
    """Train one model; returns it, its parameters, per-step histories, seconds and device."""
    if model_type == "xgboost":
        from freshcart.training.xgb_model import train_xgboost

        params = xgboost_params(settings)
        train_x, names = tabular_matrix(train)
        val_x, _ = tabular_matrix(validation)
        report = (lambda done, total: progress(done, total, "boosting rounds")) if progress else None
        model = train_xgboost(train_x, train["label"].to_numpy(), val_x, validation["label"].to_numpy(), names,
                              params, report)
        return model, {**asdict(params), "best_iteration": model.best_iteration}, model.history, \
            model.train_seconds, "cpu"
    if model_type == "din":
        import time

        from freshcart.training.din_train import train_din

        params = din_params(settings)
        started = time.perf_counter()
        model, din_log = train_din(train, validation, params,
                                   (lambda s, n, what: progress(s, n, what)) if progress else None, on_epoch)
        history = {"train_loss": din_log.train_loss, "validation_loss": din_log.validation_loss,
                   "epoch_seconds": din_log.epoch_seconds}
        return model, {**asdict(params), "best_epoch": din_log.best_epoch}, history, \
            time.perf_counter() - started, din_log.device
    raise ValueError(f"--model {model_type!r}: use one of {', '.join(MODEL_TYPES)}")


def _plots(folder: Path, model_type: str, model: Any, holdout: pa.Table, scores: np.ndarray,
           baseline: np.ndarray) -> None:
    labels = holdout["label"].to_numpy()
    plots.curve_plots(folder, labels, {model_type: scores, "popularity": baseline})
    if model_type == "xgboost":
        plots.importance_plot(folder, model.importance())
    else:
        positives = np.flatnonzero(labels == 1)[:ATTENTION_EXAMPLES // 2]
        negatives = np.flatnonzero(labels == 0)[:ATTENTION_EXAMPLES - len(positives)]
        sample = holdout.take(pa.array(np.concatenate([positives, negatives])))
        sequences, weights = model.attention_weights(sample)
        plots.attention_plot(folder, sample["product_id"].to_numpy(), sequences, weights)


def check_project_run(client: MlflowClient, settings: Settings, params: dict[str, str]) -> None:
    """When ``mlflow run`` started this process (``MLFLOW_RUN_ID``), check that FreshCart can log into that run:
    it is in FreshCart's tracking store and experiment, and the parameters MLflow logged agree with ``params``."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ValueError(f"MLFLOW_RUN_ID={run_id} (set by `mlflow run`) is no run of FreshCart's tracking store "
                         f"{settings.masked()['tracking_uri']}: run `mlflow run` with MLFLOW_TRACKING_URI set to "
                         "that store (see training/README.md)") from None
    experiment = client.get_experiment(run.info.experiment_id)
    if experiment.name != settings.mlflow_experiment:
        raise ValueError(f"MLFLOW_RUN_ID={run_id} is a run of the experiment {experiment.name!r}, FreshCart's "
                         f"runs go to {settings.mlflow_experiment!r} (FRESHCART_MLFLOW_EXPERIMENT): add "
                         f"`--experiment-name {settings.mlflow_experiment}` to `mlflow run`")
    for name, value in params.items():
        given = run.data.params.get(name)
        if given is not None and given != value:
            raise ValueError(f"-P {name}={given}: FreshCart logs {name} as {value!r}; pass -P {name}={value}")


def train_model(settings: Settings, model_type: str, start: date | None = None, end: date | None = None,
                training_set: Path | None = None, rebuild: bool = False, set_challenger: bool = True,
                progress: Progress | None = None,
                on_epoch: Callable[[EpochReport], None] | None = None) -> TrainResult:
    """Train ``model_type`` ('xgboost' or 'din') on ``[start, end)`` (or an existing ``training_set`` file),
    evaluate it on the time-based holdout, log the run and register the model (alias ``challenger``).

    ``progress(done, total, what)`` follows the steps; ``on_epoch`` gets each attention-model epoch's report."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"--model {model_type!r}: use one of {', '.join(MODEL_TYPES)}")
    if training_set is not None and start is None:
        table, path = read_training_set(training_set), training_set
    elif start is not None and end is not None:
        table, path, _ = load_or_build(settings, start, end, training_set, rebuild)
    else:
        raise ValueError("give --start and --end (the interval of views to train on) or --training-set")
    split = split_by_time(table, settings.training_validation_share, settings.training_holdout_share)
    train, validation, holdout = split_table(table, split)
    baseline = PopularityBaseline.fit(train)
    client = connect(settings)
    check_project_run(client, settings, {"start": str(start or ""), "end": str(end or "")})
    with mlflow.start_run(run_name=f"{model_type} {start or path.stem}..{end or ''}") as run:
        model, params, history, seconds, device = _fit(model_type, settings, train, validation, progress, on_epoch)
        scores = model.predict(holdout)
        report = evaluate_scores(settings, holdout, scores, baseline)
        lineage = {"feature_services": ",".join(FEATURE_SERVICES), "training_set": str(path),
                   "data_hash": data_hash(table), "start": str(start or ""), "end": str(end or ""),
                   "validation_start": split.validation_start.isoformat(),
                   "holdout_start": split.holdout_start.isoformat(), "horizon_hours": settings.horizon_hours,
                   "profile": settings.profile}
        mlflow.log_params({"model_type": model_type, **{f"model.{k}": v for k, v in params.items()}, **lineage,
                           "rows_train": train.num_rows, "rows_validation": validation.num_rows,
                           "rows_holdout": holdout.num_rows})
        mlflow.set_tags({**environment_tags(device), "model_type": model_type,
                         "lineage.data_hash": lineage["data_hash"], "lineage.feature_services": FEATURE_SERVICES})
        mlflow.log_metrics({**report.flat(), "train_seconds": seconds})
        for name, values in history.items():
            for step, value in enumerate(values):
                mlflow.log_metric(name, float(value), step=step)
        with tempfile.TemporaryDirectory(prefix="freshcart-train-") as tmp:
            folder = Path(tmp)
            _plots(folder / "plots", model_type, model, holdout, scores, baseline.predict(holdout))
            mlflow.log_artifacts(str(folder / "plots"), artifact_path="plots")
            model.save(folder / "model")
            logged = mlflow.pyfunc.log_model(
                name="model", python_model=str(MODEL_CODE), artifacts={"model": str(folder / "model")},
                model_config={"model_type": model_type, "device": "auto"}, signature=signature(),
                input_example=input_frame(holdout.slice(0, 5)), pip_requirements=pip_requirements())
        # the drift baseline of this version: rows it was not fitted on, with their scores
        log_reference(pa.concat_tables([validation, holdout]), model.predict, settings.monitor_reference_rows,
                      settings.training_seed)
        version = register_version(client, settings.registered_model, logged)
        set_version_tags(client, version, {"model_type": model_type, "holdout_start": lineage["holdout_start"],
                                           "training_set": str(path), "data_hash": lineage["data_hash"],
                                           f"holdout_{settings.promotion_metric}":
                                               report.model.get(settings.promotion_metric)})
        if set_challenger:
            client.set_registered_model_alias(settings.registered_model, CHALLENGER, version.version)
    return TrainResult(model_type=model_type, run_id=run.info.run_id, version=str(version.version),
                       training_set=path, start=start, end=end, split=split,
                       rows={"train": train.num_rows, "validation": validation.num_rows, "holdout": holdout.num_rows},
                       report=report, train_seconds=seconds, details={**params, "device": device})
