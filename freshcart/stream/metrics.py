"""Prometheus metrics of the stream processor and the status file `freshcart stream status` reads."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

FRESHNESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10_000, 50_000)
RECENT = 50_000  # freshness samples kept per stage for the status percentiles


class StreamMetrics:
    """The processor's counters, gauges and histograms, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("freshcart_stream_events", "Messages consumed, by stage and outcome "
                              "(accepted, duplicate, dead_letter, replayed).", ["stage", "outcome"], registry=r)
        self.dead_letters = Counter("freshcart_stream_dead_letters", "Messages sent to the dead-letter topic, "
                                    "by reason.", ["reason"], registry=r)
        self.lag = Gauge("freshcart_stream_lag", "Messages behind the partition's end offset.",
                         ["topic", "partition"], registry=r)
        self.batch_events = Histogram("freshcart_stream_batch_events", "Events per micro-batch written online.",
                                      buckets=BATCH_BUCKETS, registry=r)
        self.batch_rows = Histogram("freshcart_stream_batch_rows", "Feature rows per micro-batch written online.",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.freshness = Histogram("freshcart_stream_freshness_seconds", "Time from an event's produce timestamp "
                                   "to the online write of its features, by stage (user views, product view).",
                                   ["stage"], buckets=FRESHNESS_BUCKETS, registry=r)
        self.write_seconds = Histogram("freshcart_stream_online_write_seconds", "Duration of one online write.",
                                       buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
                                       registry=r)
        self.checkpoint_seconds = Histogram(
            "freshcart_stream_checkpoint_seconds", "Duration of a checkpoint: the part that pauses the consume loop "
            "(flush, acks, encoding) and the part on the checkpoint thread (offline rows, changelog, cache).",
            ["part"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.recent: dict[str, deque[float]] = {}
        self.counts: dict[str, int] = {}
        self.unpublished: dict[tuple[str, str], int] = {}
        self.started = time.time()

    def count(self, stage: str, outcome: str, n: int = 1) -> None:
        """Count events (cheap: per event); :meth:`publish` adds them to the Prometheus counters."""
        key = (stage, outcome)
        self.unpublished[key] = self.unpublished.get(key, 0) + n

    def publish(self) -> None:
        """Move the counts gathered since the last call to the Prometheus counters and ``counts``."""
        for (stage, outcome), n in self.unpublished.items():
            self.events.labels(stage, outcome).inc(n)
            key = f"{stage}.{outcome}"
            self.counts[key] = self.counts.get(key, 0) + n
        self.unpublished = {}

    def dead_letter(self, reason: str) -> None:
        self.dead_letters.labels(reason).inc()
        self.counts[f"dlq.{reason}"] = self.counts.get(f"dlq.{reason}", 0) + 1

    def observe_freshness(self, stage: str, now_ms: float, produced_ms: list[int]) -> None:
        histogram = self.freshness.labels(stage)
        recent = self.recent.setdefault(stage, deque(maxlen=RECENT))
        for ms in produced_ms:
            seconds = max(0.0, (now_ms - ms) / 1000)
            histogram.observe(seconds)
            recent.append(seconds)

    def percentiles(self) -> dict[str, dict[str, float]]:
        """p50/p90/p99/max of the recent freshness samples, in milliseconds, per stage."""
        out = {}
        for stage, samples in self.recent.items():
            if samples:
                values = np.fromiter(samples, float) * 1000
                out[stage] = {"n": len(values), **{f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)},
                              "max": float(values.max())}
        return out

    def serve(self, port: int) -> int | None:
        """Expose /metrics on the first free port from ``port`` (0: not at all); the port used."""
        if port == 0:
            return None
        for candidate in range(port, port + 20):
            try:
                start_http_server(candidate, addr="127.0.0.1", registry=self.registry)
                return candidate
            except OSError:
                continue
        return None


def status_dir(data_dir: Path) -> Path:
    return data_dir / "stream" / "status"


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Atomically replace the consumer's status file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status, indent=1, default=str))
    os.replace(tmp, path)


def read_statuses(data_dir: Path) -> list[dict[str, Any]]:
    """The status files of every consumer that ran with this data dir, newest first."""
    folder = status_dir(data_dir)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda s: s.get("updated", 0), reverse=True)
