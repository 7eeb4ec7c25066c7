"""The real broker: 10,000 simulated events produced, consumed back identical, kept across a restart."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections import defaultdict

import pytest

from freshcart.kafka_io import end_offsets, make_producer, produce, read_range
from freshcart.schema import Event, TimeBounds, event_from_json, validate_record
from freshcart.simulator import SimulationConfig, iter_records

N_EVENTS = 10_000


@pytest.fixture(scope="module")
def events(settings) -> list[Event]:
    config = SimulationConfig(seed=11, users=1_500, products=800, categories=12, days=1, events_per_day=12_000)
    records = list(itertools.islice(iter_records(config), N_EVENTS))
    assert len(records) == N_EVENTS
    bounds = TimeBounds.around(config.end, settings.event_time_floor, 86_400)
    parsed = [validate_record(r, bounds) for r in records]
    assert all(isinstance(e, Event) for e in parsed), "simulated records must all be valid"
    return parsed


def _read_all(settings, topic, bounds):
    stop = end_offsets(settings, topic)
    return [(m.partition, m.key, event_from_json(m.value, bounds)) for m in read_range(settings, topic, {}, stop)]


def test_produce_consume_restart(settings, topic, events):
    bounds = TimeBounds.around(max(e.event_time for e in events), settings.event_time_floor, 3600)
    producer = make_producer(settings, "admin")  # a test topic: no role's ACLs name it
    summary = produce(producer, topic, ((e.key, e.to_json()) for e in events))
    producer.close()
    assert summary.messages == N_EVENTS

    back = _read_all(settings, topic, bounds)
    assert len(back) == N_EVENTS
    by_id = {e.event_id: e for _, _, e in back}
    assert by_id == {e.event_id: e for e in events}  # identical ids and contents
    # Keyed by user: one user's events share a partition and keep their order.
    partitions, order = defaultdict(set), defaultdict(list)
    for partition, key, event in back:
        assert key == str(event.user_id).encode()
        partitions[event.user_id].add(partition)
        order[event.user_id].append(event.event_id)
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) == settings.events_partitions
    sent_order = defaultdict(list)
    for e in events:
        sent_order[e.user_id].append(e.event_id)
    assert order == sent_order

    # Restart the broker: the data is still there.
    cli = [sys.executable, "-m", "freshcart", "services"]
    down = subprocess.run([*cli, "down"], capture_output=True, text=True, timeout=120)
    assert "kafka stopped" in down.stdout, down.stdout + down.stderr
    # `down` stopped every server; bring back the production profile's too, which later tests use
    up = subprocess.run([*cli, "up"], capture_output=True, text=True, timeout=120,
                        env={**os.environ, "FRESHCART_PROFILE": "production"})
    assert "kafka started" in up.stdout, up.stdout + up.stderr
    again = _read_all(settings, topic, bounds)
    assert {e.event_id: e for _, _, e in again} == by_id
