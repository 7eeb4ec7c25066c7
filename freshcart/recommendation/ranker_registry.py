"""The ranker in the MLflow registry: registered, gated like the propensity model, read by ``/recommend``.

:func:`register_ranker` logs a trained ranker as a run and a new version of the registered model
``freshcart-ranker`` (an MLflow ``pyfunc`` from :mod:`~freshcart.recommendation.ranker_model_code`,
alias ``challenger``). :func:`promote_ranker` scores the challenger, the current ranker champion
and the propensity champion as ranker on the same validation replay and moves the ``champion``
alias only when the challenger's NDCG@10 beats both by the margin; a worse ranker is never
promoted. A ranker champion that no longer beats the propensity model loses the alias, so the
champion exists only while the learnt ranker is the better one; the registered model's tag
``serving_ranker`` says which ranks in ``/recommend`` (``ranker`` or ``propensity``). Every
decision is logged and recorded as ``ranker_promotion.*`` tags on the challenger's version.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ColSpec, Schema, TensorSpec

from freshcart.recommendation.base import TieBreak
from freshcart.recommendation.log import EventLog
from freshcart.recommendation.ranker import RankerModel
from freshcart.recommendation.ranker_training import RankingDay
from freshcart.recommendation.ranking_replay import validation_ndcg
from freshcart.settings import Settings
from freshcart.training.registry import CHALLENGER, CHAMPION, connect, log, pip_requirements, register_version, \
    set_version_tags, version_by_alias

RANKER_MODEL = "freshcart-ranker"
SERVING_RANKER_TAG = "serving_ranker"
"""Tag of the registered ranker model: ``ranker`` (its champion ranks in /recommend) or ``propensity``."""
MODEL_CODE = Path(__file__).with_name("ranker_model_code.py")
METRIC = "validation_ndcg_at_10"


@dataclass
class RankerDecision:
    """One gate decision on the ranker, as logged and recorded on the challenger's version."""

    action: str
    """'promoted', 'kept' (the challenger stays challenger) or 'nothing_to_do'."""
    reason: str
    margin: float
    serving: str = "propensity"
    """Which ranks in /recommend after the decision: 'ranker' (the champion) or 'propensity'."""
    challenger: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    challenger_ndcg: float | None = None
    champion_ndcg: float | None = None
    propensity_ndcg: float | None = None
    validation_queries: int = 0
    decided_at: str = ""


def signature(names: list[str]) -> ModelSignature:
    """Inputs: every ranker input column as a double (NaN where unknown); output: one score per row."""
    return ModelSignature(inputs=Schema([ColSpec("double", name, required=False) for name in names]),
                          outputs=Schema([TensorSpec(np.dtype("float64"), (-1,))]))


def register_ranker(settings: Settings, model: RankerModel, metrics: dict[str, float], params: dict[str, Any],
                    name: str = RANKER_MODEL) -> str:
    """Log ``model`` as a run and register it as a new version of ``name`` holding ``challenger``."""
    import pandas as pd

    client = connect(settings)
    with mlflow.start_run(run_name="ranker rank:ndcg") as run:
        mlflow.set_tags({"freshcart.kind": "ranker", "model_type": "xgboost-rank-ndcg"})
        mlflow.log_params({**params, "best_iteration": model.best_iteration, "inputs": len(model.feature_names)})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
        with tempfile.TemporaryDirectory(prefix="freshcart-ranker-") as tmp:
            folder = Path(tmp) / "model"
            model.save(folder)
            example = pd.DataFrame(np.zeros((2, len(model.feature_names))), columns=model.feature_names)
            logged = mlflow.pyfunc.log_model(
                name="model", python_model=str(MODEL_CODE), artifacts={"model": str(folder)},
                signature=signature(model.feature_names), input_example=example, pip_requirements=pip_requirements())
    version = register_version(client, name, logged)
    set_version_tags(client, version, {"model_type": "xgboost-rank-ndcg", "run_id": run.info.run_id,
                                       **{k: v for k, v in params.items() if isinstance(v, str)},
                                       METRIC: metrics.get(METRIC)})
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return str(version.version)


def load_ranker(name: str, alias_or_version: str) -> RankerModel:
    """A registered ranker (``@alias`` or a version number) as the :class:`RankerModel` it wraps."""
    uri = f"models:/{name}@{alias_or_version[1:]}" if alias_or_version.startswith("@") \
        else f"models:/{name}/{alias_or_version}"
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().model


def _score(name: str, version: str, day: RankingDay, log_: EventLog, ties: TieBreak) -> float:
    x, names = day.ranker_inputs()
    return validation_ndcg(log_, day.table, load_ranker(name, version).predict_matrix(x, names), ties)


def _record(client: MlflowClient, name: str, version: str | None, decision: RankerDecision) -> RankerDecision:
    decision.decided_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    log.info("ranker registry decision: %s", json.dumps(asdict(decision), sort_keys=True))
    client.set_registered_model_tag(name, SERVING_RANKER_TAG, decision.serving)
    if version is not None:
        set_version_tags(client, client.get_model_version(name, version),
                         {f"ranker_promotion.{k}": v for k, v in asdict(decision).items() if v is not None})
    return decision


def promote_ranker(settings: Settings, validation: RankingDay, log_: EventLog, ties: TieBreak,
                   margin: float | None = None, name: str = RANKER_MODEL) -> RankerDecision:
    """Make the challenger the ranker champion if its validation NDCG@10 beats both the ranker champion's
    and the propensity champion's as ranker (``validation.propensity``) by ``margin`` (see the module)."""
    margin = settings.promotion_margin if margin is None else margin
    client = connect(settings)
    challenger, champion = version_by_alias(client, name, CHALLENGER), version_by_alias(client, name, CHAMPION)
    before = None if champion is None else str(champion.version)
    decision = RankerDecision("kept", "", margin, champion_before=before, champion_after=before,
                              validation_queries=validation.table.queries)
    decision.serving = "ranker" if champion is not None else "propensity"
    if challenger is None:
        decision.action, decision.reason = "nothing_to_do", "no ranker version holds the challenger alias"
        return _record(client, name, None, decision)
    decision.challenger = str(challenger.version)
    decision.propensity_ndcg = validation_ndcg(log_, validation.table, validation.propensity, ties)
    decision.challenger_ndcg = _score(name, decision.challenger, validation, log_, ties)
    notes = []
    if champion is not None and before != decision.challenger:
        try:
            decision.champion_ndcg = _score(name, str(champion.version), validation, log_, ties)
        except Exception as exc:  # noqa: BLE001 - e.g. a champion trained on features that have changed since
            notes.append(f"ranker champion v{before} cannot score the validation candidates "
                         f"({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]})")
    bars = {"propensity champion": decision.propensity_ndcg}
    if decision.champion_ndcg is not None:
        bars[f"ranker champion v{before}"] = decision.champion_ndcg
    bar_name, bar = max(bars.items(), key=lambda kv: kv[1])
    gain = decision.challenger_ndcg - bar
    queries = f"the same {validation.table.queries:,} validation queries"
    if decision.challenger_ndcg == decision.challenger_ndcg and gain >= margin and gain > 0:
        decision.action = "promoted"
        decision.reason = (f"challenger NDCG@10 {decision.challenger_ndcg:.5f} beats the {bar_name} "
                           f"{bar:.5f} (the best of {', '.join(bars)}) by at least the margin {margin:g} on {queries}")
        client.set_registered_model_alias(name, CHAMPION, decision.challenger)
        client.delete_registered_model_alias(name, CHALLENGER)
        decision.champion_after, decision.serving = decision.challenger, "ranker"
    else:
        decision.reason = (f"challenger NDCG@10 {decision.challenger_ndcg:.5f} does not beat the {bar_name} "
                           f"{bar:.5f} by the margin {margin:g} on {queries}")
        champion_loses = champion is not None and (decision.champion_ndcg is None
                                                   or decision.champion_ndcg <= decision.propensity_ndcg)
        if champion_loses:
            client.delete_registered_model_alias(name, CHAMPION)
            decision.champion_after, decision.serving = None, "propensity"
            notes.append(f"ranker champion v{before} no longer beats the propensity champion as ranker "
                         f"({decision.propensity_ndcg:.5f}): its alias is removed, the propensity model ranks")
    decision.reason = "; ".join([decision.reason, *notes])
    return _record(client, name, decision.challenger, decision)


def serving_ranker(settings: Settings, name: str = RANKER_MODEL) -> RankerModel | None:
    """The ranker champion when the learnt ranker is the better one (else None: the propensity model ranks)."""
    client = connect(settings)
    champion = version_by_alias(client, name, CHAMPION)
    return None if champion is None else load_ranker(name, "@" + CHAMPION)
