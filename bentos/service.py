"""FreshCart's scoring and recommendation service for BentoML: routes, request and response models, lifecycle.

A thin adapter: the logic is :class:`freshcart.serving.scoring.ScoringService`.
Run it with ``cd bentos && bentoml serve`` (or ``freshcart serve`` / ``make serve``);
the service reads FreshCart's settings from the ``FRESHCART_*`` environment.

Routes: ``POST /predict``, ``POST /recommend``, ``POST /explain``; ``/livez``,
``/readyz`` (a model is loaded and the online store answers), ``/metrics``
(Prometheus), OpenAPI at ``/docs``. With ``FRESHCART_SERVING_API_KEY`` set, every
route but the probes and the metrics needs ``Authorization: Bearer <key>``.

``FreshCartScoringGPU`` is the CUDA variant (``resources={"gpu": 1}``): the
attention model runs on CUDA when torch sees a GPU, on the CPU otherwise.
"""

from __future__ import annotations

import gc
import logging
import sys
import uuid
from typing import Any

import bentoml
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from freshcart.serving.asgi import ApiKeyMiddleware, ClientErrorsInOneLine, ReadinessMiddleware, docs_redirect
from freshcart.serving.schemas import (
    ExplainRequest, PredictRequest, PredictResponse, RecommendRequest, RecommendResponse,
)
from freshcart.serving.scoring import ServiceUnavailable
from freshcart.settings import load_settings

SETTINGS = load_settings()
log = logging.getLogger("freshcart.serving")
logging.getLogger("kafka").setLevel(logging.ERROR)  # a line per expired record while Kafka is away: counted instead
logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientErrorsInOneLine())
_READY: dict[str, Any] = {}  # the worker's readiness check, once its service is made
TRAFFIC = {"timeout": 30, "max_concurrency": 256}
SWITCH_INTERVAL = 0.001
LOGGING = {"access": {"enabled": SETTINGS.serving_access_log}}
TRACING = {} if SETTINGS.serving_tracing else {"excluded_urls": [".*"]}
"""Without FRESHCART_SERVING_TRACING no request makes an OpenTelemetry span (with no exporter they went nowhere
and cost about a tenth of a trivial request)."""


def _request_id(ctx: bentoml.Context) -> str:
    given = ctx.request.headers.get("x-request-id")
    rid = given[:128] if given else uuid.uuid4().hex
    ctx.response.headers["x-request-id"] = rid
    return rid


def _json(body: BaseModel) -> Response:
    """The response model as JSON, answered as it is: BentoML would otherwise build the model's whole JSON
    schema on every response to find its media type (about a third of a /predict's time in the framework)."""
    return Response(body.model_dump_json(), media_type="application/json")


def _unavailable(exc: ServiceUnavailable, ctx: bentoml.Context) -> JSONResponse:
    ctx.response.status_code = 503  # BentoML takes a response's status from the context
    return JSONResponse({"error": "service unavailable", "detail": str(exc)}, status_code=503)


class _Scoring:
    """The routes and lifecycle shared by the CPU and the CUDA service."""

    def __init__(self) -> None:
        from freshcart.serving.metrics import ServingMetrics
        from freshcart.serving.prediction_log import PredictionLog
        from freshcart.serving.scoring import ScoringService

        metrics = ServingMetrics()
        prediction_log = PredictionLog(SETTINGS, on_sent=lambda n: metrics.predictions_logged.inc(n),
                                       on_dropped=lambda reason, n: metrics.predictions_dropped.labels(reason).inc(n))
        prediction_log.start()
        self.core = ScoringService(SETTINGS, metrics, prediction_log)
        self.core.start()
        self._was_ready: bool | None = None
        _READY["check"] = self.readiness
        # background threads (prediction log, trending, purchases, model watch) hand Python's lock back to the
        # requests after 1 ms instead of the default 5 ms
        sys.setswitchinterval(SWITCH_INTERVAL)
        if SETTINGS.serving_gc_freeze:  # what start loaded stays: later collections scan only request garbage
            gc.collect()
            gc.freeze()

    @bentoml.api(route="/predict")
    async def predict(self, request: PredictRequest, /, ctx: bentoml.Context) -> PredictResponse:
        """One purchase probability per product, with the model, freshness, cold-start flags and timing."""
        try:
            return _json(self.core.predict(request, _request_id(ctx)))  # type: ignore[return-value]
        except ServiceUnavailable as exc:
            return _unavailable(exc, ctx)  # type: ignore[return-value]

    @bentoml.api(route="/recommend")
    async def recommend(self, request: RecommendRequest, /, ctx: bentoml.Context) -> RecommendResponse:
        """The top-k products for the shopper, ranked by the ranker champion (while the registry's ``serving_ranker``
        tag says ``ranker``) or the propensity champion, each with its scores and the candidate source."""
        try:
            return _json(self.core.recommend(request, _request_id(ctx)))  # type: ignore[return-value]
        except ServiceUnavailable as exc:
            return _unavailable(exc, ctx)  # type: ignore[return-value]

    @bentoml.api(route="/explain")
    async def explain(self, request: ExplainRequest, /, ctx: bentoml.Context) -> PredictResponse:
        """Scores with the top feature contributions (XGBoost TreeSHAP) or attention weights (attention model)."""
        try:
            return _json(self.core.explain(request, _request_id(ctx)))  # type: ignore[return-value]
        except ServiceUnavailable as exc:
            return _unavailable(exc, ctx)  # type: ignore[return-value]

    @bentoml.api(route="/ping")
    async def ping(self) -> dict[str, Any]:
        """A trivial endpoint: the framework's own floor for latency comparisons (answered like the others)."""
        return Response(b'{"ok":true}', media_type="application/json")  # type: ignore[return-value]

    def readiness(self) -> tuple[bool, str]:
        """Ready, and why (or why not); a change is logged once."""
        ready, reason = self.core.ready()
        if ready != self._was_ready:
            (log.info if ready else log.warning)("readiness: %s (%s)", "ready" if ready else "not ready", reason)
            self._was_ready = ready
        return ready, reason

    def __is_ready__(self) -> bool:
        return self.readiness()[0]

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.core.stop()


@bentoml.service(name="freshcart_scoring", workers=SETTINGS.serving_workers, threads=SETTINGS.serving_threads,
                 traffic=TRAFFIC, logging=LOGGING, tracing=TRACING,
                 http={"host": SETTINGS.serving_host, "port": SETTINGS.serving_port})
class FreshCartScoring(_Scoring):
    """FreshCart's purchase-propensity scoring and recommendations (CPU)."""


@bentoml.service(name="freshcart_scoring_gpu", workers=SETTINGS.serving_workers, threads=SETTINGS.serving_threads,
                 traffic=TRAFFIC, logging=LOGGING, tracing=TRACING, resources={"gpu": 1},
                 http={"host": SETTINGS.serving_host, "port": SETTINGS.serving_port})
class FreshCartScoringGPU(_Scoring):
    """The CUDA variant: the attention model on the GPU when torch sees one."""


for _service in (FreshCartScoring, FreshCartScoringGPU):
    _service.add_asgi_middleware(ApiKeyMiddleware, api_key=SETTINGS.serving_api_key.get_secret_value()
                                 if SETTINGS.serving_api_key else None)
    _service.add_asgi_middleware(ReadinessMiddleware, ready=lambda: _READY["check"]() if "check" in _READY
                                 else (False, "the service is starting"))
    _service.mount_asgi_app(docs_redirect, path="/docs", name="docs")
