"""The dead-letter topic: each rejected message with its original bytes, the reason and where it came from.

A dead letter keeps the original key and value unchanged; the rest travels in
Kafka headers: ``reason``, ``detail``, ``source_topic``, ``source_partition``,
``source_offset``, ``source_timestamp_ms`` and ``dead_lettered_at`` (ISO time).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from freshcart.kafka_io import client_auth
from freshcart.schema import Rejection
from freshcart.settings import Settings

HEADERS = ("reason", "detail", "source_topic", "source_partition", "source_offset", "source_timestamp_ms",
           "dead_lettered_at")


def dead_letter_headers(rejection: Rejection, topic: str, partition: int, offset: int,
                        timestamp_ms: int) -> list[tuple[str, bytes]]:
    """The headers of the dead letter of one message."""
    values = (rejection.reason, rejection.detail[:1000], topic, str(partition), str(offset), str(timestamp_ms),
              datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
    return [(name, value.encode()) for name, value in zip(HEADERS, values)]


@dataclass
class DeadLetter:
    """One message of the dead-letter topic."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def reason(self) -> str:
        return self.headers.get("reason", "?")


@dataclass
class DlqSummary:
    total: int = 0
    by_reason: Counter = field(default_factory=Counter)
    samples: dict[str, list[DeadLetter]] = field(default_factory=dict)


def read_dead_letters(settings: Settings, samples: int = 0, reason: str | None = None,
                      timeout_s: float = 30.0) -> DlqSummary:
    """Counts by reason of everything in the dead-letter topic, and up to ``samples`` messages per reason."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False,
                             **client_auth(settings, "monitoring"),
                             client_id="freshcart-dlq-reader", max_poll_records=5000)
    summary = DlqSummary()
    try:
        partitions = [TopicPartition(settings.dlq_topic, p)
                      for p in sorted(consumer.partitions_for_topic(settings.dlq_topic) or ())]
        if not partitions:
            return summary
        ends = consumer.end_offsets(partitions)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        wanted = {tp: end for tp, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout_s
        while wanted and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    headers = {k: v.decode(errors="replace") for k, v in (record.headers or [])}
                    letter = DeadLetter(record.offset, record.key, record.value, headers)
                    if reason and letter.reason != reason:
                        continue
                    summary.total += 1
                    summary.by_reason[letter.reason] += 1
                    kept = summary.samples.setdefault(letter.reason, [])
                    if len(kept) < samples:
                        kept.append(letter)
                if tp in wanted and consumer.position(tp) >= wanted[tp]:
                    del wanted[tp]
        if wanted:
            raise TimeoutError(f"could not read {settings.dlq_topic} to its end within {timeout_s:.0f}s")
        return summary
    finally:
        consumer.close()


def preview(value: bytes | None, width: int = 160) -> Any:
    """A printable preview of a message value."""
    if value is None:
        return "<no value>"
    text = value[:width].decode("utf-8", errors="replace")
    return text + (f"... ({len(value):,} bytes)" if len(value) > width else "")
