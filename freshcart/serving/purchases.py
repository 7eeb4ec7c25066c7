"""Purchases from the events topic, so that /recommend leaves out what a shopper bought a moment ago.

The catalogue (:mod:`freshcart.serving.catalogue`) knows the purchases of the offline store,
which the daily ingestion fills. :class:`PurchaseFollower` reads the events topic from the
catalogue's newest event on (or ``serving_follow_hours`` back, when the offline store is older
or empty) without a consumer group, and adds each valid purchase to the catalogue as it arrives.
Events of other kinds are skipped; invalid ones are the stream processor's business (its
dead-letter topic), not the service's. The broker being away only delays purchases: the thread
retries, and the service answers all along.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from freshcart.kafka_io import client_auth
from freshcart.schema import Event, TimeBounds, event_from_json
from freshcart.serving.catalogue import Catalogue
from freshcart.settings import Settings

log = logging.getLogger(__name__)
PURCHASE = b'"purchase"'


class PurchaseFollower:
    """A daemon thread adding the events topic's purchases to ``catalogue``."""

    def __init__(self, settings: Settings, catalogue: Catalogue) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.added = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.caught_up = threading.Event()  # set once the topic's end at start has been read

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="freshcart-purchases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def since(self) -> datetime:
        """Where reading starts: the catalogue's newest event, at most ``serving_follow_hours`` back."""
        floor = datetime.now(timezone.utc) - timedelta(hours=self.settings.serving_follow_hours)
        newest = self.catalogue.newest_event
        if newest is not None and newest.tzinfo is None:
            newest = newest.replace(tzinfo=timezone.utc)
        return max(floor, newest) if newest is not None else floor

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                self._follow()
                return
            except (KafkaError, OSError) as exc:
                log.warning("reading purchases from %s failed (%s); retrying in %.0f s",
                            self.settings.events_topic, exc, delay)
                self._stop.wait(delay)
                delay = min(30.0, delay * 2)

    def _follow(self) -> None:
        consumer = KafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers, group_id=None,
                                 client_id="freshcart-serving-purchases", enable_auto_commit=False,
                                 check_crcs=False, fetch_max_wait_ms=100, **client_auth(self.settings, "serving"))
        try:
            partitions = [TopicPartition(self.settings.events_topic, p)
                          for p in sorted(consumer.partitions_for_topic(self.settings.events_topic) or ())]
            if not partitions:
                raise KafkaError(f"topic {self.settings.events_topic!r} has no partitions yet")
            consumer.assign(partitions)
            start_ms = int(self.since().timestamp() * 1000)
            found = consumer.offsets_for_times({tp: start_ms for tp in partitions})
            ends = consumer.end_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, found[tp].offset if found.get(tp) is not None else ends[tp])
            remaining = {tp for tp in partitions if consumer.position(tp) < ends[tp]}
            if not remaining:
                self.caught_up.set()
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=500, max_records=5_000)
                bounds = TimeBounds.around(datetime.now(timezone.utc), self.settings.event_time_floor,
                                           self.settings.max_future_seconds)
                for records in batches.values():
                    for record in records:
                        if record.value is not None and PURCHASE in record.value:
                            self._add(record.value, bounds)
                if remaining:
                    remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
                    if not remaining:
                        log.info("purchases followed from %s: %d added so far", self.since().isoformat(),
                                 self.added)
                        self.caught_up.set()
        finally:
            consumer.close(autocommit=False)

    def _add(self, value: bytes, bounds: TimeBounds) -> None:
        event = event_from_json(value, bounds)
        if isinstance(event, Event) and event.event_type == "purchase":
            self.catalogue.add_purchase(event.user_id, event.product_id, event.event_time.timestamp())
            self.added += 1
