"""The stream processor's logic without Kafka: decoding, dead-letter reasons, duplicates, lateness,
the product re-partitioning, the checkpoint store and the changelog records."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import pytest

from freshcart.features import spec
from freshcart.schema import MAX_MESSAGE_BYTES, Event, TimeBounds, validate_record
from freshcart.settings import load_settings
from freshcart.simulator import SimulationConfig, iter_records
from freshcart.simulator.faults import FAULT_REASONS, inject_faults
from freshcart.stream.changelog import ChangelogState, encode_changes
from freshcart.stream.checkpoint import CheckpointStore
from freshcart.stream.processor import ProductTask, UserTask, encode_forwarded
from freshcart.stream.sinks import rows_to_table
from freshcart.stream.verify import batch_latest

LATENESS_US = 600 * 1_000_000
PARTITIONS = 3


@pytest.fixture(scope="module")
def events() -> list[Event]:
    config = SimulationConfig(seed=21, users=300, products=150, categories=8, days=1, events_per_day=4_000)
    bounds = TimeBounds.around(config.end, load_settings().event_time_floor, 86_400)
    return [validate_record(r, bounds) for r in itertools.islice(iter_records(config), 4_000)]


def bounds_for(events: list[Event]) -> TimeBounds:
    return TimeBounds.around(max(e.event_time for e in events), load_settings().event_time_floor, 3_600)


def run_two_stages(messages: list[bytes], users: dict[int, UserTask], products: dict[int, ProductTask],
                   bounds: TimeBounds, partition_of, resend_product: bool = False) -> dict[str, dict[tuple, dict]]:
    """Feed messages through user tasks, forward to product tasks (optionally twice), collect latest rows."""
    latest: dict[str, dict[tuple, dict]] = {name: {} for name in spec.VIEWS}
    offsets = {p: 0 for p in users}
    forwards: dict[int, dict[int, list]] = {}
    for value in messages:
        p = partition_of(json.loads(value)["user_id"]) if value[:1] == b"{" else 0
        task = users[p]
        outcome = task.apply(offsets[p], value, 0, bounds)
        offsets[p] += 1
        for row in outcome.rows:
            latest[row.view][row.key] = row.values
        if outcome.user_id is not None:
            for row in task.rows_of(outcome.user_id):
                latest[row.view][row.key] = row.values
            f = outcome.forwarded
            forwards.setdefault(f.product_id % len(products), {}).setdefault(p, []).append(f)
    for q, by_source in forwards.items():
        messages_q = [encode_forwarded(src, evs) for src, evs in by_source.items()]
        if resend_product:
            messages_q += messages_q  # a replay after a crash re-sends what was already forwarded
        for offset, value in enumerate(messages_q):
            applied, _ = products[q].apply(offset, value)
            for event in applied:
                for row in products[q].rows_of(event.product_id):
                    latest[row.view][row.key] = row.values
    return latest


def test_partitioned_stages_equal_the_batch_computation(events: list[Event]) -> None:
    """Users sharded over partitions, products re-partitioned, copies re-sent: the rows equal batch."""
    users = {p: UserTask(p, LATENESS_US) for p in range(PARTITIONS)}
    products = {q: ProductTask(q) for q in range(PARTITIONS)}
    latest = run_two_stages([e.to_json() for e in events], users, products, bounds_for(events),
                            lambda user_id: user_id % PARTITIONS, resend_product=True)
    expected = batch_latest(events)
    for name in spec.VIEWS:
        assert latest[name].keys() == expected[name].keys(), name
        for key, values in expected[name].items():
            for feature, value in values.items():
                got = latest[name][key][feature]
                assert got == pytest.approx(value) if isinstance(value, float) else got == value, (name, key, feature)


def test_every_poison_message_gets_its_reason_and_valid_events_pass(events: list[Event]) -> None:
    messages = list(inject_faults(events[:2_000], share=0.05, seed=3))
    task = UserTask(0, LATENESS_US)
    reasons, accepted = [], 0
    for offset, message in enumerate(messages):
        outcome = task.apply(offset, message.value, 0, bounds_for(events))
        if outcome.rejection is not None:
            reasons.append((message.reason, outcome.rejection.reason))
        else:
            accepted += 1
    assert accepted == 2_000
    assert {expected for expected, _ in reasons} == set(FAULT_REASONS)
    assert all(expected == got for expected, got in reasons)
    assert task.apply(len(messages), b"x" * (MAX_MESSAGE_BYTES + 1), 0, bounds_for(events)).rejection.reason \
        == "oversized"


def test_duplicates_count_once_and_late_events_are_rejected(events: list[Event]) -> None:
    task = UserTask(0, LATENESS_US)
    bounds = bounds_for(events)
    first = events[100]
    assert task.apply(0, first.to_json(), 0, bounds).user_id == first.user_id
    assert task.apply(1, first.to_json(), 0, bounds).duplicate
    views = task.features.users[first.user_id].tiles.sums(int(first.event_time.timestamp()), 86_400, 30)[0]
    assert views == (1 if first.event_type == "view" else 0)
    later = events[-1]
    task.apply(2, later.to_json(), 0, bounds)
    old = Event(**{**{f: getattr(first, f) for f in first.__dataclass_fields__}, "event_id": "new-id",
                   "event_time": later.event_time - timedelta(seconds=601)})
    outcome = task.apply(3, old.to_json(), 0, bounds)
    assert outcome.rejection is not None and outcome.rejection.reason == "late"
    within = Event(**{**{f: getattr(first, f) for f in first.__dataclass_fields__}, "event_id": "newer-id",
                      "event_time": later.event_time - timedelta(seconds=599)})
    assert task.apply(4, within.to_json(), 0, bounds).rejection is None
    assert task.meta.next_offset == 5


def test_checkpoint_round_trip_and_compaction(tmp_path: Path, events: list[Event], monkeypatch) -> None:
    import freshcart.stream.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "COMPACT_MIN_BYTES", 10_000)
    bounds = bounds_for(events)
    store = CheckpointStore(tmp_path / "p0.sqlite")
    task = UserTask(0, LATENESS_US)
    for offset, event in enumerate(events):
        task.apply(offset, event.to_json(), 0, bounds)
        if offset % 500 == 499:
            task.prune_seen()
            store.save(encode_changes(task.changes(), task.meta, task.watermark_us), task.meta, task.watermark_us)
    task.prune_seen()
    store.save(encode_changes(task.changes(), task.meta, task.watermark_us), task.meta, task.watermark_us)
    store.mark_written(len(events) + 7)
    entries = store.conn.execute("SELECT count(*) FROM changelog").fetchone()[0]
    assert entries < len(events) // 500  # compacted at least once
    store.close()

    parts, meta = CheckpointStore(tmp_path / "p0.sqlite").load()
    restored = UserTask(0, LATENESS_US)
    restored.restore(parts, meta)
    assert meta.next_offset == len(events) and meta.written_offset == len(events) + 7
    assert meta.max_event_us == task.meta.max_event_us
    for user_id in list(task.features.users)[:50]:
        assert [r.values for r in restored.rows_of(user_id)] == [r.values for r in task.rows_of(user_id)]
    task.prune_seen()
    assert set(restored.seen) == set(task.seen) and restored.seen


def test_rows_to_table_uses_the_view_schema(events: list[Event]) -> None:
    task = UserTask(0, LATENESS_US)
    outcome = task.apply(0, events[0].to_json(), 0, bounds_for(events))
    rows = task.rows_of(outcome.user_id)
    table = rows_to_table("user_activity", [r for r in rows if r.view == "user_activity"])
    assert table.schema == spec.VIEWS["user_activity"].schema
    assert table.num_rows == 1 and table["user_id"][0].as_py() == events[0].user_id


def test_stream_cli_help_and_bad_writer() -> None:
    from typer.testing import CliRunner

    from freshcart.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["stream", "--help"])
    assert result.exit_code == 0 and all(c in result.output for c in ("consume", "status", "dlq"))
    bad = runner.invoke(app, ["stream", "consume", "--writer", "bogus"])
    assert bad.exit_code == 2 and "--writer 'bogus'" in bad.output


def test_changelog_records_restore_the_state_before_and_after_compaction(events: list[Event]) -> None:
    """The records of every checkpoint, read back in order, or only the latest record of each key (what Kafka's
    compaction keeps), restore the same features, seen ids and position; expired seen-id batches get tombstones."""
    bounds = bounds_for(events)
    task = UserTask(0, LATENESS_US)
    log: list[tuple[bytes, bytes | None]] = []
    for offset, event in enumerate(events):
        task.apply(offset, event.to_json(), 0, bounds)
        if offset % 500 == 499 or offset == len(events) - 1:
            task.prune_seen()
            log.extend(encode_changes(task.changes(), task.meta, task.watermark_us))
    tombstones = [key for key, value in log if value is None]
    assert tombstones and all(key.startswith(b"s:") for key in tombstones)
    assert all(latest >= task.watermark_us for latest in task.meta.seen_batches.values())
    latest_per_key = {key: (offset, value) for offset, (key, value) in enumerate(log)}
    compacted = sorted((offset, key, value) for key, (offset, value) in latest_per_key.items())
    task.prune_seen()
    for records in ([(offset, key, value) for offset, (key, value) in enumerate(log)], compacted):
        state = ChangelogState()
        for offset, key, value in records:
            state.add(offset, key, value)
        restored = UserTask(0, LATENESS_US)
        restored.restore([state.part], state.meta)
        assert restored.meta.next_offset == len(events) and restored.meta.changelog_offset == len(log) - 1
        assert restored.meta.max_event_us == task.meta.max_event_us
        assert restored.meta.seen_batches == task.meta.seen_batches
        assert set(restored.seen) == set(task.seen) and restored.seen
        assert restored.features.users.keys() == task.features.users.keys()
        for user_id in task.features.users:
            assert [r.values for r in restored.rows_of(user_id)] == [r.values for r in task.rows_of(user_id)]


def test_product_changelog_keeps_the_applied_source_offsets(events: list[Event]) -> None:
    products = ProductTask(1)
    forwarded = [UserTask(2, LATENESS_US).apply(i, e.to_json(), 0, bounds_for(events)).forwarded
                 for i, e in enumerate(events[:300])]
    products.apply(0, encode_forwarded(2, forwarded))
    state = ChangelogState()
    for offset, (key, value) in enumerate(encode_changes(products.changes(), products.meta, 0)):
        state.add(offset, key, value)
    restored = ProductTask(1)
    restored.restore([state.part], state.meta)
    assert restored.meta.applied == {2: 300} and restored.meta.next_offset == 1
    applied, skipped = restored.apply(1, encode_forwarded(2, forwarded))  # a replay after a crash
    assert applied == [] and skipped == 300
    assert {p: restored.rows_of(p)[0].values for p in products.features.products} == \
        {p: products.rows_of(p)[0].values for p in products.features.products}


def test_a_cache_of_snapshot_then_changelog_records_restores_the_latest_state(tmp_path: Path,
                                                                             events: list[Event]) -> None:
    bounds = bounds_for(events)
    task = UserTask(0, LATENESS_US)
    half = len(events) // 2
    for offset, event in enumerate(events[:half]):
        task.apply(offset, event.to_json(), 0, bounds)
    store = CheckpointStore(tmp_path / "p0.sqlite")
    store.replace(task.snapshot(), task.meta)  # a snapshot entry, as a restore writes it
    task.changes()
    for offset, event in enumerate(events[half:], start=half):
        task.apply(offset, event.to_json(), 0, bounds)
    task.prune_seen()
    store.save(encode_changes(task.changes(), task.meta, task.watermark_us), task.meta, task.watermark_us)
    parts, meta = store.load()
    assert isinstance(parts[0], dict) and len(parts) == 2
    restored = UserTask(0, LATENESS_US)
    restored.restore(parts, meta)
    assert meta.next_offset == len(events)
    changed = {e.user_id for e in events[half:]}
    for user_id in sorted(changed)[:50]:
        assert [r.values for r in restored.rows_of(user_id)] == [r.values for r in task.rows_of(user_id)]
    assert set(restored.seen) == set(task.seen)
