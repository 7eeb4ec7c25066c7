"""Credentials on (the default): the servers `make test` started refuse a client without them, and a Kafka
principal is held to its role's ACLs, while the same client with the settings' credentials gets through."""

from __future__ import annotations

import uuid
from typing import Iterator

import psycopg
import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from freshcart.kafka_io import admin_client, changelog_topic, client_auth, ensure_topics, make_producer
from freshcart.services.process import port_open
from freshcart.settings import Settings, load_settings

TIMEOUTS = {"request_timeout_ms": 5000}


@pytest.fixture(scope="module")
def base(settings: Settings) -> Settings:
    if not settings.auth:
        pytest.fail("these tests need the servers started with credentials on (FRESHCART_AUTH=true, the default)")
    for port in (settings.redis_port, settings.postgres_port):
        if not port_open("127.0.0.1", port):
            pytest.fail(f"nothing on 127.0.0.1:{port}: run `FRESHCART_PROFILE=production freshcart services up`")
    return settings


@pytest.fixture
def topics(base: Settings) -> Iterator[Settings]:
    """Settings on topics of their own, created (with every role's ACLs) by the admin principal."""
    tag = uuid.uuid4().hex[:8]
    own = base.model_copy(update={"events_topic": f"freshcart.test.acl.events.{tag}",
                                  "product_topic": f"freshcart.test.acl.by-product.{tag}",
                                  "dlq_topic": f"freshcart.test.acl.dlq.{tag}",
                                  "predictions_topic": f"freshcart.test.acl.predictions.{tag}",
                                  "stream_group": f"freshcart-test-acl-{tag}"})
    ensure_topics(own)
    yield own
    admin = admin_client(own)
    try:
        inputs = [own.events_topic, own.product_topic]
        admin.delete_topics([*inputs, own.dlq_topic, own.predictions_topic,
                             *(changelog_topic(own, t) for t in inputs)])
    finally:
        admin.close()


def test_redis_refuses_a_client_without_the_password(base: Settings) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=base.redis_port).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=base.redis_port, password="not-the-password").ping()
    assert redis.Redis.from_url(base.online_redis_url).ping()


def test_postgres_refuses_a_client_without_the_password(base: Settings) -> None:
    without = f"postgresql://{base.postgres_user}@127.0.0.1:{base.postgres_port}/freshcart"
    for dsn in (without, without.replace("@", ":not-the-password@")):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(dsn, connect_timeout=10)
    with psycopg.connect(base.postgres_dsn(), connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_kafka_refuses_a_client_without_credentials(base: Settings) -> None:
    with pytest.raises(KafkaError):  # PLAINTEXT against the SASL listener never bootstraps
        KafkaProducer(bootstrap_servers=base.bootstrap_servers, max_block_ms=5000, **TIMEOUTS)
    wrong = {**client_auth(base, "producer"), "sasl_plain_password": "not-the-password"}
    with pytest.raises(KafkaError):
        KafkaProducer(bootstrap_servers=base.bootstrap_servers, max_block_ms=5000, **wrong, **TIMEOUTS)


def test_each_principal_is_held_to_its_acls(topics: Settings) -> None:
    producer = make_producer(topics)  # freshcart-producer may write events ...
    producer.send(topics.events_topic, key=b"1", value=b'{"probe": 1}').get(timeout=30)
    with pytest.raises(KafkaError):  # ... and nothing else
        producer.send(topics.predictions_topic, value=b"{}").get(timeout=10)
    producer.close()

    def read(role: str) -> int:
        consumer = KafkaConsumer(bootstrap_servers=topics.bootstrap_servers, enable_auto_commit=False,
                                 **client_auth(topics, role), **TIMEOUTS)
        try:
            consumer.assign([TopicPartition(topics.events_topic, p) for p in range(topics.events_partitions)])
            consumer.seek_to_beginning()
            records = 0
            for _ in range(20):
                records += sum(len(batch) for batch in consumer.poll(timeout_ms=500).values())
                if records:
                    break
            return records
        finally:
            consumer.close()

    assert read("stream") == 1  # the stream processor reads the events topic
    assert read("serving") == 1  # and the scoring service, for the purchases it leaves out of recommendations
    for role in ("producer", "monitoring"):  # no other role gets the record
        try:
            assert read(role) == 0, role  # no DESCRIBE: the topic is not even in its metadata
        except TopicAuthorizationFailedError:  # DESCRIBE but no READ: the fetch is refused
            pass


def test_a_principal_cannot_join_a_group_its_acls_do_not_name(topics: Settings) -> None:
    consumer = KafkaConsumer(topics.events_topic, bootstrap_servers=topics.bootstrap_servers,
                             group_id=f"{topics.stream_group}-other", **client_auth(topics, "stream"), **TIMEOUTS)
    try:
        with pytest.raises(KafkaError, match="(?i)group"):
            for _ in range(20):
                consumer.poll(timeout_ms=500)
    finally:
        consumer.close()


@pytest.fixture
def mlflow_server(base: Settings, tmp_path) -> Iterator[tuple[str, Settings]]:
    """`make mlflow-ui` of the production profile (the basic-auth tracking server) on a store of its own."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    database = f"freshcart_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base.postgres_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = base.postgres_dsn(database).replace("postgresql://", "postgresql+psycopg://", 1)
    env = {**os.environ, "FRESHCART_PROFILE": "production", "FRESHCART_DATA_DIR": str(tmp_path),
           "FRESHCART_MLFLOW_TRACKING_URI": store}
    log = (tmp_path / "mlflow.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "freshcart.training.ui", "--port", str(port)], env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, (tmp_path / "mlflow.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "mlflow.log").read_text()[-3000:]
                time.sleep(1)
        client_settings = load_settings(profile="production", data_dir=tmp_path, mlflow_tracking_uri=url)
        yield url, client_settings
    finally:
        import signal

        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        log.close()
        with psycopg.connect(base.postgres_dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_mlflow_tracking_server_refuses_a_client_without_credentials(mlflow_server: tuple[str, Settings]) -> None:
    import base64
    import urllib.error
    import urllib.request

    url, settings = mlflow_server
    search = f"{url}/api/2.0/mlflow/experiments/search?max_results=5"

    def status(user: str | None, password: str | None) -> int:
        request = urllib.request.Request(search)
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert settings.mlflow_admin_password is not None  # generated by the server's start, read from the settings
    assert status(None, None) == 401
    assert status("admin", "not-the-password") == 401
    assert status("admin", settings.mlflow_admin_password.get_secret_value()) == 200

    from freshcart.training.registry import connect  # FreshCart's own client logs in with the settings

    client = connect(settings)
    assert client.get_experiment_by_name(settings.mlflow_experiment) is not None
