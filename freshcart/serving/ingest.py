"""Prediction records from Kafka into the offline store, by date, idempotently.

:func:`ingest_predictions` reads ``FRESHCART_PREDICTIONS_TOPIC`` in a consumer group
up to the end offsets it finds when it starts, lands the rows in
``<offline>/predictions/prediction_date=YYYY-MM-DD/data.parquet`` (by the request's
time), merged with what a date holds by (request_id, position), and only then
commits the offsets. Reading a record twice (a crash before the commit, a reset
group) therefore leaves the same rows. Monitoring and the feedback labels read
the predictions from there.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from freshcart.serving.prediction_log import decode_record
from freshcart.settings import Settings

log = logging.getLogger(__name__)
PARTITION_KEY = "prediction_date"
INGEST_GROUP = "freshcart-predictions-ingest"


@dataclass
class IngestReport:
    records: int = 0
    rows: int = 0
    undecodable: int = 0
    dates: dict[date, int] = field(default_factory=dict)
    """Rows per date after the merge."""
    seconds: float = 0.0


def predictions_dir(settings: Settings) -> Path:
    return settings.offline_dir / "predictions"


def partition_path(root: Path, day: date) -> Path:
    return root / f"{PARTITION_KEY}={day.isoformat()}" / "data.parquet"


def _dedupe(table: pa.Table) -> pa.Table:
    """One row per (request_id, position), the last one kept."""
    keys = pd.Series(table["request_id"].to_numpy(zero_copy_only=False).astype(str)) + "#" + \
        pd.Series(table["position"].to_numpy(zero_copy_only=False).astype(str))
    keep = ~keys.duplicated(keep="last").to_numpy()
    table = table.filter(pa.array(keep))
    return table.take(pc.sort_indices(table, sort_keys=[("requested_at", "ascending"), ("request_id", "ascending"),
                                                         ("position", "ascending")]))


def upsert_predictions(root: Path, rows: pa.Table) -> dict[date, int]:
    """Merge ``rows`` into their date partitions (atomic replace of each); rows per date after."""
    days = pc.cast(pc.cast(rows["requested_at"], pa.timestamp("us", tz="UTC")), pa.date32())
    out: dict[date, int] = {}
    for day in sorted(set(days.to_pylist())):
        part = rows.filter(pc.equal(days, pa.scalar(day, pa.date32())))
        path = partition_path(root, day)
        if path.is_file():
            part = pa.concat_tables([pq.read_table(path), part], promote_options="permissive")
        merged = _dedupe(part)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{uuid.uuid4().hex}.tmp")
        pq.write_table(merged, tmp, compression="zstd")
        os.replace(tmp, path)
        out[day] = merged.num_rows
    return out


def read_predictions(settings: Settings, day: date) -> pa.Table | None:
    """The prediction rows of one date, or None when there are none."""
    path = partition_path(predictions_dir(settings), day)
    return pq.read_table(path) if path.is_file() else None


def ingest_predictions(settings: Settings, group: str = INGEST_GROUP, timeout_s: float = 60.0,
                       progress: Callable[[int, int], None] | None = None) -> IngestReport:
    """Land every record up to the topic's current end in the offline store; ``progress(records, rows)``
    is called after each batch. Ends when caught up with the end offsets found at the start, or after
    ``timeout_s`` (what was read by then is landed and committed)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from freshcart.kafka_io import client_auth

    started = time.perf_counter()
    report = IngestReport()
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group, enable_auto_commit=False,
                             **client_auth(settings, "monitoring"),
                             auto_offset_reset="earliest", client_id="freshcart-predictions-ingest",
                             max_poll_records=2000, fetch_max_bytes=64 * 1024 * 1024)
    try:
        partitions = [TopicPartition(settings.predictions_topic, p)
                      for p in sorted(consumer.partitions_for_topic(settings.predictions_topic) or ())]
        if not partitions:
            raise ValueError(f"topic {settings.predictions_topic!r} does not exist on {settings.bootstrap_servers}; "
                             "run `freshcart services up`, which creates it")
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        committed = {tp: consumer.committed(tp) for tp in partitions}
        for tp in partitions:
            if committed[tp] is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed[tp])
        deadline = time.monotonic() + timeout_s
        root = predictions_dir(settings)
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in partitions):
            tables, offsets = [], {}
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    try:
                        tables.append(decode_record(record.value))
                    except (pa.ArrowInvalid, TypeError) as exc:
                        report.undecodable += 1
                        log.warning("prediction record %s[%d]@%d is not an Arrow stream (%s); skipped",
                                    tp.topic, tp.partition, record.offset, exc)
                    offsets[tp] = record.offset + 1
            if tables:
                rows = pa.concat_tables(tables, promote_options="permissive")
                report.dates.update(upsert_predictions(root, rows))
                report.records += len(tables)
                report.rows += rows.num_rows
            if offsets:
                consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
                if progress is not None:
                    progress(report.records, report.rows)
    finally:
        consumer.close()
    report.seconds = time.perf_counter() - started
    return report
