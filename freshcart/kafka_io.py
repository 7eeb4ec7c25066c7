"""Kafka plumbing shared by the simulator, the demo and the stream processor:
topics, principals and their ACLs, a paced producer and a simple read-back consumer (kafka-python 3).

Every client passes its role (``admin``, ``producer``, ``stream``, ``serving``, ``monitoring``) to
:func:`client_auth`, which gives it that role's SASL/SCRAM credentials when they are on."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from freshcart.kafka_acls import acl_specs
from freshcart.privacy.pseudonym import Pseudonymiser
from freshcart.schema import BROKER_MAX_MESSAGE_BYTES
from freshcart.settings import Settings

SCRAM_MECHANISM = "SCRAM-SHA-512"

CHANGELOG_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": str(64 << 20),
                     "max.message.bytes": str(BROKER_MAX_MESSAGE_BYTES)}
"""Topic configs of a stream changelog: compacted (the latest record per state key), in segments small enough
for the cleaner to compact while the partition is written."""


def changelog_topic(settings: Settings, topic: str) -> str:
    """The compacted topic that holds the stream processor's keyed state of ``topic`` (one partition per partition)."""
    return f"{settings.stream_group}-{topic}-changelog"


def topic_specs(settings: Settings) -> dict[str, dict]:
    """The topics FreshCart needs: events (keyed by user_id), dead letters, events re-partitioned by product,
    the scoring service's prediction log (keyed by user_id) and the stream processor's state changelogs."""
    return {
        settings.events_topic: {"num_partitions": settings.events_partitions, "replication_factor": 1},
        settings.dlq_topic: {"num_partitions": 1, "replication_factor": 1},
        settings.product_topic: {"num_partitions": settings.events_partitions, "replication_factor": 1},
        settings.predictions_topic: {"num_partitions": settings.predictions_partitions, "replication_factor": 1},
        **{changelog_topic(settings, topic): {"num_partitions": settings.events_partitions, "replication_factor": 1,
                                               "configs": CHANGELOG_CONFIGS}
           for topic in (settings.events_topic, settings.product_topic)},
    }


def client_auth(settings: Settings, role: str) -> dict[str, str]:
    """The kafka-python options that authenticate a client as ``role`` (none when credentials are off)."""
    credentials = settings.kafka_credentials(role)
    if credentials is None:
        return {}
    username, password = credentials
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": SCRAM_MECHANISM,
            "sasl_plain_username": username, "sasl_plain_password": password}


def librdkafka_auth(settings: Settings, role: str) -> dict[str, str]:
    """The same credentials as :func:`client_auth`, as librdkafka (``confluent_kafka``) configuration."""
    options = client_auth(settings, role)
    if not options:
        return {}
    return {"security.protocol": options["security_protocol"], "sasl.mechanism": options["sasl_mechanism"],
            "sasl.username": options["sasl_plain_username"], "sasl.password": options["sasl_plain_password"]}


def admin_client(settings: Settings, client_id: str = "freshcart-admin", role: str = "admin") -> KafkaAdminClient:
    """An admin client of the broker, as the admin principal unless told otherwise."""
    return KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, client_id=client_id,
                            **client_auth(settings, role))


def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics and give each role its ACLs on them; the names of the topics created."""
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = {name: spec for name, spec in topic_specs(settings).items() if name not in existing}
        if missing:
            admin.create_topics(missing, timeout_ms=30_000, wait_for_metadata=True)
        if settings.auth:
            ensure_acls(admin, settings)
        return sorted(missing)
    finally:
        admin.close()


def ensure_principals(settings: Settings) -> None:
    """Give every role's principal its SCRAM-SHA-512 credential (the current password; the admin's is set when
    the storage is formatted)."""
    if not settings.auth:
        return
    from kafka.admin import UserScramCredentialUpsertion

    from freshcart.credentials import KAFKA_ROLES

    upserts = []
    for role in KAFKA_ROLES:
        if role != "admin":
            username, password = settings.kafka_credentials(role)  # type: ignore[misc]
            upserts.append(UserScramCredentialUpsertion(username, SCRAM_MECHANISM, password))
    admin = admin_client(settings)
    try:
        errors = {user: error for user, error in admin.alter_user_scram_credentials(upserts).items() if error}
    finally:
        admin.close()
    if errors:
        raise RuntimeError(f"kafka: could not set the SCRAM credentials of {errors}")


def ensure_acls(admin: KafkaAdminClient, settings: Settings) -> None:
    """Create the ACLs of :func:`freshcart.kafka_acls.acl_specs` (creating an existing ACL is a no-op)."""
    from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePatternFilter
    from kafka.admin import ResourceType

    wanted = acl_specs(settings)
    result = admin.create_acls(wanted)
    if result["failed"]:
        raise RuntimeError(f"kafka: could not create ACLs: {result['failed']}")
    everything = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                           permission_type=ACLPermissionType.ANY,
                           resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:  # the authorizer applies new ACLs from the metadata log a moment later
        found, _ = admin.describe_acls(everything)
        if set(wanted) <= set(found):
            return
        time.sleep(0.1)
    raise RuntimeError("kafka: the new ACLs did not become visible within 30 s; see the broker's log")


def make_producer(settings: Settings, role: str = "producer", **overrides: object) -> KafkaProducer:
    """An idempotent producer (acks=all) tuned for throughput with small lingering, authenticated as ``role``."""
    config: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers,
        **client_auth(settings, role),
        "client_id": "freshcart-producer",
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_request_size": BROKER_MAX_MESSAGE_BYTES,
    }
    config.update(overrides)
    return KafkaProducer(**config)


@dataclass
class ProduceSummary:
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def produce(
    producer: KafkaProducer,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]],
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
    pseudonymiser: Pseudonymiser | None = None,
) -> ProduceSummary:
    """Send (key, value) pairs, paced at ``rate`` messages/s when given; flush at the end.

    With a ``pseudonymiser`` (event messages: key the user id, value its JSON) the user id of each message
    is replaced by its pseudonym before it is sent."""
    started = time.perf_counter()
    if pseudonymiser is not None:
        messages = pseudonymiser.messages(messages)
    sent = 0
    for key, value in messages:
        producer.send(topic, key=key, value=value)
        sent += 1
        if rate and sent % max(1, int(rate // 50)) == 0:
            ahead = sent / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
        if progress is not None and sent % 1000 == 0:
            progress(1000)
    producer.flush()
    if progress is not None and sent % 1000:
        progress(sent % 1000)
    return ProduceSummary(messages=sent, seconds=time.perf_counter() - started)


def end_offsets(settings: Settings, topic: str, role: str = "admin") -> dict[int, int]:
    """The next offset of every partition of ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, client_id="freshcart-offsets",
                             **client_auth(settings, role))
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            raise ValueError(f"topic {topic!r} does not exist on {settings.bootstrap_servers}")
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def read_range(
    settings: Settings, topic: str, start: dict[int, int], stop: dict[int, int], timeout_s: float = 60.0,
    role: str = "admin",
) -> Iterator[ConsumerRecord]:
    """Yield the records of ``topic`` between two offset snapshots (no consumer group)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False, **client_auth(settings, role),
        max_poll_records=5000, client_id="freshcart-range-reader",
    )
    try:
        wanted = {TopicPartition(topic, p): stop[p] for p in stop if stop[p] > start.get(p, 0)}
        consumer.assign(list(wanted))
        for tp in wanted:
            consumer.seek(tp, start.get(tp.partition, 0))
        deadline = time.monotonic() + timeout_s
        while wanted and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    if record.offset < wanted.get(tp, -1):
                        yield record
                if tp in wanted and consumer.position(tp) >= wanted[tp]:
                    del wanted[tp]
        if wanted:
            raise TimeoutError(f"could not read {topic} up to {stop} within {timeout_s:.0f}s")
    finally:
        consumer.close()
