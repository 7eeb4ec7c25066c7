"""Which model ranks /recommend: the ranker champion when the registry's tag says so, loaded, refused, swapped.

A real MLflow registry (SQLite in a tmp dir), rankers registered with the ranker registry's own
functions (tiny boosters on random rows, the service's input columns), the service's model holder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from prometheus_client import CollectorRegistry

from freshcart.recommendation.ranker import RankerModel
from freshcart.recommendation.ranker_registry import RANKER_MODEL, SERVING_RANKER_TAG, register_ranker
from freshcart.serving.assemble import OnlineRows
from freshcart.serving.candidates import Candidate
from freshcart.serving.features import ViewRows
from freshcart.serving.metrics import ServingMetrics
from freshcart.serving.model import ModelHolder, ModelInfo
from freshcart.serving.ranking import buildable_columns, load_ranker_version, ranker_version
from freshcart.serving.respond import Scored, recommend_response
from freshcart.settings import Settings, load_settings
from freshcart.training.data import model_input_columns
from freshcart.training.registry import CHAMPION, connect

SOURCES = ["session", "recent", "co_viewed", "co_bought", "sknn", "trending", "popular"]
PROPENSITY = ModelInfo("freshcart-propensity", "3", "champion", "xgboost", "run-3")


def tiny_ranker(names: list[str], seed: int = 0) -> RankerModel:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, len(names))).astype(np.float32)
    label = (rng.random(60) < 0.2).astype(np.float32)
    data = xgb.DMatrix(x, label=label, qid=np.repeat(np.arange(6), 10), feature_names=names)
    booster = xgb.train({"objective": "rank:ndcg", "max_depth": 2, "nthread": 1}, data, num_boost_round=3)
    return RankerModel(booster=booster, feature_names=names, best_iteration=2)


@pytest.fixture
def registry(tmp_path: Path) -> Settings:
    return load_settings(profile="local", data_dir=tmp_path, mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def holder(settings: Settings, metrics: ServingMetrics) -> ModelHolder:
    supplied = set(model_input_columns())
    return ModelHolder(settings, supplied, metrics.ranker_event, find=ranker_version,
                       load=lambda version: load_ranker_version(version, supplied, SOURCES))


def serve(settings: Settings, version: str, tag: str) -> None:
    client = connect(settings)
    client.set_registered_model_alias(RANKER_MODEL, CHAMPION, version)
    client.set_registered_model_tag(RANKER_MODEL, SERVING_RANKER_TAG, tag)


def test_the_ranker_champion_ranks_only_while_the_tag_says_ranker(registry: Settings) -> None:
    metrics_registry = CollectorRegistry()
    metrics = ServingMetrics(metrics_registry)
    rankers = holder(registry, metrics)
    assert not rankers.check() and rankers.current is None  # no registered ranker: the propensity model ranks
    assert rankers.last_error is None

    first = register_ranker(registry, tiny_ranker(buildable_columns(SOURCES)), {}, {"what": "first"})
    assert not rankers.check() and rankers.current is None  # a challenger alone ranks nothing
    serve(registry, first, "propensity")
    assert not rankers.check() and rankers.current is None  # the champion, but the tag says propensity

    serve(registry, first, "ranker")
    assert rankers.check()
    loaded = rankers.current
    assert (loaded.info.name, loaded.info.version, loaded.info.alias) == (RANKER_MODEL, first, "champion")
    assert loaded.model.feature_names == buildable_columns(SOURCES)
    assert metrics_registry.get_sample_value("freshcart_serving_ranker_version",
                                             {"model": RANKER_MODEL, "alias": "champion"}) == float(first)
    assert not rankers.check() and rankers.current is loaded  # the same version: nothing reloaded

    second = register_ranker(registry, tiny_ranker(buildable_columns(SOURCES), seed=1), {}, {"what": "second"})
    serve(registry, second, "ranker")
    assert rankers.check() and rankers.current.info.version == second

    connect(registry).set_registered_model_tag(RANKER_MODEL, SERVING_RANKER_TAG, "propensity")
    assert rankers.check() and rankers.current is None  # switched back to the propensity model
    assert metrics_registry.get_sample_value("freshcart_serving_ranker_version",
                                             {"model": RANKER_MODEL, "alias": "champion"}) == 0.0
    assert metrics_registry.get_sample_value("freshcart_serving_ranker_events_total", {"kind": "loaded"}) == 2.0
    assert metrics_registry.get_sample_value("freshcart_serving_ranker_events_total", {"kind": "unloaded"}) == 1.0


def test_a_ranker_reading_columns_the_service_cannot_build_is_refused_and_the_old_one_kept(
        registry: Settings) -> None:
    metrics_registry = CollectorRegistry()
    metrics = ServingMetrics(metrics_registry)
    rankers = holder(registry, metrics)
    good = register_ranker(registry, tiny_ranker(buildable_columns(SOURCES)), {}, {"what": "good"})
    serve(registry, good, "ranker")
    assert rankers.check()

    foreign = [*buildable_columns(SOURCES)[:-1], "candidate_rank_wishlist", "propensity_score"]
    bad = register_ranker(registry, tiny_ranker(foreign), {}, {"what": "another source"})
    serve(registry, bad, "ranker")
    assert not rankers.check()
    assert rankers.current.info.version == good  # the old one still ranks
    assert "candidate_rank_wishlist" in rankers.last_error and f"v{bad}" in rankers.last_error
    assert "cannot build" in rankers.last_error
    assert metrics_registry.get_sample_value("freshcart_serving_ranker_events_total", {"kind": "refused"}) == 1.0
    assert not rankers.check()  # a refused version is not loaded again
    assert metrics_registry.get_sample_value("freshcart_serving_ranker_events_total", {"kind": "refused"}) == 1.0

    reordered = buildable_columns(SOURCES)
    reordered[0], reordered[1] = reordered[1], reordered[0]
    shuffled = register_ranker(registry, tiny_ranker(reordered), {}, {"what": "columns in another order"})
    serve(registry, shuffled, "ranker")
    assert not rankers.check() and rankers.current.info.version == good
    assert "first difference: column 0" in rankers.last_error


def test_recommend_ranks_by_the_ranker_and_keeps_the_propensity_scores() -> None:
    rows = OnlineRows({view: ViewRows(view, [], {}, [None]) for view in ("user_activity", "user_session")},
                      ViewRows("product_activity", [], {}, [None] * 3), ViewRows("user_category", [], {}, [None] * 3))
    candidates = [Candidate(1, "session", ["session"]), Candidate(2, "co_viewed", ["co_viewed", "popular"]),
                  Candidate(3, "popular", ["popular"])]
    propensity = np.array([0.9, 0.5, 0.1])
    scored = Scored(PROPENSITY, rows, [1, 2, 3], [True] * 3, None, propensity, 0.001, 0.001)
    ranker = ModelInfo(RANKER_MODEL, "4", "champion", "xgboost-rank-ndcg", "run-r")
    answer = recommend_response("r", 7, candidates, scored, 3, PROPENSITY, rows, 0.002, ranker,
                                np.array([-1.0, 2.0, 0.5]))
    assert [i.product_id for i in answer.items] == [2, 3, 1]
    assert [i.score for i in answer.items] == [0.5, 0.1, 0.9]  # each keeps its propensity score
    assert [i.ranker_score for i in answer.items] == [2.0, 0.5, -1.0]
    assert answer.items[0].sources == ["co_viewed", "popular"]
    assert (answer.ranker.name, answer.ranker.version) == (RANKER_MODEL, "4")
    assert answer.model.name == "freshcart-propensity"
    by_propensity = recommend_response("r", 7, candidates, scored, 3, PROPENSITY, rows, 0.002)
    assert [i.product_id for i in by_propensity.items] == [1, 2, 3]
    assert by_propensity.ranker.name == "freshcart-propensity" and by_propensity.items[0].ranker_score is None
