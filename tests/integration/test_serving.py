"""The scoring service as users run it: a real `bentoml serve` process on a free port.

A champion trained on a small simulated shop (fixture ``served_shop``), the broker that
`make test` starts, and, for the production profile, Redis with Feast's SQL registry on
the project's PostgreSQL. Checked: /predict, /recommend, /explain, bad inputs -> 400 naming
the field and the value, no API key -> 401, a promotion picked up without a restart,
prediction records through Kafka into the offline store, and (production) the online store
stopped -> 503 naming it, then recovery.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import psycopg
import pytest

from freshcart.features.materialize import materialize
from freshcart.kafka_acls import PREDICTIONS_INGEST_GROUP
from freshcart.kafka_io import make_producer
from freshcart.schema import Event
from freshcart.features.store import run_feast
from freshcart.serving.catalogue import load_catalogue
from freshcart.serving.ingest import ingest_predictions, read_predictions
from freshcart.serving.launch import RunningService, free_port, start_service
from freshcart.services import redis as redis_service
from freshcart.settings import Settings, load_settings
from freshcart.training.registry import CHAMPION, connect

KEY = "test-key-" + uuid.uuid4().hex[:8]
AUTH = {"Authorization": f"Bearer {KEY}"}


def shopper_and_products(settings: Settings) -> tuple[int, list[int]]:
    """A shopper with purchases and 100 catalogue products."""
    catalogue = load_catalogue(settings)
    user = max(catalogue.purchases, key=lambda u: len(catalogue.purchases[u]))
    return user, sorted(catalogue.category)[:100]


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:.0f} s (last: {last!r})")


@pytest.fixture
def local_service(settings: Settings, served_shop: Settings, topic: str, tmp_path: Path) -> Iterator[
        tuple[Settings, RunningService]]:
    serving = served_shop.model_copy(update={
        "kafka_bootstrap": settings.bootstrap_servers, "predictions_topic": topic, "serving_reload_seconds": 2.0,
        "serving_api_key": load_settings(serving_api_key=KEY).serving_api_key})
    service = start_service(serving, free_port(), tmp_path / "serve.log")
    yield serving, service
    service.stop()


def test_predict_recommend_explain_auth_validation_reload_and_the_prediction_log(
        local_service: tuple[Settings, RunningService]) -> None:
    settings, service = local_service
    user, products = shopper_and_products(settings)
    client = httpx.Client(base_url=service.url, timeout=30)
    body = {"user_id": user, "product_ids": products}

    assert client.post("/predict", json=body).status_code == 401  # no key
    assert client.post("/predict", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    for probe in ("/livez", "/readyz", "/metrics"):
        assert client.get(probe).status_code == 200, probe

    answer = client.post("/predict", json=body, headers={**AUTH, "X-Request-ID": "req-known-1"})
    assert answer.status_code == 200, answer.text
    predicted = answer.json()
    assert predicted["request_id"] == "req-known-1" and answer.headers["x-request-id"] == "req-known-1"
    assert [s["product_id"] for s in predicted["scores"]] == products
    assert all(0.0 < s["score"] < 1.0 for s in predicted["scores"])
    assert predicted["model"]["version"] == "1" and predicted["model"]["type"] == "xgboost"
    assert predicted["model"]["alias"] == "champion" and predicted["model"]["run_id"]
    assert not predicted["cold_start"] and predicted["freshness"]["user_features_time"]
    assert predicted["timing"]["features_ms"] > 0 and predicted["timing"]["model_ms"] > 0

    warm = next(s["product_id"] for s in predicted["scores"] if not s["cold_start"])
    cold = client.post("/predict", json={"user_id": 10**15, "product_ids": [warm, 10**15]}, headers=AUTH)
    assert cold.status_code == 200, cold.text
    cold_body = cold.json()
    assert cold_body["cold_start"] and "user_activity" in cold_body["freshness"]["missing_views"]
    assert [(s["cold_start"], s["known"]) for s in cold_body["scores"]] == [(False, True), (True, False)]

    recommended = client.post("/recommend", json={"user_id": user, "k": 10}, headers=AUTH)
    assert recommended.status_code == 200, recommended.text
    items = recommended.json()["items"]
    assert len(items) == 10 and [i["rank"] for i in items] == list(range(1, 11))
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    assert {i["source"] for i in items} <= {"session", "recent", "co_viewed", "co_bought", "sknn", "trending",
                                            "popular"}
    assert len({i["product_id"] for i in items}) == 10

    # a purchase on the events topic after the service started leaves the product out of the next ranking
    bought = items[0]["product_id"]
    purchase = Event(f"bought-{uuid.uuid4().hex}", datetime.now(timezone.utc), "purchase", bought,
                     1, None, None, 9.99, user, f"s-{uuid.uuid4().hex[:8]}")
    producer = make_producer(settings)
    producer.send(settings.events_topic, key=purchase.key, value=purchase.to_json())
    producer.flush(timeout=30)
    producer.close()
    wait_until(lambda: bought not in {i["product_id"] for i in client.post(
        "/recommend", json={"user_id": user, "k": 10}, headers=AUTH).json()["items"]}, 30,
        "the product bought a moment ago left out of /recommend")

    explained = client.post("/explain", json={"user_id": user, "product_ids": products[:2], "top": 4}, headers=AUTH)
    assert explained.status_code == 200, explained.text
    explanation = explained.json()["scores"][0]["explanation"]
    assert explanation["kind"] == "tree_shap" and len(explanation["contributions"]) == 4
    assert all(c["feature"] for c in explanation["contributions"])

    for bad, shown in (({"user_id": -1, "product_ids": [1]}, "user_id=-1"),
                       ({"user_id": 1, "product_ids": list(range(501))}, "(501 items)"),
                       ({"user_id": 1, "product_ids": [1], "colour": 1}, "colour=1")):
        refused = client.post("/predict", json=bad, headers=AUTH)
        assert refused.status_code == 400 and shown in refused.text, refused.text
    garbage = client.post("/predict", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert garbage.status_code == 400
    assert client.post("/recommend", json={"user_id": 1, "k": 0}, headers=AUTH).status_code == 400

    docs = client.get("/docs.json", headers=AUTH)
    assert docs.status_code == 200 and {"/predict", "/recommend", "/explain"} <= set(docs.json()["paths"])
    assert client.get("/docs", headers=AUTH, follow_redirects=False).status_code == 307

    # a new champion (the attention model, v2) is served without a restart, within 30 s
    connect(settings).set_registered_model_alias(settings.registered_model, CHAMPION, "2")
    switched_at = time.monotonic()

    def version() -> str | None:
        got = client.post("/predict", json=body, headers=AUTH)
        return got.json()["model"]["version"] if got.status_code == 200 and \
            got.json()["model"]["version"] == "2" else None

    wait_until(version, 60, "the new champion v2 serving")
    loaded = f'freshcart_serving_model_events_total{{kind="loaded"}} {2.0 * settings.serving_workers}'
    wait_until(lambda: loaded in client.get("/metrics").text, 60, "every worker serving v2 (v1 then v2 loaded)")
    assert time.monotonic() - switched_at < 60
    attention = client.post("/explain", json={"user_id": user, "product_ids": products[:1], "top": 3}, headers=AUTH)
    assert attention.json()["model"]["type"] == "din"
    assert attention.json()["scores"][0]["explanation"]["kind"] == "attention"
    metrics = client.get("/metrics").text
    assert loaded in metrics
    assert 'freshcart_serving_requests_total{endpoint="predict",outcome="ok"}' in metrics

    # every /predict and /recommend went to Kafka; the ingest lands them in the offline store by date
    logged = wait_until(lambda: _settled(client), 30, "prediction records acknowledged by Kafka")
    report = ingest_predictions(settings, group=f"{PREDICTIONS_INGEST_GROUP}-test-{uuid.uuid4().hex[:6]}", timeout_s=60)
    assert report.records >= 4 and report.records == logged
    day = datetime.now(timezone.utc).date()
    rows = read_predictions(settings, day)
    assert rows is not None
    ids = set(rows["request_id"].to_pylist())
    assert "req-known-1" in ids
    first = [r for r in rows.to_pylist() if r["request_id"] == "req-known-1"]
    assert [r["product_id"] for r in sorted(first, key=lambda r: r["position"])] == products
    assert {r["model_version"] for r in first} == {"1"}
    again = ingest_predictions(settings, group=f"{PREDICTIONS_INGEST_GROUP}-test-{uuid.uuid4().hex[:6]}", timeout_s=60)
    assert again.records == report.records and read_predictions(settings, day).num_rows == rows.num_rows


def _logged(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("freshcart_serving_predictions_logged_total "):
            return float(line.split()[-1])
    return 0.0


def _settled(client: httpx.Client) -> float | None:
    """The count of records Kafka acknowledged, once it stops growing (at least the 4 sent above)."""
    first = _logged(client)
    time.sleep(1.0)
    second = _logged(client)
    return second if second == first and second >= 4 else None


@pytest.fixture
def private_redis(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A Redis server of the test's own (it is stopped and started again), on a free port."""
    redis_settings = load_settings(data_dir=tmp_path / "redis-home", redis_port=free_port())
    print(redis_service.start(redis_settings))
    yield redis_settings
    redis_service.stop(redis_settings)


@pytest.fixture
def production_service(settings: Settings, served_shop: Settings, private_redis: Settings, topic: str,
                       tmp_path: Path) -> Iterator[tuple[Settings, Settings, RunningService]]:
    base = load_settings()
    database = f"freshcart_serving_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base.postgres_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    production = served_shop.model_copy(update={
        "profile": "production", "kafka_bootstrap": settings.bootstrap_servers, "predictions_topic": topic,
        "postgres_port": base.postgres_port, "postgres_url": load_settings(
            postgres_url=base.postgres_dsn(database)).postgres_url,
        "redis_url": f"redis://127.0.0.1:{private_redis.redis_port}/0", "serving_reload_seconds": 2.0})
    applied = run_feast(production, "apply", capture=True)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    from freshcart import storage

    days = storage.list_partitions(production.offline_events_dir)
    materialize(production, datetime.combine(days[0], datetime.min.time(), tzinfo=timezone.utc),
                datetime.combine(days[-1], datetime.min.time(), tzinfo=timezone.utc))
    service = start_service(production, free_port(), tmp_path / "serve-production.log")
    yield production, private_redis, service
    service.stop()
    with psycopg.connect(base.postgres_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_production_profile_serves_from_redis_and_answers_503_while_it_is_down(
        production_service: tuple[Settings, Settings, RunningService]) -> None:
    settings, redis_settings, service = production_service
    user, products = shopper_and_products(settings)
    client = httpx.Client(base_url=service.url, timeout=30)
    body = {"user_id": user, "product_ids": products}
    answer = client.post("/predict", json=body)
    assert answer.status_code == 200, answer.text
    assert not answer.json()["cold_start"] and answer.json()["freshness"]["user_features_time"]
    assert client.post("/recommend", json={"user_id": user, "k": 5}).status_code == 200

    redis_service.stop(redis_settings)
    down = client.post("/predict", json=body)
    assert down.status_code == 503, down.text
    assert "redis" in down.json()["detail"].lower() and "online store" in down.json()["detail"]
    assert client.post("/recommend", json={"user_id": user, "k": 5}).status_code == 503
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and not not_ready.json()["ready"]
    assert "redis" in not_ready.json()["detail"].lower(), not_ready.text
    assert client.get("/livez").status_code == 200

    redis_service.start(redis_settings)  # the same data directory: the features come back
    recovered = wait_until(lambda: (r := client.post("/predict", json=body)).status_code == 200 and r, 60,
                           "answers again after Redis restarted")
    assert not recovered.json()["cold_start"]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] and "serving" in ready.json()["detail"], ready.text
