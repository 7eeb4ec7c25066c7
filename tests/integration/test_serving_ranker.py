"""The learning-to-rank model in a real `bentoml serve`: /recommend ranks with it while the registry says so.

The served shop of tests/integration/test_serving.py (fixture ``served_shop``, the service of
``local_service``); a ranker on the service's input columns registered with the ranker registry's
own functions, made champion with ``serving_ranker=ranker``: /recommend names it and orders by
its scores, each item keeping its propensity score and source; with the tag back at
``propensity`` the propensity champion ranks again, without a restart either way.
"""

from __future__ import annotations

import httpx
import numpy as np
import xgboost as xgb

from freshcart.recommendation.ranker import RankerModel
from freshcart.recommendation.ranker_registry import RANKER_MODEL, SERVING_RANKER_TAG, register_ranker
from freshcart.serving.launch import RunningService
from freshcart.serving.ranking import buildable_columns
from freshcart.settings import Settings
from freshcart.training.registry import CHAMPION, connect
from tests.integration.test_serving import AUTH, local_service, shopper_and_products, wait_until  # noqa: F401

SOURCES = ["session", "recent", "co_viewed", "co_bought", "sknn", "trending", "popular"]
"""The service's candidate sources with the online store (serving.candidates.default_sources)."""


def small_ranker(names: list[str]) -> RankerModel:
    """A ranker on the service's columns whose score is mostly minus the propensity score (so its order is
    not the propensity model's)."""
    rng = np.random.default_rng(3)
    x = rng.random((400, len(names))).astype(np.float32)
    label = (x[:, names.index("propensity_score")] < 0.2).astype(np.float32)
    data = xgb.DMatrix(x, label=label, qid=np.repeat(np.arange(40), 10), feature_names=names)
    booster = xgb.train({"objective": "rank:ndcg", "max_depth": 2, "nthread": 1}, data, num_boost_round=10)
    return RankerModel(booster=booster, feature_names=names, best_iteration=9)


def ranker_gauge(client: httpx.Client) -> float | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("freshcart_serving_ranker_version{") and f'model="{RANKER_MODEL}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_recommend_ranks_with_the_ranker_champion_while_the_tag_says_ranker(
        local_service: tuple[Settings, RunningService]) -> None:
    settings, service = local_service
    user, _ = shopper_and_products(settings)
    client = httpx.Client(base_url=service.url, timeout=30)
    registry = connect(settings)
    propensity = client.post("/recommend", json={"user_id": user, "k": 10}, headers=AUTH)
    assert propensity.status_code == 200, propensity.text
    assert propensity.json()["ranker"]["name"] == settings.registered_model  # no ranker registered yet
    assert all(item["ranker_score"] is None for item in propensity.json()["items"])

    version = register_ranker(settings, small_ranker(buildable_columns(SOURCES)), {}, {"what": "integration"})
    registry.set_registered_model_alias(RANKER_MODEL, CHAMPION, version)
    registry.set_registered_model_tag(RANKER_MODEL, SERVING_RANKER_TAG, "ranker")
    try:
        def ranked_by(name: str) -> dict | None:
            got = client.post("/recommend", json={"user_id": user, "k": 10}, headers=AUTH)
            return got.json() if got.status_code == 200 and got.json()["ranker"]["name"] == name else None

        body = wait_until(lambda: ranked_by(RANKER_MODEL), 30, f"/recommend ranked by {RANKER_MODEL} v{version}")
        assert body["ranker"]["version"] == version and body["ranker"]["alias"] == "champion"
        assert body["model"]["name"] == settings.registered_model  # the propensity model still scores
        items = body["items"]
        assert len(items) == 10 and [i["rank"] for i in items] == list(range(1, 11))
        assert [i["ranker_score"] for i in items] == sorted((i["ranker_score"] for i in items), reverse=True)
        assert all(0.0 < i["score"] < 1.0 and i["source"] in i["sources"] for i in items)
        wait_until(lambda: ranker_gauge(client) == float(version), 30, "the ranker version in /metrics")
        wait_until(lambda: f"; ranked by {RANKER_MODEL} v{version}" in client.get("/readyz").json()["detail"], 30,
                   "/readyz naming the ranker")

        registry.set_registered_model_tag(RANKER_MODEL, SERVING_RANKER_TAG, "propensity")
        back = wait_until(lambda: ranked_by(settings.registered_model), 30, "/recommend ranked by the propensity model")
        scores = [i["score"] for i in back["items"]]
        assert scores == sorted(scores, reverse=True) and all(i["ranker_score"] is None for i in back["items"])
        wait_until(lambda: ranker_gauge(client) == 0.0, 30, "the ranker version 0 in /metrics")
        wait_until(lambda: client.get("/readyz").json()["detail"].endswith("; ranked by the propensity model"), 30,
                   "/readyz saying the propensity model ranks")
    finally:
        registry.set_registered_model_tag(RANKER_MODEL, SERVING_RANKER_TAG, "propensity")
