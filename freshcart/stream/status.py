"""Lag of the stream processor's consumer group, read from the broker."""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from freshcart.kafka_io import client_auth
from freshcart.settings import Settings


@dataclass
class PartitionLag:
    topic: str
    partition: int
    end: int
    committed: int | None

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)


def group_lag(settings: Settings) -> list[PartitionLag]:
    """End offset, committed offset and lag of every partition of the events and product topics."""
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, client_id="freshcart-status",
                             **client_auth(settings, "monitoring"))
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, client_id="freshcart-status",
                             **client_auth(settings, "monitoring"))
    try:
        committed = admin.list_group_offsets({settings.stream_group: None}).get(settings.stream_group, {})
        partitions = [TopicPartition(topic, p) for topic in (settings.events_topic, settings.product_topic)
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = consumer.end_offsets(partitions) if partitions else {}
        return [PartitionLag(tp.topic, tp.partition, ends[tp],
                             committed[tp].offset if tp in committed else None) for tp in partitions]
    finally:
        consumer.close()
        admin.close()
