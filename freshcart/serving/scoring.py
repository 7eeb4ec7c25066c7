"""The scoring service without a web framework: predict, recommend, explain, readiness, background refreshes.

``bentos/service.py`` adapts it to HTTP; tests and the benchmark call it directly.
:meth:`ScoringService.start` reads the catalogue, the Feast registry and the
champion, and starts three background threads: one checks the model alias and the
ranker (:mod:`freshcart.serving.ranking`) every ``serving_reload_seconds`` (a new
version is loaded beside the old one and swapped in), one refreshes the trending and popular products, and one adds the purchases
of the events topic to the catalogue (:mod:`freshcart.serving.purchases`). A request takes the
current model once and reports its version; the online store or the registry
being down raises :class:`ServiceUnavailable`, whose message says which.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from freshcart.privacy.pseudonym import pseudonymiser_for
from freshcart.serving.background import run_every
from freshcart.serving.assemble import USER_VIEWS, Candidates, OnlineRows, build_model_input
from freshcart.serving.candidates import default_sources, gather_proposals, shopper_context
from freshcart.serving.catalogue import Catalogue, load_catalogue
from freshcart.serving.explain import explain as explain_rows
from freshcart.serving.features import OnlineFeatureReader, OnlineStoreUnavailable, ProductCache, ViewRows
from freshcart.serving.metrics import ServingMetrics
from freshcart.serving.model import ModelHolder, ServingModel
from freshcart.serving.prediction_log import PredictionLog, PredictionRecord
from freshcart.serving.ranking import ServingRanker, load_ranker_version, ranker_columns, ranker_version
from freshcart.serving.purchases import PurchaseFollower
from freshcart.serving.respond import Scored, predict_response, recommend_response
from freshcart.serving.schemas import (
    ExplainRequest, PredictRequest, PredictResponse, RecommendRequest, RecommendResponse,
)
from freshcart.serving.trending import TrendingIndex
from freshcart.settings import Settings

log = logging.getLogger(__name__)
CANDIDATES = 100
"""Candidates ranked per recommendation."""
DEFAULT_EXCLUDE_DAYS = 7


class ServiceUnavailable(RuntimeError):
    """The service cannot answer now (HTTP 503); the message names the part that is down."""


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(timezone.utc)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def expand(rows: ViewRows, index: list[int]) -> ViewRows:
    """Rows for keys in ``index`` order (a key read once, used by several candidates)."""
    return ViewRows(rows.view, rows.features, {f: [v[i] for i in index] for f, v in rows.values.items()},
                    [rows.event_times[i] for i in index])


class ScoringService:
    def __init__(self, settings: Settings, metrics: ServingMetrics | None = None,
                 prediction_log: PredictionLog | None = None, catalogue: Catalogue | None = None) -> None:
        from freshcart.training.data import FEATURE_SERVICES

        self.settings = settings
        self.services = FEATURE_SERVICES
        self.metrics = metrics or ServingMetrics()
        self.log = prediction_log
        self.catalogue = catalogue
        self.pseudonyms = pseudonymiser_for(settings)
        self.reader: OnlineFeatureReader | None = None
        self.products: ProductCache | None = None
        self.holder: ModelHolder | None = None
        self.rankers: ModelHolder | None = None
        """The learning-to-rank champion's holder (its ``current`` is None while the propensity model ranks)."""
        self.index: TrendingIndex | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.purchases: PurchaseFollower | None = None

    # lifecycle ---------------------------------------------------------------------------------
    def start(self, background: bool = True) -> None:
        """Catalogue, registry, first model; then the watcher threads (unless ``background`` is False)."""
        if self.catalogue is None:
            self.catalogue = load_catalogue(self.settings)
        self.index = TrendingIndex(self.catalogue)
        self._connect()
        if self.reader is not None and self.holder is not None and self.rankers is not None:
            self.holder.check()
            self.rankers.check()
            self.refresh_index()
        if background:
            self.purchases = PurchaseFollower(self.settings, self.catalogue)
            self.purchases.start()
            self._spawn("freshcart-model-watch", self.settings.serving_reload_seconds, self.check_model)
            self._spawn("freshcart-trending", self.settings.serving_index_seconds / self.index.slices,
                        lambda: self.refresh_index(whole=False))

    def _spawn(self, name: str, every: float, work: Any) -> None:
        self._threads.append(run_every(name, every, work, self._stop))

    def _connect(self) -> OnlineFeatureReader:
        """The feature reader (the Feast registry, read once) and the model holder; made on first success."""
        with self._lock:
            if self.reader is None:
                try:
                    self.reader = OnlineFeatureReader(self.settings, self.services)
                except OnlineStoreUnavailable as exc:
                    self.metrics.errors.labels("feature_registry").inc()
                    raise ServiceUnavailable(str(exc)) from exc
                except Exception as exc:  # noqa: BLE001 - the registry database is down
                    self.metrics.errors.labels("feature_registry").inc()
                    raise ServiceUnavailable(f"the Feast registry of the {self.settings.profile} profile did not "
                                             f"answer ({type(exc).__name__}: {str(exc)[:200]})") from exc
                self.products = ProductCache(self.reader, self.settings.serving_product_cache_seconds)
                supplied = {"product_id", "category_id", "price"} | self.reader.served.columns()
                self.holder = ModelHolder(self.settings, supplied, self.metrics.model_event)
                self.rankers = ModelHolder(self.settings, supplied, self.metrics.ranker_event, find=ranker_version,
                                           load=lambda v: load_ranker_version(v, supplied, self.source_names()))
            return self.reader

    def stop(self) -> None:
        self._stop.set()
        if self.purchases is not None:
            self.purchases.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.log is not None:
            self.log.stop()

    def check_model(self) -> bool:
        try:
            self._connect()
        except ServiceUnavailable:
            return False
        assert self.holder is not None and self.rankers is not None
        changed = self.holder.check()
        return self.rankers.check() or changed

    def source_names(self) -> list[str]:
        """The candidate sources of /recommend, in blend order (the ranker's source columns)."""
        assert self.index is not None
        return [source.name for source in default_sources(self.index, self.reader, self.settings)]

    def refresh_index(self, whole: bool = True) -> None:
        """Read every product the trending index follows (at start), or only its next slice (the background
        thread: a pass per ``serving_index_seconds``)."""
        if self.reader is not None and self.index is not None:
            try:
                (self.index.refresh if whole else self.index.refresh_next)(self.reader)
            except OnlineStoreUnavailable as exc:
                log.warning("trending products not refreshed: %s", exc)

    def ready(self) -> tuple[bool, str]:
        """Ready when a model is loaded and the online store answers; the reason when not (when ready: the
        model, and the ranker of /recommend)."""
        try:
            reader = self._connect()
            reader.ping()
        except (ServiceUnavailable, OnlineStoreUnavailable) as exc:
            return False, str(exc)
        model = self.holder.current if self.holder else None
        if model is None:
            return False, f"no model loaded: {self.holder.last_error if self.holder else 'not started'}"
        ranker = self.rankers.current if self.rankers else None
        ranking = f"ranked by {ranker.info.name} v{ranker.info.version}" if ranker else "ranked by the propensity model"
        return True, f"serving {model.info.name} v{model.info.version} ({model.info.model_type}); {ranking}"

    # scoring -----------------------------------------------------------------------------------
    def _model(self) -> ServingModel:
        self._connect()
        model = self.holder.current if self.holder else None
        if model is None:
            self.holder.check() if self.holder else None
            model = self.holder.current if self.holder else None
        if model is None:
            self.metrics.errors.labels("no_model").inc()
            raise ServiceUnavailable(f"no model to score with: {self.holder.last_error if self.holder else ''}")
        return model

    def _user_rows(self, user_id: int) -> dict[str, ViewRows]:
        assert self.reader is not None
        return {view: self.reader.read(view, [(user_id,)]) for view in USER_VIEWS}

    def score(self, model: ServingModel, user_id: int, product_ids: list[int], moment: datetime,
              user: dict[str, ViewRows] | None = None, explain_top: int = 0,
              columns: Sequence[str] | None = None) -> Scored:
        """Read the features, build the model input (``columns``: those to build, by default the model's),
        score (and explain) the products for the user."""
        reader, catalogue = self._connect(), self.catalogue or Catalogue()
        started = time.perf_counter()
        try:
            user = user if user is not None else self._user_rows(user_id)
            assert self.products is not None
            products = self.products.read(product_ids)
            categories = [catalogue.category.get(p) for p in product_ids]
            distinct = list(dict.fromkeys(c if c is not None else -1 for c in categories))
            pairs = reader.read("user_category", [(user_id, c) for c in distinct])
        except OnlineStoreUnavailable as exc:
            self.metrics.errors.labels("online_store").inc()
            raise ServiceUnavailable(str(exc)) from exc
        position = {c: i for i, c in enumerate(distinct)}
        user_categories = expand(pairs, [position[c if c is not None else -1] for c in categories])
        current = products.values.get("current_price", [None] * len(product_ids))
        prices = [now if now is not None else catalogue.price.get(p) for p, now in zip(product_ids, current)]
        rows = OnlineRows(user, products, user_categories)
        table = build_model_input(Candidates(product_ids, categories, prices), rows, moment, columns or model.columns)
        assembled = time.perf_counter()
        scores, matrix = model.predict_keeping_matrix(table)
        explanations = explain_rows(model, table, explain_top) if explain_top else None
        scored = Scored(model.info, rows, product_ids, [c is not None for c in categories], table, scores,
                        assembled - started, time.perf_counter() - assembled, explanations, matrix)
        self.metrics.feature_seconds.observe(scored.features_s)
        self.metrics.model_seconds.observe(scored.model_s)
        if not rows.user_found():
            self.metrics.cold_starts.labels("user").inc()
        unknown = sum(1 for f in products.found if not f)
        if unknown:
            self.metrics.cold_starts.labels("product").inc(unknown)
        return scored

    def _log(self, request_id: str, moment: datetime, endpoint: str, user_id: int, scored: Scored,
             sources: list[str] | None = None) -> None:
        if self.log is not None:
            self.log.submit(PredictionRecord(request_id, moment, endpoint, user_id, scored.model, scored.inputs,
                                             scored.scores, sources))

    def _timed(self, endpoint: str, work: Any) -> Any:
        started = time.perf_counter()
        try:
            result = work(started)
        except ServiceUnavailable:
            self.metrics.requests.labels(endpoint, "unavailable").inc()
            raise
        except Exception:
            self.metrics.requests.labels(endpoint, "error").inc()
            self.metrics.errors.labels("internal").inc()
            raise
        self.metrics.requests.labels(endpoint, "ok").inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return result

    def shopper(self, request: Any) -> Any:
        """The request with the shop's user id replaced by its pseudonym (FRESHCART_PSEUDONYMISE), before
        any feature read; the response and the prediction log carry only the pseudonym."""
        if self.pseudonyms is None:
            return request
        return request.model_copy(update={"user_id": self.pseudonyms.user_id(request.user_id)})

    def predict(self, request: PredictRequest, request_id: str | None = None) -> PredictResponse:
        request = self.shopper(request)

        def work(started: float) -> PredictResponse:
            rid = request_id or uuid.uuid4().hex
            moment = _utc(request.event_time)
            model = self._model()
            scored = self.score(model, request.user_id, list(request.product_ids), moment,
                                explain_top=5 if request.explain else 0)
            self._log(rid, moment, "predict", request.user_id, scored)
            return predict_response(rid, request.user_id, scored, time.perf_counter() - started)

        return self._timed("predict", work)

    def explain(self, request: ExplainRequest, request_id: str | None = None) -> PredictResponse:
        request = self.shopper(request)

        def work(started: float) -> PredictResponse:
            rid = request_id or uuid.uuid4().hex
            model = self._model()
            scored = self.score(model, request.user_id, list(request.product_ids), _utc(request.event_time),
                                explain_top=request.top)
            return predict_response(rid, request.user_id, scored, time.perf_counter() - started)

        return self._timed("explain", work)

    def recommend(self, request: RecommendRequest, request_id: str | None = None) -> RecommendResponse:
        request = self.shopper(request)

        def work(started: float) -> RecommendResponse:
            rid = request_id or uuid.uuid4().hex
            moment = _utc(request.event_time)
            model = self._model()
            ranker: ServingRanker | None = self.rankers.current if self.rankers else None
            try:
                user = self._user_rows(request.user_id)
            except OnlineStoreUnavailable as exc:
                self.metrics.errors.labels("online_store").inc()
                raise ServiceUnavailable(str(exc)) from exc
            session, activity = user["user_session"], user["user_activity"]
            context = shopper_context(
                request.user_id, session.values.get("recent_product_ids", [None])[0],
                session.values.get("recent_category_ids", [None])[0],
                session.values.get("session_products", [None])[0],
                activity.values.get("top_categories_30d", [None])[0])
            days = DEFAULT_EXCLUDE_DAYS if request.exclude_purchased_days is None else request.exclude_purchased_days
            catalogue = self.catalogue or Catalogue()
            since = (moment - timedelta(days=days)).timestamp()
            exclude = catalogue.purchased_since(request.user_id, since) if days > 0 else set()
            assert self.index is not None
            gathered = gather_proposals(default_sources(self.index, self.reader, self.settings), context, CANDIDATES,
                                        exclude)
            candidates, scored, ranked = gathered.candidates, None, None
            if candidates:
                columns = model.columns if ranker is None else ranker_columns(model.columns)
                scored = self.score(model, request.user_id, [c.product_id for c in candidates], moment, user=user,
                                    columns=columns)
                ranked = ranker.rank(scored, gathered, request.user_id, moment) if ranker is not None else None
                self._log(rid, moment, "recommend", request.user_id, scored, [c.source for c in candidates])
            rows = scored.rows if scored is not None else OnlineRows(user, ViewRows("product_activity", [], {}, []),
                                                                      ViewRows("user_category", [], {}, []))
            return recommend_response(rid, request.user_id, candidates, scored, request.k, model.info, rows,
                                      time.perf_counter() - started, ranker.info if ranker else None, ranked)

        return self._timed("recommend", work)
