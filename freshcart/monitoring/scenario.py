"""Simulated traffic with drift, scored and logged the way the scoring service logs it.

Used by the drift tests, the benchmark and the demo: a small shop is simulated with
one of the simulator's drift knobs turned on at ``onset``; its views get the
features the service reads (the point-in-time training-set rows: the same feature
definitions); a model trained on the views before the onset scores every view, and
each view becomes one /predict record of the serving package's prediction log
(:func:`freshcart.serving.prediction_log.encode_record`), landed in the offline store
by :func:`freshcart.serving.ingest.upsert_predictions` exactly as the Kafka ingest lands it.

Once a champion is registered, the windows are scored by the scoring service's own model
reload (:class:`ServedModel`): the service's :class:`~freshcart.serving.model.ModelHolder`
on the shop's MLflow registry, checked by a watcher thread every ``serving_reload_seconds``
as the service's ``freshcart-model-watch`` thread checks it, so the version that scores a
window (and is logged as its ``model_version``) is the one the service would be serving.
The features stay the point-in-time rows: a running service reads an online store, which
holds only each key's latest values, not those of a past window.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshcart import storage
from freshcart.features.tables import build_feature_tables
from freshcart.monitoring.reference import Reference, reference_sample
from freshcart.serving.background import run_every
from freshcart.serving.ingest import predictions_dir, upsert_predictions
from freshcart.serving.model import ModelHolder, ModelInfo, ServingModel
from freshcart.serving.prediction_log import PredictionRecord, decode_record, encode_record
from freshcart.settings import Settings
from freshcart.simulator import DriftConfig, SimulationConfig, write_simulation
from freshcart.training.data import load_or_build, model_input_columns, split_by_time, tabular_matrix
from freshcart.training.evaluate import PopularityBaseline, evaluate_scores
from freshcart.training.train import split_table, xgboost_params
from freshcart.training.xgb_model import train_xgboost

START = datetime(2025, 1, 6, tzinfo=timezone.utc)
WARM_UP_DAYS = 7
"""Days simulated before the training views, so that the 7-day features are warm when training starts."""
ONSET = START + timedelta(days=WARM_UP_DAYS + 2, hours=12)
"""Drift starts two days after the warm-up; the model learns from the views of the day and a half before."""
REFERENCE_SHARE = 0.25
"""Validation and holdout share each (the reference is both: a full day of views the model was not fitted on)."""
REQUEST_MINUTES = 10
"""A shopper's views within this many minutes are scored in one /predict request."""
DRIFT_KINDS: dict[str, dict[str, Any]] = {
    "price_inflation": {"price_inflation": 0.3},
    "category_shift": {"category_shift": 0.6},
    "new_products": {"new_products": 150},
    "bot_traffic": {"bot_share": 0.3},
}


@dataclass
class Scenario:
    """A simulated shop, its pre-onset model and reference, and the onset of the drift (if any)."""

    settings: Settings
    kind: str
    onset: datetime
    views: pa.Table
    model: Any
    reference: Reference


def drift_config(kind: str, onset: datetime = ONSET) -> DriftConfig:
    if kind == "none":
        return DriftConfig()
    if kind not in DRIFT_KINDS:
        raise ValueError(f"drift kind {kind!r}: use none or one of {', '.join(DRIFT_KINDS)}")
    return DriftConfig(drift_from=onset, **DRIFT_KINDS[kind])


def onset_after(warm_up_days: int) -> datetime:
    """The onset of the drift when ``warm_up_days`` are simulated first (:data:`ONSET` for the default)."""
    return START + timedelta(days=warm_up_days + 2, hours=12)


def build_scenario(settings: Settings, kind: str, seed: int = 11, users: int = 1_500, products: int = 600,
                   events_per_day: int = 20_000, days: int | None = None,
                   warm_up_days: int = WARM_UP_DAYS) -> Scenario:
    """Simulate ``days`` days (default: the warm-up and four more) with drift ``kind`` from two and a half
    days after ``warm_up_days`` of warm-up; train XGBoost on the views of the warmed-up days before the onset
    (minus a horizon, for their labels). A longer warm-up lets the slow (30-day) features settle first."""
    onset = onset_after(warm_up_days)
    days = warm_up_days + 4 if days is None else days
    if days <= warm_up_days + 2:
        raise ValueError(f"days={days}: simulate more than warm_up_days + 2 = {warm_up_days + 2} days (the model "
                         "trains on the two days after the warm-up)")
    config = SimulationConfig(seed=seed, users=users, products=products, days=days, events_per_day=events_per_day,
                              start=START, drift=drift_config(kind, onset))
    write_simulation(config, settings.offline_events_dir)
    dates = storage.list_partitions(settings.offline_events_dir)
    build_feature_tables(settings, dates[0], dates[-1])
    views, _, _ = load_or_build(settings, dates[warm_up_days - 1], dates[days - 1])
    before = views.filter(pc.less(views["event_time"], pa.scalar(onset - timedelta(hours=settings.horizon_hours),
                                                                   pa.timestamp("us", tz="UTC"))))
    split = split_by_time(before, REFERENCE_SHARE, REFERENCE_SHARE)
    train, validation, holdout = split_table(before, split)
    train_x, names = tabular_matrix(train)
    val_x, _ = tabular_matrix(validation)
    model = train_xgboost(train_x, train["label"].to_numpy(), val_x, validation["label"].to_numpy(), names,
                          xgboost_params(settings))
    unseen = pa.concat_tables([validation, holdout])
    sample = reference_sample(unseen, model.predict(unseen), settings.monitor_reference_rows, settings.training_seed)
    report = evaluate_scores(settings, holdout, model.predict(holdout), PopularityBaseline.fit(train))
    reference = Reference(version="1", run_id="", model_type="xgboost", table=sample, holdout=dict(report.model))
    return Scenario(settings, kind, onset, views, model, reference)


class ServedModel:
    """The scoring service's model reload over the shop's registry, for scoring the scenario's rows.

    The service's :class:`~freshcart.serving.model.ModelHolder` (``check`` looks the alias
    ``serving_model_alias`` up and loads a new version beside the old one before swapping;
    ``current`` is what a request scores with) and a watcher thread that calls ``check`` every
    ``serving_reload_seconds``, as ``ScoringService``'s ``freshcart-model-watch`` thread does. The
    columns the holder may let a model read are those the scenario's rows supply (every model
    input). Nothing is restarted when the alias moves: the holder swaps the new version in."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.holder = ModelHolder(settings, set(model_input_columns()), self._event)
        self.loads: list[tuple[float, str]] = []
        """``(time.monotonic(), version)`` of every version the holder swapped in."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _event(self, kind: str, info: ModelInfo | None) -> None:
        if kind == "loaded" and info is not None:
            self.loads.append((time.monotonic(), info.version))

    def start(self, watch: bool = True) -> ServingModel:
        """The first check (as the service's start does), then the watcher thread (unless ``watch`` is
        False); the model loaded."""
        self.holder.check()
        if self.holder.current is None:
            raise RuntimeError(f"the serving model holder loaded nothing: {self.holder.last_error}")
        if not watch:
            return self.holder.current
        self._thread = run_every("freshcart-model-watch", self.settings.serving_reload_seconds, self.holder.check,
                                 self._stop)
        return self.holder.current

    @property
    def current(self) -> ServingModel:
        """The model a request would score with now (taken once per window)."""
        if self.holder.current is None:
            raise RuntimeError("the serving model holder is not started: call start() first")
        return self.holder.current

    def wait_for(self, version: str, timeout: float) -> float:
        """Seconds until the watcher has swapped ``version`` in; TimeoutError naming what it serves instead."""
        began = time.monotonic()
        while self.current.info.version != str(version):
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"the serving model holder still serves v{self.current.info.version}, not "
                                   f"v{version}, {timeout:.0f} s after the alias moved (last error: "
                                   f"{self.holder.last_error})")
            time.sleep(0.1)
        return time.monotonic() - began

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> "ServedModel":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def register_champion(scenario: Scenario) -> str:
    """Train XGBoost on the scenario's pre-onset views through MLflow (reference sample included), make
    it the champion, and score the scenario with it from then on, loaded by the service's model holder
    (:meth:`ServedModel.start`, without the watcher); the version."""
    from freshcart.monitoring.reference import load_reference
    from freshcart.training.registry import CHAMPION, connect
    from freshcart.training.train import train_model

    settings = scenario.settings
    first = scenario.views["event_time"][0].as_py().date()
    last = (scenario.onset - timedelta(hours=settings.horizon_hours)).date()
    result = train_model(settings, "xgboost", first, last)
    connect(settings).set_registered_model_alias(settings.registered_model, CHAMPION, result.version)
    scenario.model = ServedModel(settings).start(watch=False)
    scenario.reference = load_reference(settings)
    return result.version


def serve_views(settings: Settings, views: pa.Table, model: Any, start: datetime, end: datetime,
                version: str | None = None) -> int:
    """Score the views of [start, end) and land one /predict record per view; rows landed.

    ``model`` is a :class:`~freshcart.serving.model.ServingModel` (what the service's holder serves: it
    reads the columns of its signature and its records carry its own version, name and run) or any model
    with ``predict(rows)``, logged as ``version`` (default 1)."""
    moment = pa.timestamp("us", tz="UTC")
    rows = views.filter(pc.and_(pc.greater_equal(views["event_time"], pa.scalar(start, moment)),
                                pc.less(views["event_time"], pa.scalar(end, moment))))
    if rows.num_rows == 0:
        return 0
    inputs = rows.select(model_input_columns())
    if isinstance(model, ServingModel):
        if version is not None and version != model.info.version:
            raise ValueError(f"serve_views: version={version!r}, but the model given is v{model.info.version}; "
                             "leave version out (a served model logs its own)")
        info, scores = model.info, model.predict(rows.select(model.columns))
    else:
        info = ModelInfo(name=settings.registered_model, version=version or "1", alias="champion",
                         model_type="xgboost", run_id="")
        scores = model.predict(rows)
    users = rows["user_id"].to_numpy()
    times_us = pc.cast(pc.cast(rows["event_time"], moment), pa.int64()).to_numpy()
    bucket = times_us // (REQUEST_MINUTES * 60_000_000)
    order = np.lexsort((times_us, bucket, users))
    bounds = np.flatnonzero(np.diff(users[order]) | np.diff(bucket[order])) + 1
    decoded = []
    for group in np.split(order, bounds):
        first = rows["event_time"][int(group[0])].as_py()
        record = PredictionRecord(request_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{users[group[0]]}@{first}").hex,
                                  requested_at=first, endpoint="predict", user_id=int(users[group[0]]), model=info,
                                  inputs=inputs.take(pa.array(group)), scores=scores[group])
        decoded.append(decode_record(encode_record(record)))
    upsert_predictions(predictions_dir(settings), pa.concat_tables(decoded))
    return rows.num_rows
