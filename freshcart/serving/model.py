"""The model the service scores with: the registered model's alias (``@champion``), checked, swapped atomically.

:func:`load_version` loads one version of the registered model (the ``pyfunc`` that
``freshcart train`` logs), reads the input columns of its signature and refuses it
when the online store cannot supply one of them, naming which. :class:`ModelHolder`
keeps the current model; a request takes it once (``holder.current``) and scores,
explains and reports with that object, so a swap never mixes two versions in one
response. :meth:`ModelHolder.check` looks the alias up and loads a new version
beside the old one before swapping; a failed load keeps the old model, is logged
and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from freshcart.settings import Settings

log = logging.getLogger(__name__)


class ModelRefused(ValueError):
    """A model version cannot be served here; the message names the version and the reason."""


class RegistryUnavailable(RuntimeError):
    """The MLflow registry did not answer or has no version under the alias; the message says which."""


@dataclass(frozen=True)
class ModelInfo:
    """What every response says about the model that scored it."""

    name: str
    version: str
    alias: str
    model_type: str
    run_id: str


@dataclass
class ServingModel:
    """A loaded version: the trained model (XGBoost or the attention model) and its input columns."""

    info: ModelInfo
    model: Any
    columns: list[str]
    loaded_at: float

    def predict(self, table: pa.Table) -> np.ndarray:
        """Purchase probabilities of model-input rows (the model's own input functions)."""
        return np.asarray(self.model.predict(table), dtype=np.float64)

    def predict_keeping_matrix(self, table: pa.Table) -> tuple[np.ndarray, tuple[np.ndarray, list[str]] | None]:
        """The probabilities and, for a model that scores the :func:`~freshcart.training.data.tabular_matrix`
        (XGBoost), that matrix and its names, which the ranker reads too (built once per request)."""
        names_trained = getattr(self.model, "feature_names", None)
        if hasattr(self.model, "predict_matrix") and names_trained is not None:
            from freshcart.training.data import tabular_matrix

            matrix, names = tabular_matrix(table)
            if names == names_trained:
                return np.asarray(self.model.predict_matrix(matrix), dtype=np.float64), (matrix, names)
        return self.predict(table), None  # the model's own predict (and its error naming differing columns)


def check_columns(info: ModelInfo, needed: list[str], supplied: set[str]) -> None:
    """Raise :class:`ModelRefused` when a column the model reads is not among those the service can build."""
    missing = [c for c in needed if c not in supplied]
    if missing:
        raise ModelRefused(
            f"model {info.name} v{info.version} ({info.model_type}) reads feature(s) the online store cannot "
            f"supply: {', '.join(missing)}; add them to the feature services (feature_repo/) and run "
            "`freshcart features apply` and a materialisation, or promote a model trained on the current features")


def connect_registry(settings: Settings) -> Any:
    """An MLflow client on the profile's registry."""
    import mlflow
    from mlflow import MlflowClient

    from freshcart.credentials import export_mlflow_credentials

    uri = settings.tracking_uri
    export_mlflow_credentials(uri, settings.mlflow_admin_password.get_secret_value()
                              if settings.mlflow_admin_password else None)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def alias_version(client: Any, settings: Settings) -> Any:
    """The model version holding the serving alias; :class:`RegistryUnavailable` if none or no answer."""
    from mlflow.exceptions import MlflowException

    name, alias = settings.registered_model, settings.serving_model_alias
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise RegistryUnavailable(f"no version of {name!r} holds the alias {alias!r} in the MLflow registry "
                                  f"({exc.message[:200]}); train and promote one (`freshcart train`, "
                                  "`freshcart promote`)") from exc
    except Exception as exc:  # noqa: BLE001 - a database or network error: the registry is down
        raise RegistryUnavailable(f"the MLflow registry did not answer ({type(exc).__name__}: {str(exc)[:200]}); "
                                  f"check the tracking store {settings.tracking_uri.split('@')[-1]}") from exc


def load_version(settings: Settings, version: Any, supplied: set[str]) -> ServingModel:
    """Load a model version (``mlflow.pyfunc``) onto the serving device and check its input columns."""
    import mlflow.pyfunc

    uri = f"models:/{version.name}/{version.version}"
    pyfunc = mlflow.pyfunc.load_model(uri, model_config={"device": settings.serving_device})
    schema = pyfunc.metadata.get_input_schema()
    if schema is None:
        raise ModelRefused(f"model {version.name} v{version.version} has no input signature; register it with "
                           "`freshcart train`, which logs one")
    wrapper = pyfunc.unwrap_python_model()
    info = ModelInfo(name=str(version.name), version=str(version.version), alias=settings.serving_model_alias,
                     model_type=str(getattr(wrapper, "model_type", (version.tags or {}).get("model_type", "?"))),
                     run_id=str(version.run_id or ""))
    columns = list(schema.input_names())
    check_columns(info, columns, supplied)
    model = wrapper.model
    if info.model_type == "xgboost":
        model = _one_thread(model)
    elif info.model_type == "din" and str(model.device) == "cpu":
        import torch

        torch.set_num_threads(1)
    return ServingModel(info=info, model=model, columns=columns, loaded_at=time.time())


def _one_thread(model: Any) -> Any:
    """The XGBoost model scoring on one thread: for a request's 100 rows, more threads only wait on each
    other (a busy 2-core machine showed 20-30 ms stalls with two threads, well under 1 ms with one)."""
    model.booster.set_param({"nthread": 1})
    return model


class ModelHolder:
    """The current model, replaced whole when the alias moves; counts loads and failures."""

    def __init__(self, settings: Settings, supplied: set[str],
                 on_event: Callable[[str, ModelInfo | None], None] | None = None,
                 find: Callable[[Any], Any] | None = None, load: Callable[[Any], Any] | None = None) -> None:
        """``find``: the version to serve from an MLflow client (None: serve none), by default the one
        holding the serving alias; ``load``: that version loaded (something with an ``info``), by default
        :func:`load_version`. The learning-to-rank model's holder passes its own two."""
        self.settings = settings
        self.supplied = supplied
        self.current: Any = None
        """The :class:`ServingModel` (or what ``load`` makes) in use; None before the first load."""
        self._find = find or (lambda client: alias_version(client, settings))
        self._load = load or (lambda version: load_version(settings, version, supplied))
        self.last_error: str | None = None
        self.failures = 0
        self._client: Any = None
        self._refused: set[str] = set()
        self._lock = threading.Lock()
        self._on_event = on_event or (lambda kind, info: None)

    def check(self) -> bool:
        """Look the alias up; load and swap in a new version. True when the model changed."""
        with self._lock:  # one check at a time (the watcher and a first request may race)
            try:
                if self._client is None:
                    self._client = connect_registry(self.settings)
                version = self._find(self._client)
            except RegistryUnavailable as exc:
                self._fail(str(exc), "registry")
                return False
            except Exception as exc:  # noqa: BLE001 - the tracking store cannot be opened
                self._client = None
                self._fail(f"the MLflow registry did not answer ({type(exc).__name__}: {str(exc)[:200]}); check "
                           f"the tracking store {self.settings.tracking_uri.split('@')[-1]}", "registry")
                return False
            if version is None:
                return self._unload()
            number = str(version.version)
            if self.current is not None and self.current.info.version == number:
                self.last_error = None
                return False
            if number in self._refused:
                return False
            try:
                loaded = self._load(version)
            except ModelRefused as exc:
                self._refused.add(number)
                self._fail(str(exc), "refused")
                return False
            except Exception as exc:  # noqa: BLE001 - a broken artifact must not stop the service
                self._fail(f"loading {version.name} v{number} failed ({type(exc).__name__}: {str(exc)[:300]})",
                           "load_failed")
                return False
            previous = self.current
            self.current = loaded  # the swap: one reference assignment
            self.last_error = None
            log.info("serving %s v%s (%s, run %s)%s", loaded.info.name, number, loaded.info.model_type,
                     loaded.info.run_id, f", replacing v{previous.info.version}" if previous else "")
            self._on_event("loaded", loaded.info)
            return True

    def _unload(self) -> bool:
        """Nothing to serve any more (the registry says so): the current model is dropped."""
        self.last_error = None
        if self.current is None:
            return False
        previous, self.current = self.current, None
        log.info("no longer serving %s v%s: the registry names no version to serve", previous.info.name,
                 previous.info.version)
        self._on_event("unloaded", previous.info)
        return True

    def _fail(self, message: str, kind: str) -> None:
        self.failures += 1
        self.last_error = message
        log.error("model %s: %s%s", kind, message,
                  f" (still serving v{self.current.info.version})" if self.current else "")
        self._on_event(kind, self.current.info if self.current else None)
