"""Prometheus metrics of the scoring service (prometheus_client, served by the service's /metrics).

Under ``bentoml serve`` the worker processes write their samples to BentoML's
multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``), and its /metrics joins them
with its own request metrics; in a plain process (tests) they are read from the
registry given (a fresh one by default, so several services can live in one process).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    """Requests and latency per endpoint, feature-read and model time, champion and ranker, cold starts, errors."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        kw: dict[str, Any] = {"registry": registry}
        self.requests = Counter("freshcart_serving_requests_total", "Requests by endpoint and outcome",
                                ["endpoint", "outcome"], **kw)
        self.latency = Histogram("freshcart_serving_latency_seconds", "Time in the scoring logic per endpoint",
                                 ["endpoint"], buckets=BUCKETS, **kw)
        self.feature_seconds = Histogram("freshcart_serving_feature_read_seconds",
                                         "Reading and assembling online features per request", buckets=BUCKETS, **kw)
        self.model_seconds = Histogram("freshcart_serving_model_seconds", "Scoring with the model per request",
                                       buckets=BUCKETS, **kw)
        self.cold_starts = Counter("freshcart_serving_cold_starts_total",
                                   "Cold starts: shoppers or products without online features", ["entity"], **kw)
        self.errors = Counter("freshcart_serving_errors_total", "Errors by kind", ["kind"], **kw)
        self.champion = Gauge("freshcart_serving_model_version", "Version of the model being served",
                              ["model", "alias"], multiprocess_mode="livemax", **kw)
        self.model_events = Counter("freshcart_serving_model_events_total",
                                    "Model loads and failed loads (refused, load_failed, registry)", ["kind"], **kw)
        self.ranker = Gauge("freshcart_serving_ranker_version",
                            "Version of the learning-to-rank model ranking /recommend (0: the propensity model ranks)",
                            ["model", "alias"], multiprocess_mode="livemax", **kw)
        self.ranker_events = Counter("freshcart_serving_ranker_events_total",
                                     "Ranker loads, unloads (the propensity model ranks again) and failed loads",
                                     ["kind"], **kw)
        self.predictions_logged = Counter("freshcart_serving_predictions_logged_total",
                                          "Prediction records sent to Kafka", **kw)
        self.predictions_dropped = Counter("freshcart_serving_predictions_dropped_total",
                                           "Prediction records dropped (buffer full, Kafka down or refusing)",
                                           ["reason"], **kw)

    def model_event(self, kind: str, info: Any) -> None:
        """A load or a failed load; a load also sets the served version."""
        self.model_events.labels(kind).inc()
        if kind == "loaded" and info is not None:
            self.champion.labels(info.name, info.alias).set(float(info.version))

    def ranker_event(self, kind: str, info: Any) -> None:
        """A ranker load (its version), unload (0) or failed load."""
        self.ranker_events.labels(kind).inc()
        if kind in ("loaded", "unloaded") and info is not None:
            self.ranker.labels(info.name, info.alias).set(float(info.version) if kind == "loaded" else 0.0)
