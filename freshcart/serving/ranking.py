"""The learning-to-rank model in ``/recommend``: which one ranks, its version loaded and checked, its input built.

The registered model ``freshcart-ranker`` (:mod:`freshcart.recommendation.ranker_registry`) holds
the ranker champion only while the learnt ranker beats the propensity model on the validation
replay, and its tag ``serving_ranker`` says which ranks (``ranker`` or ``propensity``).
:func:`ranker_version` reads both: the champion's version when the tag says ``ranker``, None (the
propensity champion ranks, as without a ranker) otherwise. The service keeps the ranker in a
:class:`~freshcart.serving.model.ModelHolder` of its own, checked by the same watcher as the
propensity model: a new version is loaded beside the old one and swapped in, a failed load keeps
the old one and is counted. :func:`load_ranker_version` refuses a ranker whose input columns the
service cannot build, naming them.

The ranker's input (:func:`ranker_matrix`) is built with the replay's own functions: the
propensity model's input (:func:`~freshcart.training.data.tabular_matrix` of the request's model
input), the candidate-source features of the request's candidate list
(:func:`~freshcart.recommendation.candidate_features.request_table`, the same
:func:`~freshcart.recommendation.candidate_features.list_sources` as the replay) and the propensity
champion's scores (:func:`~freshcart.recommendation.ranker.ranker_inputs`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from freshcart.recommendation.candidate_features import request_table, source_columns
from freshcart.recommendation.ranker import PROPENSITY_COLUMN, RankerModel, ranker_inputs
from freshcart.recommendation.ranker_registry import RANKER_MODEL, SERVING_RANKER_TAG
from freshcart.serving.assemble import declared_type, request_seconds
from freshcart.serving.candidates import Gathered
from freshcart.serving.model import ModelInfo, ModelRefused, RegistryUnavailable
from freshcart.serving.respond import Scored
from freshcart.training.data import model_input_columns, tabular_matrix

log = logging.getLogger(__name__)
RANKER_ALIAS = "champion"
RANKER_TYPE = "xgboost-rank-ndcg"


@dataclass
class ServingRanker:
    """A loaded ranker version: the booster and its input columns."""

    info: ModelInfo
    model: RankerModel
    loaded_at: float

    def rank(self, scored: Scored, gathered: Gathered, user_id: int, moment: datetime) -> np.ndarray:
        """The ranker's score of every candidate (higher first); its time is added to the model time."""
        started = time.perf_counter()
        matrix, names = ranker_matrix(scored, gathered, user_id, moment)
        scores = self.model.predict_matrix(matrix, names)
        scored.model_s += time.perf_counter() - started
        return scores


def ranker_columns(model_columns: Sequence[str]) -> list[str]:
    """The model-input columns to build when the ranker ranks: the propensity model's and those the
    ranker's :func:`tabular_matrix` reads."""
    return list(dict.fromkeys([*model_columns, *model_input_columns()]))


def buildable_columns(source_names: list[str]) -> list[str]:
    """The ranker input columns the service builds, in order (those a ranker must have been trained on)."""
    probe = pa.table({name: pa.nulls(1, declared_type(name)) for name in model_input_columns()})
    _, tabular = tabular_matrix(probe)
    return [*tabular, *source_columns(source_names), PROPENSITY_COLUMN]


def ranker_matrix(scored: Scored, gathered: Gathered, user_id: int, moment: datetime) -> tuple[np.ndarray, list[str]]:
    """The ranker's input of the request's candidates, as the replay builds it (see the module)."""
    model_input, columns = scored.matrix if scored.matrix is not None else tabular_matrix(scored.inputs)
    table = request_table(gathered.names, gathered.proposals, gathered.exclude, gathered.blended, user_id,
                          int(round(request_seconds(moment) * 1e6)))
    return ranker_inputs(model_input, columns, table, scored.scores)


def check_ranker_columns(info: ModelInfo, needed: list[str], supplied: set[str], source_names: list[str]) -> None:
    """Raise :class:`ModelRefused` when the ranker reads columns the service cannot build (or in another order)."""
    buildable = buildable_columns(source_names)
    unbuilt = [c for c in needed if c not in buildable]
    unbuilt += [c for c in needed if c in model_input_columns() and c not in supplied and c not in unbuilt]
    if unbuilt:
        raise ModelRefused(
            f"ranker {info.name} v{info.version} reads input column(s) the service cannot build: {', '.join(unbuilt)} "
            f"(the candidate sources here: {', '.join(source_names)}); train the ranker again on the current "
            "features and sources (`freshcart train-ranker`)")
    if needed != buildable:
        raise ModelRefused(
            f"ranker {info.name} v{info.version} reads {len(needed)} input columns where the service builds "
            f"{len(buildable)} (first difference: {_first_difference(needed, buildable)}); train the ranker again "
            "on the current features and sources (`freshcart train-ranker`)")


def _first_difference(needed: list[str], built: list[str]) -> str:
    for i, (a, b) in enumerate(zip(needed, built)):
        if a != b:
            return f"column {i} is {a!r} in the ranker, {b!r} here"
    shorter = "the ranker" if len(needed) < len(built) else "the service"
    return f"{shorter} stops after column {min(len(needed), len(built))}"


def ranker_version(client: Any) -> Any | None:
    """The ranker champion's version when the registered ranker's tag says it ranks, else None."""
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(RANKER_MODEL)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise RegistryUnavailable(f"the MLflow registry did not answer for {RANKER_MODEL!r} ({exc.message[:200]})") \
            from exc
    except Exception as exc:  # noqa: BLE001 - a database or network error: the registry is down
        raise RegistryUnavailable(f"the MLflow registry did not answer ({type(exc).__name__}: {str(exc)[:200]})") \
            from exc
    if (registered.tags or {}).get(SERVING_RANKER_TAG) != "ranker":
        return None
    try:
        return client.get_model_version_by_alias(RANKER_MODEL, RANKER_ALIAS)
    except MlflowException:
        log.warning("%s says %s=ranker but no version holds the alias %r: the propensity model ranks",
                    RANKER_MODEL, SERVING_RANKER_TAG, RANKER_ALIAS)
        return None


def load_ranker_version(version: Any, supplied: set[str], source_names: list[str]) -> ServingRanker:
    """Load a ranker version (``mlflow.pyfunc``), check its input columns, score on one thread."""
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
    model = pyfunc.unwrap_python_model().model
    if not isinstance(model, RankerModel):
        raise ModelRefused(f"{version.name} v{version.version} is not a FreshCart ranker ({type(model).__name__}); "
                           "register rankers with `freshcart train-ranker`")
    info = ModelInfo(name=str(version.name), version=str(version.version), alias=RANKER_ALIAS,
                     model_type=str((version.tags or {}).get("model_type", RANKER_TYPE)),
                     run_id=str(version.run_id or ""))
    check_ranker_columns(info, list(model.feature_names), supplied, source_names)
    model.booster.set_param({"nthread": 1})  # a request's 100 rows: one thread (see serving.model._one_thread)
    return ServingRanker(info, model, time.time())
