"""The ``train_ranker`` task: the ranker trained on the offline store's replay, registered and gated.

For the day before ``end`` (the validation day) and the ``ranker_days`` days before it, every
purchase and add-to-cart is replayed with the service's candidate sources and the quotas the
service reads (searched on the first training day when there is no quotas file yet); each
candidate gets its feature rows strictly before the query from the offline feature tables, and
the propensity champion's score. The learning-to-rank model trains on the training days,
early-stops on the validation day, is registered as the ``challenger`` of ``freshcart-ranker``
and gated (:func:`~freshcart.recommendation.ranker_registry.promote_ranker`) against the ranker
champion and the propensity champion as ranker on the same validation candidates.

The propensity champion may have been trained on views of these days; that can only favour it
in the gate, so a ranker is promoted only when it is clearly better.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import mlflow
import numpy as np

from freshcart.features.tables import read_interval_events
from freshcart.features.training_set import read_view_tables
from freshcart.recommendation.base import TieBreak
from freshcart.recommendation.candidate_replay import propose_all
from freshcart.recommendation.cooccurrence import CooccurrenceConfig
from freshcart.recommendation.log import load_log, to_micros
from freshcart.recommendation.online_sources import quotas_path, read_shares
from freshcart.recommendation.quotas import search_quotas
from freshcart.recommendation.ranker import RankerParams
from freshcart.recommendation.ranker_registry import METRIC, promote_ranker, register_ranker
from freshcart.recommendation.ranker_training import concat_days, fit_ranker, period_queries, ranker_scores, \
    ranking_day
from freshcart.recommendation.ranking_replay import validation_ndcg
from freshcart.settings import Settings
from freshcart.training.registry import CHAMPION, RegistryError, connect, version_by_alias

QUOTA_QUERIES = 3000


def propensity_champion(settings: Settings) -> tuple[Any, str]:
    """The propensity champion's scorer of feature rows and its version; an error says to promote one first."""
    client = connect(settings)
    champion = version_by_alias(client, settings.registered_model, CHAMPION)
    if champion is None:
        raise RegistryError(f"registered model {settings.registered_model!r} has no champion to compare the ranker "
                            "with; train and promote a propensity model first (train_evaluate DAG, `freshcart train`)")
    wrapper = mlflow.pyfunc.load_model(f"models:/{settings.registered_model}/{champion.version}")
    return wrapper.unwrap_python_model().model.predict, str(champion.version)


def train_and_gate(settings: Settings, end: datetime, ranker_days: int = 2, limit: int = 100,
                   max_queries: int | None = None, params: RankerParams = RankerParams()) -> dict[str, Any]:
    """Train the ranker on the days before ``end``'s last day, register it and gate it (see the module)."""
    if ranker_days < 1:
        raise ValueError(f"ranker_days={ranker_days}: train on at least one day before the validation day")
    scorer, propensity_version = propensity_champion(settings)  # first: the cheapest thing that can be missing
    validation_start = end - timedelta(days=1)
    first_day = validation_start - timedelta(days=ranker_days)
    history = timedelta(days=CooccurrenceConfig().days + 31)  # the neighbours' and the top categories' look-back
    log = load_log(settings.offline_events_dir, end, first_day - history)
    events = read_interval_events(settings.offline_events_dir, (first_day - history).date(), end.date())
    views = read_view_tables(settings, first_day.date(), end.date())
    path = quotas_path(settings)
    if path.is_file():
        quotas = {name: int(round(share * limit)) for name, share in read_shares(path).items()}
    else:
        start_us = to_micros(first_day)
        queries = period_queries(log, start_us, start_us + 86_400_000_000, QUOTA_QUERIES)
        quotas = search_quotas(propose_all(log, queries, limit), limit).quotas

    def day(start: datetime) -> Any:
        begin = to_micros(start)
        return ranking_day(log, events, views, scorer, period_queries(log, begin, begin + 86_400_000_000, max_queries),
                           quotas, limit)

    train = concat_days([day(first_day + timedelta(days=i)) for i in range(ranker_days)])
    validation = day(validation_start)
    model = fit_ranker(train, validation, params)
    ties = TieBreak.by_popularity(log, log.position(to_micros(validation_start)))
    metrics = {METRIC: validation_ndcg(log, validation.table, ranker_scores(model, validation), ties),
               "validation_propensity_ndcg_at_10": validation_ndcg(log, validation.table, validation.propensity, ties),
               "train_queries": float(train.table.queries), "validation_queries": float(validation.table.queries),
               "train_seconds": model.train_seconds}
    version = register_ranker(settings, model, metrics, {
        "validation_day": validation_start.date().isoformat(), "train_start": first_day.date().isoformat(),
        "ranker_days": ranker_days, "limit": limit, "propensity_version": propensity_version,
        "quotas": ",".join(f"{k}={v}" for k, v in sorted(quotas.items()))})
    decision = promote_ranker(settings, validation, log, ties)
    return {"version": version, "propensity_version": propensity_version, "action": decision.action,
            "reason": decision.reason, "serving": decision.serving, "champion_after": decision.champion_after,
            "challenger_ndcg": decision.challenger_ndcg, "champion_ndcg": decision.champion_ndcg,
            "propensity_ndcg": decision.propensity_ndcg, "validation_day": validation_start.date().isoformat(),
            "train_queries": train.table.queries, "validation_queries": validation.table.queries,
            "rows_train": int(train.table.query.shape[0]), "best_iteration": model.best_iteration,
            "positives_train": int(np.sum(train.table.label))}
