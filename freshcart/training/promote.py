"""Promotion and rollback: the champion is replaced only by a better challenger.

:func:`promote` scores the ``challenger`` and the ``champion`` on the same holdout
(the challenger's: the rows of its training set from its ``holdout_start`` on)
and moves the ``champion`` alias only when the challenger is better on the
chosen metric by at least the margin. Every decision (promoted or kept, with the
reason and both figures) is logged and recorded as tags on the challenger's
model version; a promotion records the previous champion on the new one, which
:func:`rollback` restores.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from freshcart.settings import Settings
from freshcart.training.data import TimeSplit, read_training_set
from freshcart.training.evaluate import HIGHER_IS_BETTER, EvaluationReport, PopularityBaseline, all_metrics, \
    evaluate_scores
from freshcart.training.pyfunc import input_frame
from freshcart.training.registry import CHALLENGER, CHAMPION, RegistryError, connect, log, set_version_tags, \
    version_by_alias

PREVIOUS_CHAMPION_TAG = "previous_champion"


@dataclass
class Decision:
    """One promotion or rollback decision, as logged and recorded on the model version."""

    action: str
    """'promoted', 'kept' (the challenger stays challenger), 'rolled_back' or 'nothing_to_do'."""
    reason: str
    metric: str
    margin: float
    challenger: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    challenger_value: float | None = None
    champion_value: float | None = None
    holdout_rows: int = 0
    decided_at: str = ""


def holdout_of(client: MlflowClient, version: ModelVersion) -> pa.Table:
    """The holdout rows of a model version: its training set from its ``holdout_start`` on."""
    tags = version.tags or {}
    if "training_set" not in tags or "holdout_start" not in tags:
        raise RegistryError(f"model version {version.name} v{version.version} has no training_set/holdout_start "
                            "tags; register it with `freshcart train`")
    table = read_training_set(Path(tags["training_set"]))
    start = datetime.fromisoformat(tags["holdout_start"])
    _, _, holdout = TimeSplit(start, start).masks(table)
    return table.filter(pa.array(holdout))


def score_version(name: str, alias_or_version: str, holdout: pa.Table) -> np.ndarray:
    """Scores of a registered model (``@alias`` or a version number) on rows of a training set."""
    uri = f"models:/{name}@{alias_or_version[1:]}" if alias_or_version.startswith("@") \
        else f"models:/{name}/{alias_or_version}"
    return np.asarray(mlflow.pyfunc.load_model(uri).predict(input_frame(holdout)), dtype=np.float64)


def evaluate_version(settings: Settings, alias_or_version: str, holdout: pa.Table | None = None
                     ) -> tuple[EvaluationReport, ModelVersion]:
    """Evaluate a registered model on a holdout (its own if none is given), with baseline and oracle."""
    client = connect(settings)
    version = _resolve(client, settings.registered_model, alias_or_version)
    rows = holdout if holdout is not None else holdout_of(client, version)
    tags = version.tags or {}
    table = read_training_set(Path(tags["training_set"]))
    start = datetime.fromisoformat(tags["holdout_start"])
    train, _, _ = TimeSplit(start, start).masks(table)  # the rows before the holdout fit the baseline
    baseline = PopularityBaseline.fit(table.filter(pa.array(train)))
    scores = score_version(settings.registered_model, str(version.version), rows)
    return evaluate_scores(settings, rows, scores, baseline), version


def _v(version: ModelVersion | None) -> str | None:
    """A version's number as a string (None for no version)."""
    return None if version is None else str(version.version)


def _resolve(client: MlflowClient, name: str, alias_or_version: str) -> ModelVersion:
    if alias_or_version.startswith("@"):
        version = version_by_alias(client, name, alias_or_version[1:])
        if version is None:
            raise RegistryError(f"registered model {name!r} has no version with alias {alias_or_version[1:]!r}; "
                                "train one with `freshcart train`")
        return version
    return client.get_model_version(name, alias_or_version)


def _record(client: MlflowClient, version: ModelVersion | None, decision: Decision,
            prefix: str = "promotion") -> Decision:
    """Log the decision and tag it (``<prefix>.<field>``) on the version it concerns."""
    decision.decided_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    log.info("model registry decision: %s", json.dumps(asdict(decision), sort_keys=True))
    if version is not None:
        set_version_tags(client, version, {f"{prefix}.{k}": v for k, v in asdict(decision).items() if v is not None})
    return decision


def _better(metric: str, challenger: float, champion: float, margin: float) -> bool:
    gain = challenger - champion if HIGHER_IS_BETTER[metric] else champion - challenger
    return gain >= margin and gain > 0


def promote(settings: Settings, metric: str | None = None, margin: float | None = None) -> Decision:
    """Make the challenger champion if it beats the champion on the same holdout by ``margin`` on ``metric``."""
    metric = metric or settings.promotion_metric
    margin = settings.promotion_margin if margin is None else margin
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"metric {metric!r}: use one of {', '.join(HIGHER_IS_BETTER)}")
    client = connect(settings)
    name = settings.registered_model
    challenger = version_by_alias(client, name, CHALLENGER)
    champion = version_by_alias(client, name, CHAMPION)
    if challenger is None:
        return _record(client, None, Decision("nothing_to_do", "no version holds the challenger alias; "
                                              "train one with `freshcart train`", metric, margin,
                                              champion_before=_v(champion),
                                              champion_after=_v(champion)))
    if champion is not None and _v(champion) == _v(challenger):
        client.delete_registered_model_alias(name, CHALLENGER)
        return _record(client, challenger, Decision("nothing_to_do", "the challenger is already champion", metric,
                                                    margin, _v(challenger), _v(champion), _v(champion)))
    holdout = holdout_of(client, challenger)
    value = all_metrics(holdout, score_version(name, _v(challenger), holdout))[metric]
    decision = Decision("kept", "", metric, margin, _v(challenger), _v(champion),
                        _v(champion), value, None, holdout.num_rows)
    if champion is None:
        decision.action, decision.reason = "promoted", "there was no champion yet"
    else:
        try:
            decision.champion_value = all_metrics(holdout, score_version(name, _v(champion), holdout))[metric]
        except Exception as exc:  # noqa: BLE001 - e.g. a champion trained on features that have changed since
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            decision.action = "promoted"
            decision.reason = (f"champion v{_v(champion)} cannot score the holdout with the current code "
                               f"({type(exc).__name__}: {first_line}); the challenger, which can, replaces it")
    if decision.champion_value is not None:  # the champion scored: compare
        if value == value and _better(metric, value, decision.champion_value, margin):
            decision.action = "promoted"
            decision.reason = (f"challenger {metric} {value:.5f} beats champion {decision.champion_value:.5f} "
                               f"by at least the margin {margin:g} on the same {holdout.num_rows:,}-row holdout")
        else:
            decision.reason = (f"challenger {metric} {value:.5f} does not beat champion "
                               f"{decision.champion_value:.5f} by the margin {margin:g} "
                               f"({'higher' if HIGHER_IS_BETTER[metric] else 'lower'} is better) "
                               f"on the same {holdout.num_rows:,}-row holdout")
    if decision.action == "promoted":
        client.set_registered_model_alias(name, CHAMPION, _v(challenger))
        client.delete_registered_model_alias(name, CHALLENGER)
        decision.champion_after = _v(challenger)
        if champion is not None:
            client.set_model_version_tag(name, _v(challenger), PREVIOUS_CHAMPION_TAG, _v(champion))
    return _record(client, challenger, decision)


def rollback(settings: Settings) -> Decision:
    """Give the champion alias back to the version the current champion replaced."""
    client = connect(settings)
    name = settings.registered_model
    champion = version_by_alias(client, name, CHAMPION)
    if champion is None:
        raise RegistryError(f"registered model {name!r} has no champion to roll back; promote one first")
    previous = (champion.tags or {}).get(PREVIOUS_CHAMPION_TAG)
    if not previous:
        raise RegistryError(f"champion {name} v{champion.version} records no previous champion "
                            f"(tag {PREVIOUS_CHAMPION_TAG!r}); nothing to roll back to")
    client.set_registered_model_alias(name, CHAMPION, previous)
    decision = Decision("rolled_back", f"champion v{champion.version} replaced by its predecessor v{previous}",
                        settings.promotion_metric, settings.promotion_margin, champion_before=_v(champion),
                        champion_after=previous)
    return _record(client, champion, decision, prefix="rollback")
