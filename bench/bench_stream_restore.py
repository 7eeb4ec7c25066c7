"""Benchmark: restoring a stream partition's keyed state from its changelog topic, per 100,000 keys.

Needs the broker that `freshcart services up` starts. The state of one user-stage partition
with --keys keys (users and user x category pairs, from simulated events) is written to a
fresh changelog topic as the processor writes it: one transaction per checkpoint, --checkpoints
of them, so that keys changed in several checkpoints have several records. Then, --repeats
times each:

1. restore on another host (no local cache): take the partition over, read every committed
   record up to the end offset, rebuild the state, write the local cache
   (``freshcart.stream.restore.restore_partitions``, as a consumer does when it is assigned a
   partition);
2. of that, reading and decoding the records alone (``ChangelogReader`` + ``ChangelogState``);
3. restore on the same host, from a cache as new as the changelog.

Medians are printed, with the restore time per 100,000 keys.

    .venv/bin/python bench/bench_stream_restore.py [--keys 100000] [--checkpoints 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from kafka import TopicPartition

from freshcart.kafka_io import admin_client, changelog_topic, ensure_topics
from freshcart.schema import TimeBounds
from freshcart.settings import Settings, load_settings
from freshcart.simulator import SimulationConfig, iter_records
from freshcart.stream.changelog import ChangelogReader, ChangelogState, ChangelogWriter, encode_changes
from freshcart.stream.processor import UserTask
from freshcart.stream.restore import restore_partitions


def build_state(target_keys: int, seed: int) -> tuple[list[bytes], TimeBounds, int]:
    """Simulated events until a user partition's state has ``target_keys`` keys; (messages, their bounds, keys)."""
    config = SimulationConfig(seed=seed, users=max(1_000, target_keys // 2), products=20_000, categories=30,
                              days=14, events_per_day=max(10_000, target_keys))
    bounds = TimeBounds.around(config.end, load_settings().event_time_floor, 86_400)
    task = UserTask(0, 600 * 1_000_000)
    messages = []
    for record in itertools.islice(iter_records(config), 20 * target_keys):
        message = json.dumps(record, separators=(",", ":"), default=str).encode()
        task.apply(len(messages), message, 0, bounds)
        messages.append(message)
        if len(messages) % 1000 == 0 and len(task.features.users) + len(task.features.pairs) >= target_keys:
            break
    return messages, bounds, len(task.features.users) + len(task.features.pairs)


def write_changelog(settings: Settings, messages: list[bytes], bounds: TimeBounds,
                    checkpoints: int) -> tuple[int, int]:
    """Apply ``messages`` to a user task, writing a checkpoint every len/checkpoints; (records, value bytes)."""
    task = UserTask(0, settings.stream_allowed_lateness_seconds * 1_000_000)
    writer = ChangelogWriter(settings, changelog_topic(settings, settings.events_topic), 0, "bench-writer")
    writer.open()
    every = max(1, len(messages) // checkpoints)
    records = size = 0
    try:
        for offset, message in enumerate(messages):
            task.apply(offset, message, 0, bounds)
            if offset % every == every - 1 or offset == len(messages) - 1:
                task.prune_seen()
                batch = encode_changes(task.changes(), task.meta, task.watermark_us)
                writer.commit(batch)
                records += len(batch)
                size += sum(len(value or b"") for _, value in batch)
    finally:
        writer.close()
    return records, size


def restore_once(settings: Settings, state_dir: Path, reader: ChangelogReader) -> tuple[float, str, int]:
    """One restore of partition 0: (seconds, source, keys)."""
    tp = TopicPartition(settings.events_topic, 0)
    started = time.perf_counter()
    restored = restore_partitions(settings, [tp], reader, state_dir, "bench-restore")[tp]
    seconds = time.perf_counter() - started
    restored.writer.close()
    restored.store.close()
    return seconds, restored.source, restored.keys


def read_once(settings: Settings, reader: ChangelogReader) -> float:
    started = time.perf_counter()
    state = ChangelogState()
    for _, offset, key, value in reader.read({TopicPartition(changelog_topic(settings, settings.events_topic), 0): 0}):
        state.add(offset, key, value)
    assert state.part["users"]  # decodes the latest record of each key
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000, help="keys of the partition's state")
    parser.add_argument("--checkpoints", type=int, default=10, help="checkpoints the state is written in")
    parser.add_argument("--repeats", type=int, default=5, help="restores of each kind (medians are printed)")
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    settings = load_settings().model_copy(update={
        "events_topic": f"freshcart.bench.events.{tag}", "product_topic": f"freshcart.bench.by-product.{tag}",
        "dlq_topic": f"freshcart.bench.dlq.{tag}", "stream_group": f"freshcart-bench-{tag}"})
    ensure_topics(settings)
    workdir = Path(tempfile.mkdtemp(prefix="freshcart-bench-restore-"))
    reader = ChangelogReader(settings, "bench-reader")
    try:
        started = time.perf_counter()
        messages, bounds, keys = build_state(args.keys, seed=31)
        records, size = write_changelog(settings, messages, bounds, args.checkpoints)
        print(f"state: {keys:,} keys from {len(messages):,} events; changelog: {records:,} records, "
              f"{size / 1e6:.1f} MB in {args.checkpoints} checkpoints (built in {time.perf_counter() - started:.0f}s)")
        remote, local, reads = [], [], []
        for run in range(args.repeats):
            state_dir = workdir / f"host-{run}"
            seconds, source, restored_keys = restore_once(settings, state_dir, reader)
            assert source == "changelog" and restored_keys == keys, (source, restored_keys)
            remote.append(seconds)
            reads.append(read_once(settings, reader))
            seconds, source, restored_keys = restore_once(settings, state_dir, reader)
            assert source == "cache" and restored_keys == keys, (source, restored_keys)
            local.append(seconds)
            shutil.rmtree(state_dir)
        per_100k = 100_000 / keys
        for name, runs, rate in (("restore from the changelog (another host)", remote, True),
                                 ("  of which reading + decoding the records", reads, True),
                                 ("restore from the local cache (same host)", local, False)):
            median = statistics.median(runs)
            speed = f"{records / median:,.0f} records/s; " if rate else ""
            print(f"{name:<44} median {median:6.2f}s = {median * per_100k:6.2f}s per 100,000 keys "
                  f"({speed}runs {', '.join(f'{r:.2f}' for r in runs)})")
    finally:
        reader.close()
        shutil.rmtree(workdir, ignore_errors=True)
        admin = admin_client(settings)
        try:
            inputs = [settings.events_topic, settings.product_topic]
            admin.delete_topics([*inputs, settings.dlq_topic, *(changelog_topic(settings, t) for t in inputs)])
        finally:
            admin.close()


if __name__ == "__main__":
    main()
