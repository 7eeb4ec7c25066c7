"""The scoring service's logic without servers: candidates, ranking, responses, validation, model checks, auth.

The BentoML process, the real stores and Kafka are exercised in tests/integration/test_serving.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from freshcart.features import spec
from freshcart.serving.asgi import ApiKeyMiddleware, ClientErrorsInOneLine, ReadinessMiddleware
from freshcart.serving.assemble import Candidates, OnlineRows, build_model_input, request_seconds
from freshcart.serving.candidates import (
    Candidate, PopularSource, RecentSource, SessionSource, TrendingSource, gather_candidates, shopper_context,
)
from freshcart.serving.catalogue import Catalogue, catalogue_from_events
from freshcart.serving.features import ViewRows
from freshcart.serving.model import ModelInfo, ModelRefused, check_columns
from freshcart.serving.respond import Scored, predict_response, rank, recommend_response
from freshcart.serving.schemas import PredictRequest, RecommendRequest
from freshcart.serving.trending import TrendingIndex, rank_products
from freshcart.training.data import model_input_columns

T0 = datetime(2025, 1, 8, 12, tzinfo=timezone.utc)
INFO = ModelInfo("freshcart-propensity", "3", "champion", "xgboost", "run-3")


class FakeIndex(TrendingIndex):
    def __init__(self, by_category: dict[int, list[int]], overall: list[int]) -> None:
        self.by, self.overall = by_category, overall

    def trending(self, category: int) -> list[int]:
        return self.by.get(category, [])

    def popular(self) -> list[int]:
        return self.overall


# candidates -------------------------------------------------------------------------------------
def test_context_lists_recent_products_newest_first_without_duplicates() -> None:
    context = shopper_context(7, [1, 2, 3, 2], [10, 20, 30, 20], 2, [30])
    assert context.recent_products == [2, 3, 1]
    assert context.recent_categories == [20, 30, 10]
    assert context.favourite_categories() == [30, 20, 10]


def test_candidates_merge_duplicates_keep_the_first_source_and_leave_out_purchases() -> None:
    context = shopper_context(7, [1, 2, 3], [10, 10, 20], 2, [10])
    index = FakeIndex({10: [2, 4, 5], 20: [6]}, [9, 4, 8])
    sources = [SessionSource(), RecentSource(), TrendingSource(index), PopularSource(index)]
    found = gather_candidates(sources, context, limit=6, exclude={5})
    by_id = {c.product_id: c for c in found}
    assert [c.product_id for c in found] == [3, 2, 1, 6, 4, 9]  # trending alternates categories 10 and 20
    assert by_id[3].source == "session" and by_id[1].source == "recent"
    assert by_id[2].sources == ["session", "recent", "trending"]
    assert by_id[4].sources == ["trending", "popular"]
    assert 5 not in by_id and len(found) == 6


def test_a_shopper_without_history_gets_popular_products() -> None:
    index = FakeIndex({10: [2]}, [9, 4, 8])
    found = gather_candidates([SessionSource(), RecentSource(), TrendingSource(index), PopularSource(index)],
                              shopper_context(99, None, None, None, None), limit=2)
    assert [(c.product_id, c.source) for c in found] == [(9, "popular"), (4, "popular")]


def test_trending_interleaves_the_top_categories() -> None:
    index = FakeIndex({1: [11, 12, 13], 2: [21, 22]}, [])
    context = shopper_context(5, [], [], 0, [1, 2])
    assert TrendingSource(index).propose(context, 4) == [11, 21, 12, 22]


def test_trending_ranks_by_last_hour_then_day_and_popular_by_day() -> None:
    ranking = rank_products([1, 2, 3, 4], [10, 10, 10, 20], [5, 5, 9, None], [1, 8, 2, 50], {})
    assert ranking.by_category == {10: [3, 2, 1], 20: [4]}
    assert ranking.overall == [4, 2, 3, 1]


class CountingReader:
    """``product_activity`` rows of views_1h / views_24h per product, and the products each read asked for."""

    def __init__(self, views: dict[int, tuple[int, int]]) -> None:
        self.views, self.reads = views, []

    def read(self, view: str, keys: list, features: list | None = None) -> ViewRows:
        products = [k[0] for k in keys]
        self.reads.append((view, products, list(features or [])))
        return ViewRows(view, ["views_1h", "views_24h"], {
            "views_1h": [self.views[p][0] for p in products],
            "views_24h": [self.views[p][1] for p in products]}, [None] * len(products))


def test_trending_refreshes_in_slices_and_ranks_once_a_pass_ends() -> None:
    catalogue = Catalogue(category={p: 10 + p % 2 for p in range(1, 8)}, views={p: 10 - p for p in range(1, 8)})
    index = TrendingIndex(catalogue, slice_size=3)
    assert index.slices == 3 and index.popular() == [1, 2, 3, 4, 5, 6, 7]  # the catalogue's views until a read
    reader = CountingReader({p: (p % 3, p) for p in range(1, 8)})
    assert index.refresh_next(reader) is None and index.refresh_next(reader) is None
    assert index.popular() == [1, 2, 3, 4, 5, 6, 7]  # the old ranking stays until the pass ends
    ranking = index.refresh_next(reader)
    assert ranking is not None and index.popular() == [7, 6, 5, 4, 3, 2, 1]
    assert index.trending(11) == [5, 7, 1, 3] and index.trending(10) == [2, 4, 6]  # last hour, then the day
    assert [r[1] for r in reader.reads] == [[1, 3, 5], [7, 2, 4], [6]]  # 3, 3, 1: every product once a pass
    assert all(r[0] == "product_activity" and r[2] == ["views_1h", "views_24h"] for r in reader.reads)
    again = TrendingIndex(catalogue, slice_size=3)
    whole = again.refresh(CountingReader(reader.views))  # at start: every slice at once
    assert (whole.by_category, whole.overall) == (ranking.by_category, ranking.overall)
    assert index.refresh_next(reader) is None and len(reader.reads) == 4 and reader.reads[3][1] == [1, 3, 5]


def test_catalogue_keeps_the_latest_category_and_price_and_the_purchases() -> None:
    events = pa.table({
        "event_time": pa.array([T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)], pa.timestamp("us", tz="UTC")),
        "event_type": ["view", "purchase", "view"], "product_id": [1, 1, 2], "category_id": [10, 10, 20],
        "price": [5.0, 6.0, None], "user_id": [7, 7, 8]})
    catalogue = catalogue_from_events(events)
    assert catalogue.category == {1: 10, 2: 20} and catalogue.price == {1: 6.0}
    assert catalogue.purchased_since(7, T0.timestamp()) == {1}
    assert catalogue.purchased_since(7, (T0 + timedelta(hours=2)).timestamp()) == set()


# ranking and responses ---------------------------------------------------------------------------
def test_rank_orders_by_score_and_breaks_ties_by_source_order() -> None:
    candidates = [Candidate(1, "session", ["session"]), Candidate(2, "trending", ["trending"]),
                  Candidate(3, "popular", ["popular"])]
    items = rank(candidates, np.array([0.2, 0.5, 0.2]), k=2)
    assert [(i.rank, i.product_id, i.source) for i in items] == [(1, 2, "trending"), (2, 1, "session")]


def _rows(user_found: bool, products_found: list[bool]) -> OnlineRows:
    moment = T0 - timedelta(minutes=5)
    user = {
        "user_activity": ViewRows("user_activity", ["views_1h"], {"views_1h": [3 if user_found else None]},
                                  [moment if user_found else None]),
        "user_session": ViewRows("user_session", ["session_events"], {"session_events": [None]}, [None]),
    }
    times = [T0 - timedelta(minutes=i) if f else None for i, f in enumerate(products_found)]
    products = ViewRows("product_activity", ["views_24h"], {"views_24h": [1 if f else None for f in products_found]},
                        times)
    pairs = ViewRows("user_category", [], {}, [None] * len(products_found))
    return OnlineRows(user, products, pairs)


def test_predict_response_flags_cold_starts_and_reports_freshness() -> None:
    rows = _rows(True, [True, False])
    scored = Scored(INFO, rows, [11, 12], [True, False], None, np.array([0.3, 0.1]), 0.002, 0.001)
    response = predict_response("req-1", 7, scored, 0.004)
    assert response.request_id == "req-1" and not response.cold_start
    assert [(s.product_id, s.score, s.cold_start, s.known) for s in response.scores] == [
        (11, 0.3, False, True), (12, 0.1, True, False)]
    assert response.model.version == "3" and response.model.type == "xgboost" and response.model.run_id == "run-3"
    assert response.freshness.user_features_time == T0 - timedelta(minutes=5)
    assert response.freshness.product_features_time == T0
    assert response.freshness.missing_views == ["user_session", "user_category"]
    assert response.timing.features_ms == 2.0 and response.timing.total_ms == 4.0


def test_recommend_response_for_a_cold_start_shopper() -> None:
    rows = _rows(False, [True])
    candidates = [Candidate(5, "popular", ["popular"])]
    scored = Scored(INFO, rows, [5], [True], None, np.array([0.05]), 0.001, 0.001)
    response = recommend_response("r", 99, candidates, scored, 10, INFO, rows, 0.003)
    assert response.cold_start and response.candidates == 1
    assert [(i.product_id, i.source) for i in response.items] == [(5, "popular")]
    empty = recommend_response("r", 99, [], None, 10, INFO, rows, 0.003)
    assert empty.items == [] and empty.timing.model_ms == 0.0


# model input -----------------------------------------------------------------------------------
def test_model_input_repeats_user_values_and_computes_on_demand_features() -> None:
    names = {view: spec.VIEWS[view].feature_names for view in spec.VIEWS}
    user_values = {n: [None] for n in names["user_activity"]}
    user_values.update(avg_purchase_price_30d=[20.0], top_categories_30d=[[10, 30]], last_event_ts=[T0.timestamp() - 60])
    rows = OnlineRows(
        {"user_activity": ViewRows("user_activity", names["user_activity"], user_values, [T0]),
         "user_session": ViewRows("user_session", names["user_session"],
                                  {n: [None] for n in names["user_session"]}, [None])},
        ViewRows("product_activity", ["views_24h"], {"views_24h": [4, None]}, [T0, None]),
        ViewRows("user_category", ["category_views_30d"], {"category_views_30d": [2, None]}, [T0, None]))
    table = build_model_input(Candidates([1, 2], [10, None], [30.0, None]), rows, T0, model_input_columns())
    assert table.column_names == model_input_columns()
    assert table["user_activity__avg_purchase_price_30d"].to_pylist() == [20.0, 20.0]
    assert table["product_activity__views_24h"].to_pylist() == [4, None]
    assert table["propensity_on_demand__price_vs_user_avg"].to_pylist() == [1.5, None]
    assert table["propensity_on_demand__category_in_user_top3"].to_pylist() == [1, 0]
    assert table["propensity_on_demand__seconds_since_last_event"].to_pylist() == [pytest.approx(60.0)] * 2
    assert table["category_id"].to_pylist() == [10, None]
    assert table.schema.field("user_session__recent_product_ids").type == pa.list_(pa.int64())
    assert request_seconds(T0 + timedelta(microseconds=7)) == T0.timestamp() + 7e-6


def test_a_model_reading_features_the_store_cannot_supply_is_refused() -> None:
    check_columns(INFO, ["product_id", "user_activity__views_1h"], {"product_id", "user_activity__views_1h"})
    with pytest.raises(ModelRefused, match=r"v3 .*user_activity__views_2h"):
        check_columns(INFO, ["product_id", "user_activity__views_2h"], {"product_id", "user_activity__views_1h"})


# validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "field", "shown"), [
    ({"user_id": -3, "product_ids": [1]}, "user_id", "user_id=-3"),
    ({"user_id": 1, "product_ids": []}, "product_ids", "product_ids=[]"),
    ({"user_id": 1, "product_ids": list(range(501))}, "product_ids", "(501 items)"),
    ({"user_id": 1, "product_ids": [1, "x"]}, "product_ids", "product_ids.1='x'"),
    ({"user_id": 1, "product_ids": [2**63]}, "product_ids", f"product_ids.0={2**63}"),
    ({"user_id": 1, "product_ids": [1], "event_time": "yesterday"}, "event_time", "event_time='yesterday'"),
    ({"user_id": 1, "product_ids": [1], "color": "red"}, "color", "color='red'"),
    ({"product_ids": [1]}, "user_id", "user_id is missing"),
])
def test_predict_request_errors_name_the_field_and_the_value(body: dict, field: str, shown: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PredictRequest.model_validate(body)
    errors = caught.value.errors()
    assert any(e["loc"] and e["loc"][0] == field and shown in e["msg"] for e in errors), errors


def test_recommend_request_bounds() -> None:
    assert RecommendRequest.model_validate({"user_id": 1}).k == 10
    for k in (0, 101):
        with pytest.raises(ValidationError, match=f"k={k}"):
            RecommendRequest.model_validate({"user_id": 1, "k": k})
    with pytest.raises(ValidationError, match="exclude_purchased_days=-1"):
        RecommendRequest.model_validate({"user_id": 1, "exclude_purchased_days": -1})


# auth ------------------------------------------------------------------------------------------
def _call(app: ApiKeyMiddleware, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    sent: list[dict] = []

    async def inner(scope: dict, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request"}

    app.app = inner
    asyncio.run(app({"type": "http", "path": path, "headers": headers}, receive, send))
    return int(sent[0]["status"])


def test_api_key_is_required_except_on_probes_and_metrics() -> None:
    app = ApiKeyMiddleware(None, "s3cret")  # type: ignore[arg-type]
    assert _call(app, "/predict", []) == 401
    assert _call(app, "/predict", [(b"authorization", b"Bearer wrong")]) == 401
    assert _call(app, "/predict", [(b"authorization", b"Bearer s3cret")]) == 200
    assert _call(app, "/docs.json", []) == 401
    for path in ("/livez", "/readyz", "/metrics"):
        assert _call(app, path, []) == 200
    assert _call(ApiKeyMiddleware(None, None), "/predict", []) == 200  # type: ignore[arg-type]


def test_readyz_answers_with_the_reason() -> None:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request"}

    down = ReadinessMiddleware(None, lambda: (False, "the online store (redis) did not answer"))  # type: ignore[arg-type]
    asyncio.run(down({"type": "http", "path": "/readyz", "headers": []}, receive, send))
    assert sent[0]["status"] == 503
    assert json.loads(sent[1]["body"]) == {"ready": False, "detail": "the online store (redis) did not answer"}
    sent.clear()
    up = ReadinessMiddleware(None, lambda: (True, "serving m v3 (xgboost)"))  # type: ignore[arg-type]
    asyncio.run(up({"type": "http", "path": "/readyz", "headers": []}, receive, send))
    assert sent[0]["status"] == 200 and json.loads(sent[1]["body"])["ready"] is True


def test_client_errors_are_logged_in_one_line_server_errors_with_their_traceback() -> None:
    import logging

    from pydantic import BaseModel, ValidationError

    class Body(BaseModel):
        user_id: int

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("freshcart.test.http_app")
    logger.addHandler(handler)
    logger.addFilter(ClientErrorsInOneLine())
    logger.propagate = False
    try:
        try:
            Body(user_id="x")  # type: ignore[arg-type]
        except ValidationError:
            logger.error("Exception on %s [%s]", "/predict", "POST", exc_info=True)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.error("Exception on %s [%s]", "/predict", "POST", exc_info=True)
    finally:
        logger.removeHandler(handler)
    client, server = records
    assert client.exc_info is None and client.levelno == logging.INFO
    assert client.getMessage().startswith("Exception on /predict [POST]: 400 ValidationError")
    assert server.exc_info is not None and server.levelno == logging.ERROR


def test_stored_values_decode_as_feast_decodes_them() -> None:
    from feast.protos.feast.types.Value_pb2 import DoubleList, Int64List, StringList, Value
    from feast.type_map import feast_value_type_to_python_type

    from freshcart.serving.features import OnlineFeatureReader

    reader = OnlineFeatureReader.__new__(OnlineFeatureReader)  # the decoder needs no store
    reader._feast_to_python = feast_value_type_to_python_type
    values = [Value(int64_val=7), Value(int64_val=-2**63), Value(double_val=2.5), Value(double_val=float("nan")),
              Value(), Value(int64_list_val=Int64List(val=[3, 1, 2])), Value(int64_list_val=Int64List(val=[])),
              Value(double_list_val=DoubleList(val=[0.5])), Value(string_val="x"),
              Value(string_list_val=StringList(val=["a", "b"])), Value(unix_timestamp_val=1_700_000_000),
              Value(bool_val=True)]
    for proto in values:
        ours, feast = reader._to_python(proto), feast_value_type_to_python_type(proto)
        assert type(ours) is type(feast) and (ours == feast or ours != ours and feast != feast), proto


def test_xgboost_refuses_input_columns_it_was_not_trained_on() -> None:
    import xgboost as xgb

    from freshcart.training.data import tabular_matrix
    from freshcart.training.xgb_model import XGBoostModel

    rows = build_model_input(Candidates([11, 12], [1, 2], [5.0, 9.0]), OnlineRows(
        {"user_activity": ViewRows("user_activity", [], {}, [None]),
         "user_session": ViewRows("user_session", [], {}, [None])},
        ViewRows("product_activity", [], {}, [None, None]), ViewRows("user_category", [], {}, [None, None])),
        T0, model_input_columns())
    matrix, names = tabular_matrix(rows)
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(matrix, label=[0, 1], feature_names=names), 2)
    scores = XGBoostModel(booster, names, 1).predict(rows)
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))
    swapped = [names[1], names[0], *names[2:]]
    with pytest.raises(ValueError, match="trained on"):
        XGBoostModel(booster, swapped, 1).predict(rows)


def test_cached_products_come_due_at_spread_times_and_never_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from freshcart.serving import features

    clock = [1000.0]
    monkeypatch.setattr(features.time, "monotonic", lambda: clock[0])

    class Reader(CountingReader):
        served = SimpleNamespace(by_view={"product_activity": ["views_1h", "views_24h"]})

    reader = Reader({p: (p, 10 * p) for p in range(100)})
    cache = features.ProductCache(reader, ttl=4.0, seed=1)
    products = list(range(100))
    assert cache.read(products).values["views_24h"] == [10 * p for p in products] and len(reader.reads) == 1
    reads = []
    for step in range(1, 9):  # every half second up to the ttl
        clock[0] = 1000.0 + 0.5 * step
        before = len(reader.reads)
        cache.read(products)
        reads.append(len(reader.reads[-1][1]) if len(reader.reads) > before else 0)
    assert reads[:3] == [0, 0, 0]  # none is due before half the ttl
    assert sum(reads) == 100  # every product read again once by the ttl, and only once
    assert sum(1 for n in reads if n) >= 4 and max(reads) < 50  # in several small reads, not all at once
