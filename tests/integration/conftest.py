"""Integration tests talk to real servers: the broker `make test` starts (`freshcart services up`)."""

from __future__ import annotations

import uuid

import pytest
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
