"""The stream processor's state lives in Kafka: changelog topics, restored by whoever gets a partition.

Two consumers run with separate data dirs (no shared disk) against the shared Redis online
store; one is SIGKILLed and its data dir deleted, the other restores the partitions it takes
over from their changelogs, and the online store ends equal to a from-scratch batch
recomputation. The changelog's transactions are checked on their own too: a crashed or fenced
owner's records never reach a restore.
"""

from __future__ import annotations

import re
import shutil
import signal
import time
import uuid
from pathlib import Path

import pytest
from kafka import TopicPartition

from freshcart import kafka_io
from freshcart.kafka_io import CHANGELOG_CONFIGS, changelog_topic
from freshcart.settings import Settings
from freshcart.stream.changelog import (
    META_KEY, ChangelogLost, ChangelogReader, ChangelogState, ChangelogWriter, encode_changes,
)
from freshcart.stream.processor import TaskState
from tests.integration.test_stream import (
    assert_online_equals_batch, assignment_blocks, messages_of, produce, production_stream, simulated,
    start_consumer, wait_for,
)

__all__ = ["production_stream"]  # the fixture, shared with test_stream.py
RESTORED = re.compile(r"restored (\S+)-(\d+) from ([a-z +()]+?) \((\d+) changelog records, (\d+) keys\)")


def restores(log: Path) -> list[tuple[str, int, str, int, int]]:
    """(topic, partition, source, changelog records read, keys) of each restore in a consumer log."""
    return [(m[1], int(m[2]), m[3], int(m[4]), int(m[5])) for m in RESTORED.finditer(log.read_text())]


def wait_for_changelogs(settings: Settings, timeout: float = 120) -> None:
    """Until every partition of both changelogs holds a checkpoint."""
    deadline = time.monotonic() + timeout
    for topic in (settings.events_topic, settings.product_topic):
        while min(kafka_io.end_offsets(settings, changelog_topic(settings, topic)).values()) == 0:
            assert time.monotonic() < deadline, f"no checkpoint in every partition of {topic}'s changelog"
            time.sleep(0.5)


def test_a_consumer_on_another_host_takes_partitions_over_from_the_changelog(
        production_stream: Settings, tmp_path: Path) -> None:
    """Host B joins while host A holds every partition, A is SIGKILLed and its data dir deleted; B restores what
    it gets from the changelogs alone, and the online store equals the batch computation of every event."""
    settings = production_stream
    host_a = settings.model_copy(update={"data_dir": tmp_path / "host-a"})
    host_b = settings.model_copy(update={"data_dir": tmp_path / "host-b"})
    events = simulated(24_000, seed=19)
    produce(settings, messages_of(events[:12_000]))
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    a = start_consumer(host_a, log_a)
    b = None
    try:
        wait_for(log_a, "freshcart.stream: restored")
        wait_for_changelogs(settings)
        b = start_consumer(host_b, log_b, idle=15.0)
        wait_for(log_b, "freshcart.stream: restored")
        produce(settings, messages_of(events[12_000:]))
        time.sleep(2)
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=30)
        shutil.rmtree(host_a.data_dir)
        assert b.wait(timeout=240) == 0, log_b.read_text()[-3000:]
    finally:
        a.kill()
        if b is not None:
            b.kill()
    assert max(assignment_blocks(log_b)) == 2 * settings.events_partitions
    taken = restores(log_b)
    assert {source for _, _, source, _, _ in taken} == {"changelog"}  # B has no cache of these partitions
    # the killed consumer's state came from Kafka: B rebuilt user partitions with thousands of keys
    users = [keys for topic, _, _, records, keys in taken if topic == settings.events_topic and records]
    assert len(users) >= settings.events_partitions and min(users) > 100
    assert_online_equals_batch(settings, events)

    again = tmp_path / "b-again.log"  # B once more, on its own disk: every partition from its cache
    restart = start_consumer(host_b, again, idle=4.0)
    try:
        assert restart.wait(timeout=180) == 0, again.read_text()[-3000:]
    finally:
        restart.kill()
    assert {source for _, _, source, _, _ in restores(again)} == {"cache"}
    assert re.search(r"consumed 0 messages .*: 0 accepted", again.read_text())
    assert_online_equals_batch(settings, events)


@pytest.fixture
def changelog(settings: Settings) -> TopicPartition:
    """A fresh changelog topic (one partition) with the processor's topic configs, deleted afterwards."""
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    from freshcart.kafka_io import admin_client

    name = f"freshcart.test.changelog.{uuid.uuid4().hex[:8]}"
    admin = admin_client(settings)
    admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1, "configs": CHANGELOG_CONFIGS}},
                        wait_for_metadata=True)
    if settings.auth:  # the stream processor's principal owns changelogs: let it write and read this one
        admin.create_acls([
            ACL("User:freshcart-stream", "*", operation, ACLPermissionType.ALLOW,
                ResourcePattern(kind, name, ACLResourcePatternType.PREFIXED if kind == ResourceType.TRANSACTIONAL_ID
                                else ACLResourcePatternType.LITERAL))
            for kind in (ResourceType.TOPIC, ResourceType.TRANSACTIONAL_ID)
            for operation in (ACLOperation.READ, ACLOperation.WRITE, ACLOperation.DESCRIBE)
            if not (kind == ResourceType.TRANSACTIONAL_ID and operation == ACLOperation.READ)])
    yield TopicPartition(name, 0)
    admin.delete_topics([name])
    admin.close()


def checkpoint_records(products: range, next_offset: int, meta: TaskState) -> list:
    meta.next_offset = next_offset
    return encode_changes({"products": {p: f"state of {p} at {next_offset}" for p in products}}, meta, 0)


def test_only_committed_checkpoints_restore_and_a_fenced_owner_cannot_write(
        settings: Settings, changelog: TopicPartition) -> None:
    """A checkpoint left open by a crashed owner is aborted when the next owner takes the partition; the old
    owner's later commit fails; a restore reads the last committed checkpoint, whole."""
    meta = TaskState()
    old = ChangelogWriter(settings, changelog.topic, 0, "test-old")
    old.open()
    first = old.commit(checkpoint_records(range(100), 50, meta))
    crashed = checkpoint_records(range(50, 300), 90, meta)
    old.stage(crashed)  # sent, never committed
    new = ChangelogWriter(settings, changelog.topic, 0, "test-new")
    reader = ChangelogReader(settings, "test-reader")
    try:
        new.open()
        state = ChangelogState()
        for _, offset, key, value in reader.read({changelog: 0}):
            state.add(offset, key, value)
        assert state.records == 101 and state.meta is not None
        assert state.meta.next_offset == 50 and state.meta.changelog_offset == first
        assert sorted(state.part["products"]) == list(range(100))
        assert state.part["products"][99] == "state of 99 at 50"
        with pytest.raises(ChangelogLost):
            old.commit(crashed)
        latest = new.commit(checkpoint_records(range(90, 110), 120, state.meta))
        # the coordinator answers a commit before its markers are written: wait for the last stable offset
        deadline = time.monotonic() + 30
        while reader.end_offsets([changelog])[changelog] <= latest and time.monotonic() < deadline:
            time.sleep(0.1)
        state = ChangelogState()
        records = list(reader.read({changelog: first}))
        assert [key for _, _, key, _ in records][0] == META_KEY and records[-1][1] == latest
        for _, offset, key, value in records:
            state.add(offset, key, value)
        assert state.meta.next_offset == 120 and state.meta.checkpoint == 2
        assert state.part["products"] == {p: f"state of {p} at 120" for p in range(90, 110)}
    finally:
        for closing in (old, new, reader):
            closing.close()
