"""The stream processor against the real broker and online stores, run as users run it: `freshcart stream consume`.

Each test gets its own topics, consumer group and data dir (a copy of one applied Feast
repository), produces simulated events, runs one or more consumer processes and compares
every online feature with a from-scratch batch recomputation of the accepted events
(:func:`freshcart.stream.verify.verify_online`, the parity harness on the online side).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest

from freshcart.features.store import apply, feature_store
from freshcart import kafka_io
from freshcart.kafka_io import changelog_topic, ensure_topics, make_producer
from freshcart.schema import Event, TimeBounds, validate_record
from freshcart.services import kafka as kafka_service
from freshcart.settings import Settings, load_settings
from freshcart.simulator import SimulationConfig, iter_records
from freshcart.simulator.faults import inject_faults
from freshcart.stream.consumer import CONSUMER_SETTINGS, StreamProcessor
from freshcart.stream.dlq import read_dead_letters
from freshcart.stream.verify import verify_online



def simulated(n: int, seed: int) -> list[Event]:
    config = SimulationConfig(seed=seed, users=600, products=300, categories=10, days=1, events_per_day=n)
    bounds = TimeBounds.around(config.end, load_settings().event_time_floor, 86_400)
    events = [validate_record(r, bounds) for r in itertools.islice(iter_records(config), n)]
    assert all(isinstance(e, Event) for e in events)
    return events  # type: ignore[return-value]


@pytest.fixture(scope="module")
def applied_local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with the Feast repository applied (local profile); each test copies it."""
    root = tmp_path_factory.mktemp("applied")
    result = apply(load_settings(profile="local", data_dir=root))
    assert result.returncode == 0
    return root


def stream_settings(base: Settings, data_dir: Path, **overrides: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return base.model_copy(update={
        "data_dir": data_dir, "events_topic": f"freshcart.test.events.{tag}",
        "product_topic": f"freshcart.test.by-product.{tag}", "dlq_topic": f"freshcart.test.dlq.{tag}",
        "stream_group": f"freshcart-test-{tag}", "stream_metrics_port": 0, "stream_checkpoint_seconds": 1.0,
        "stream_batch_size": 500, **overrides})


@pytest.fixture
def local_stream(settings: Settings, applied_local: Path, tmp_path: Path) -> Iterator[Settings]:
    data_dir = tmp_path / "data"
    shutil.copytree(applied_local, data_dir)
    stream = stream_settings(load_settings(profile="local", data_dir=data_dir), data_dir)
    ensure_topics(stream)
    yield stream
    delete_topics(stream)


@pytest.fixture
def production_stream(settings: Settings, production: Settings) -> Iterator[Settings]:
    assert apply(production).returncode == 0
    stream = stream_settings(production, production.data_dir)
    ensure_topics(stream)
    yield stream
    delete_topics(stream)


def delete_topics(settings: Settings) -> None:
    from freshcart.kafka_io import admin_client

    try:
        admin = admin_client(settings)
        try:
            inputs = [settings.events_topic, settings.product_topic]
            admin.delete_topics([*inputs, settings.dlq_topic, *(changelog_topic(settings, t) for t in inputs)])
        finally:
            admin.close()
    except Exception as exc:  # noqa: BLE001 - a leftover test topic must not fail the test
        print(f"could not delete the test topics: {exc}")


def start_consumer(settings: Settings, log: Path, idle: float | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "freshcart", "stream", "consume"]
    if idle is not None:
        args += ["--stop-when-idle", str(idle)]
    return subprocess.Popen(args, env=settings.child_env(CONSUMER_SETTINGS), stdout=log.open("a"),
                            stderr=subprocess.STDOUT)


def run_until_idle(settings: Settings, log: Path, idle: float = 4.0, timeout: float = 180) -> None:
    process = start_consumer(settings, log, idle)
    try:
        assert process.wait(timeout=timeout) == 0, log.read_text()[-3000:]
    finally:
        process.kill()


def produce(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(settings)
    kafka_io.produce(producer, settings.events_topic, messages)
    producer.close()


def assert_online_equals_batch(settings: Settings, accepted: list[Event]) -> None:
    report = verify_online(feature_store(settings), accepted)
    assert report.rows > 1000 and report.values > 5000
    assert report.ok, report.summary()


def wait_for(log: Path, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} not in {log}: {log.read_text()[-2000:]}"
        time.sleep(0.3)


def assignment_blocks(log: Path) -> list[int]:
    """Sizes of the runs of consecutive "assigned <partition>" lines of a consumer log."""
    blocks, run = [], 0
    for line in log.read_text().splitlines():
        if "freshcart.stream: assigned" in line:
            run += 1
        elif "freshcart.stream: released" in line and run:
            blocks.append(run)
            run = 0
    return blocks + ([run] if run else [])


def messages_of(events: list[Event]) -> list[tuple[bytes, bytes]]:
    return [(e.key, e.to_json()) for e in events]


@pytest.mark.parametrize("profile", ["local", "production"])
def test_end_to_end_with_poison_and_duplicates(profile: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """1% poison messages and re-sent duplicates: online features equal the batch computation of the
    valid events, each poison message is a dead letter with its reason, no valid event is lost."""
    settings: Settings = request.getfixturevalue(f"{profile}_stream")
    events = simulated(8_000, seed=3)
    mixed = list(inject_faults(events, share=0.01, seed=5))
    expected = Counter(m.reason for m in mixed if m.reason)
    assert sum(expected.values()) >= 50 and len(expected) == 8
    duplicates = random.Random(1).sample(events, 200)
    produce(settings, [(m.key, m.value) for m in mixed] + messages_of(duplicates))

    log = tmp_path / "consumer.log"
    run_until_idle(settings, log)
    assert_online_equals_batch(settings, events)

    dlq = read_dead_letters(settings, samples=1)
    # a re-sent copy is dropped as a duplicate, or, when its time is already older than the allowed
    # lateness, dead-lettered as late: never applied twice
    late = dlq.by_reason.pop("late", 0)
    assert dict(dlq.by_reason) == dict(expected)
    sample = dlq.samples["negative_price"][0]
    assert json.loads(sample.value)["price"] < 0  # the original bytes
    assert sample.headers["source_topic"] == settings.events_topic and int(sample.headers["source_offset"]) >= 0
    summary = log.read_text()
    assert f"{len(events):,} accepted" in summary and f"{200 - late:,} duplicates" in summary
    # the offline store got the same rows: every user that has an online row has stream rows offline
    offline = list((settings.feature_tables_dir / "user_activity").rglob("stream-*.parquet"))
    assert offline


def test_sigkill_at_several_points_then_exact_recovery(local_stream: Settings, tmp_path: Path) -> None:
    """SIGKILL three times mid-stream, restart each time: nothing lost, nothing counted twice."""
    settings = local_stream
    events = simulated(30_000, seed=7)
    produce(settings, messages_of(events))
    log = tmp_path / "consumer.log"
    for delay in (2.5, 4.0, 3.0):
        process = start_consumer(settings, log)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    kills = log.read_text()
    run_until_idle(settings, log)
    text = log.read_text()
    assert "replaying" in text[len(kills):] or "from offset" in text[len(kills):]
    assert_online_equals_batch(settings, events)


def test_late_and_out_of_order_events(local_stream: Settings, tmp_path: Path) -> None:
    """Events shuffled within a few minutes are applied; events older than the allowed lateness are
    dead letters with reason "late"."""
    settings = local_stream.model_copy(update={"stream_allowed_lateness_seconds": 600})
    events = simulated(8_000, seed=9)
    rng = random.Random(2)
    jittered = sorted(events, key=lambda e: e.event_time + timedelta(seconds=rng.uniform(0, 240)))
    late = [e for e in events[1_000:5_000] if rng.random() < 0.01]  # copies, 3 h older, sent after event 6,000
    late = [dataclasses.replace(e, event_id=e.event_id + "-late", event_time=e.event_time - timedelta(hours=3))
            for e in late]
    stream_order = jittered[:6_000] + late + jittered[6_000:]
    produce(settings, messages_of(stream_order))
    run_until_idle(settings, tmp_path / "consumer.log")
    assert_online_equals_batch(settings, events)
    dlq = read_dead_letters(settings)
    assert dlq.by_reason == Counter({"late": len(late)}) and len(late) >= 10


def test_broker_restart_mid_stream(local_stream: Settings, tmp_path: Path) -> None:
    """The broker stops and starts again while the consumer runs; the consumer carries on, then
    SIGTERM flushes, commits and exits 0."""
    settings = local_stream
    events = simulated(10_000, seed=13)
    produce(settings, messages_of(events[:5_000]))
    log = tmp_path / "consumer.log"
    process = start_consumer(settings, log)
    try:
        time.sleep(6)
        base = load_settings()
        kafka_service.stop(base)
        time.sleep(3)
        kafka_service.start(base)
        produce(settings, messages_of(events[5_000:]))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "consumed" not in log.read_text():
            if verify_online(feature_store(settings), events).ok:
                break
            time.sleep(3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        process.kill()
    assert "consumed" in log.read_text()
    assert_online_equals_batch(settings, events)


def test_two_consumers_one_killed(local_stream: Settings, tmp_path: Path) -> None:
    """Two consumers share the partitions; one is SIGKILLed midway, the other takes over its partitions."""
    settings = local_stream
    events = simulated(24_000, seed=17)
    produce(settings, messages_of(events[:12_000]))
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    a = start_consumer(settings, first)
    b = None
    try:
        wait_for(first, "freshcart.stream: assigned")
        b = start_consumer(settings, second, idle=15.0)
        wait_for(second, "freshcart.stream: assigned")
        produce(settings, messages_of(events[12_000:]))
        time.sleep(2)
        a.send_signal(signal.SIGKILL)
        assert b.wait(timeout=240) == 0, second.read_text()[-3000:]
    finally:
        a.kill()
        if b is not None:
            b.kill()
    # the second consumer started while the first held every partition, so holding all eight
    # (4 events + 4 by-product partitions) at once means it took the killed one's over
    assert max(assignment_blocks(second)) == 2 * settings.events_partitions
    assert_online_equals_batch(settings, events)


def test_a_consumer_whose_assignment_never_comes_joins_again(local_stream: Settings,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A member left without its assignment after a rebalance leaves the group and joins again, then
    processes everything (here the first assignment is swallowed before the processor sees it)."""
    settings = local_stream
    events = simulated(3_000, seed=11)
    produce(settings, messages_of(events))
    processor = StreamProcessor(settings, max_idle_s=3.0, rejoin_after_s=3.0)
    acquire, swallowed = processor.acquire, []

    def first_assignment_lost(assigned: set) -> None:
        if swallowed:
            acquire(assigned)
        else:
            swallowed.append(assigned)

    processor.acquire = first_assignment_lost  # type: ignore[method-assign]
    with caplog.at_level("INFO", logger="freshcart.stream"):
        summary = processor.run()
    assert len(swallowed) == 1 and len(swallowed[0]) == 2 * settings.events_partitions
    assert "leaving the group and joining again" in caplog.text
    assert summary.accepted == len(events)
    assert_online_equals_batch(settings, events)
