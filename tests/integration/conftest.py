"""Integration tests talk to real servers: the broker `make test` starts (`freshcart services up`)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
import redis
from kafka import KafkaAdminClient

from freshcart.services.process import port_open
from freshcart.settings import Settings, load_settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    settings = load_settings()
    if not port_open(settings.kafka_host, settings.kafka_port):
        pytest.fail(
            f"no Kafka broker on {settings.bootstrap_servers}: run `freshcart services up` "
            "(make test does this for you)"
        )
    return settings


@pytest.fixture
def topic(settings: Settings):
    """A fresh topic with the events topic's partitioning, deleted afterwards."""
    name = f"freshcart.test.{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    admin.create_topics(
        {name: {"num_partitions": settings.events_partitions, "replication_factor": 1}},
        wait_for_metadata=True,
    )
    admin.close()
    yield name
    # best-effort cleanup with a fresh client: a test may have restarted the broker meanwhile
    try:
        cleanup = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        try:
            cleanup.delete_topics([name])
        finally:
            cleanup.close()
    except Exception as exc:  # noqa: BLE001 - a leftover test topic must not fail the test
        print(f"could not delete test topic {name}: {exc}")


REDIS_DB = 11  # the tests' own Redis database, flushed before and after each test


@pytest.fixture
def local(tmp_path: Path) -> Settings:
    return load_settings(profile="local", data_dir=tmp_path)


@pytest.fixture
def production(tmp_path: Path) -> Iterator[Settings]:
    """Production settings on the servers `make test` started, with a fresh registry database and Redis db."""
    base = load_settings()
    for name, port in (("Redis", base.redis_port), ("PostgreSQL", base.postgres_port)):
        if not port_open("127.0.0.1", port):
            pytest.fail(f"no {name} on 127.0.0.1:{port}: run `FRESHCART_PROFILE=production freshcart services up` "
                        "(make test does this for you)")
    database = f"freshcart_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base.postgres_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    client = redis.Redis(host="127.0.0.1", port=base.redis_port, db=REDIS_DB)
    client.flushdb()
    yield load_settings(profile="production", data_dir=tmp_path, postgres_url=base.postgres_dsn(database),
                        redis_url=f"redis://127.0.0.1:{base.redis_port}/{REDIS_DB}")
    client.flushdb()
    client.close()
    with psycopg.connect(base.postgres_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
