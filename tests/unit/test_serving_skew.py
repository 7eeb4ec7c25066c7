"""Training/serving skew: the service's model input for a view equals the training set's row, column by column.

A small simulated shop (local profile: SQLite online store, no servers): feature tables,
`feast apply`, the training set. Then, for views in time order, the feature tables are
materialised up to the view's time and the service builds its model input for the same
user, product and time through the online store; every model-input column, and the
model's own matrix built from it, must equal the training row's. Likewise the ranker's
input that /recommend builds for a hand-built candidate list equals, column by column, the
rows the replay builds for the same candidates (:mod:`freshcart.recommendation.ranker_training`).
"""

from __future__ import annotations

import math
from datetime import datetime, time as clock, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from freshcart import storage
from freshcart.features.materialize import materialize
from freshcart.features.store import apply
from freshcart.features.tables import build_feature_tables
from freshcart.features.training_set import build_training_set, read_view_tables
from freshcart.recommendation.candidate_replay import CandidateLists
from freshcart.recommendation.log import build_log
from freshcart.recommendation.ranker_training import ranking_day
from freshcart.serving.candidates import Blend, gather_proposals
from freshcart.serving.catalogue import load_catalogue
from freshcart.serving.model import ModelInfo, ServingModel
from freshcart.serving.ranking import ranker_columns, ranker_matrix
from freshcart.serving.scoring import ScoringService
from freshcart.settings import Settings, load_settings
from freshcart.storage import read_events
from freshcart.simulator import SimulationConfig, write_simulation
from freshcart.training.data import model_input_columns, tabular_matrix

SHOP = SimulationConfig(seed=11, users=250, products=150, categories=8, days=3, events_per_day=6_000)


class InputsOnly:
    """Stands in for the model: the skew test is about the inputs, not the scores."""

    def predict(self, table: pa.Table) -> np.ndarray:
        return np.zeros(table.num_rows)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, pa.Table]:
    settings = load_settings(profile="local", data_dir=tmp_path_factory.mktemp("skew-shop"),
                             serving_product_cache_seconds=0)
    write_simulation(SHOP, settings.offline_events_dir)
    days = storage.list_partitions(settings.offline_events_dir)
    build_feature_tables(settings, days[0], days[-1])
    applied = apply(settings)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    table, _ = build_training_set(settings, days[1], days[2])
    return settings, table


def _views(table: pa.Table) -> list[dict]:
    """A spread of views: early and late, with and without the user's session and purchase history."""
    rows = table.to_pylist()
    picked = [rows[0], rows[len(rows) // 3], rows[len(rows) // 2], rows[-1]]
    picked.append(next(r for r in rows if r["user_activity__avg_purchase_price_30d"] is not None))
    picked.append(next(r for r in rows if r["user_session__recent_product_ids"] is None))
    picked.append(next(r for r in rows if r["propensity_on_demand__category_in_user_top3"] == 1))
    unique = {r["event_id"]: r for r in picked}
    return sorted(unique.values(), key=lambda r: (r["event_time"], r["event_id"]))


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def test_service_model_input_equals_the_training_row(shop: tuple[Settings, pa.Table]) -> None:
    settings, table = shop
    views = _views(table)
    assert len(views) >= 5
    service = ScoringService(settings, catalogue=load_catalogue(settings))
    service._connect()
    model = ServingModel(ModelInfo("inputs", "0", "test", "xgboost", ""), InputsOnly(), model_input_columns(), 0.0)
    first_day = storage.list_partitions(settings.offline_events_dir)[0]
    start = datetime.combine(first_day, clock(), tzinfo=timezone.utc)
    checked = 0
    for view in views:
        moment = view["event_time"]
        materialize(settings, start, moment)  # the rows strictly before the view, as the training join sees them
        served = service.score(model, view["user_id"], [view["product_id"]], moment).inputs
        row = table.filter(pc.equal(table["event_id"], view["event_id"]))
        expected = row.select(model_input_columns())
        assert served.column_names == expected.column_names
        for name in expected.column_names:
            assert served.schema.field(name).type == expected.schema.field(name).type, name
            got, want = served[name].to_pylist()[0], expected[name].to_pylist()[0]
            assert _same(got, want), f"view {view['event_id']} column {name}: served {got!r}, trained {want!r}"
        served_matrix, names = tabular_matrix(served)
        trained_matrix, _ = tabular_matrix(expected)
        np.testing.assert_array_equal(served_matrix, trained_matrix, err_msg=f"model matrix of {view['event_id']}")
        assert len(names) == served_matrix.shape[1]
        checked += 1
    assert checked == len(views)


class InputSum:
    """Stands in for the propensity model: a score that any difference in its input changes."""

    def predict(self, table: pa.Table) -> np.ndarray:
        matrix, _ = tabular_matrix(table)
        weights = np.arange(1, matrix.shape[1] + 1, dtype=np.float64)
        return np.nan_to_num(matrix.astype(np.float64), nan=-1.0) @ weights


class Fixed:
    """A candidate source with fixed proposals."""

    def __init__(self, name: str, products: list[int]) -> None:
        self.name, self.products = name, products

    def propose(self, context: object, limit: int) -> list[int]:
        return self.products[:limit]


def test_the_ranker_input_of_recommend_equals_the_replay_row(shop: tuple[Settings, pa.Table]) -> None:
    """/recommend's ranker input (model input, source ranks after exclusions, propensity score) for a
    hand-built candidate list equals the replay's rows of the same candidates at the same time."""
    settings, table = shop
    view = _views(table)[-1]
    moment, user = view["event_time"], view["user_id"]
    events = read_events(settings.offline_events_dir)
    log = build_log(events)
    now = int(pa.scalar(moment, pa.timestamp("us", tz="UTC")).value)
    seen = log.product_ids[np.unique(log.item[log.time < now])].tolist()  # products with events before the view
    assert len(seen) >= 30
    sources = Blend([Fixed("session", seen[:4]), Fixed("co_viewed", seen[2:14]), Fixed("trending", seen[10:25]),
                     Fixed("popular", seen[::-1][:20])], {"session": 0.25, "co_viewed": 0.25, "trending": 0.25})
    exclude, limit = {seen[3], seen[11]}, 16
    gathered = gather_proposals(sources, None, limit, exclude)  # type: ignore[arg-type]
    assert len(gathered.candidates) == limit

    first_day = storage.list_partitions(settings.offline_events_dir)[0]
    materialize(settings, datetime.combine(first_day, clock(), tzinfo=timezone.utc), moment)
    service = ScoringService(settings, catalogue=load_catalogue(settings))
    service._connect()
    model = ServingModel(ModelInfo("inputs", "0", "test", "xgboost", ""), InputSum(), ["price"], 0.0)
    scored = service.score(model, user, [c.product_id for c in gathered.candidates], moment,
                           columns=ranker_columns(model.columns))
    served, served_names = ranker_matrix(scored, gathered, user, moment)

    position = int(np.flatnonzero((log.time == now) & (log.user_ids[log.user] == user))[0])
    lists = CandidateLists(gathered.names, np.asarray([position]), [view["product_id"]],
                           [[s.propose(None, limit + len(exclude)) for s in sources]], [exclude])
    views = read_view_tables(settings, moment.date(), first_day.fromordinal(moment.date().toordinal() + 1))
    day = ranking_day(log, events, views, InputSum().predict, np.asarray([position]), sources.quotas(limit), limit,
                      lists)
    replayed, replay_names = day.ranker_inputs()
    assert served_names == replay_names
    assert served.shape == replayed.shape == (limit, len(replay_names))
    assert day.table.product_id.tolist() == [c.product_id for c in gathered.candidates]
    for i, name in enumerate(replay_names):
        np.testing.assert_array_equal(served[:, i], replayed[:, i], err_msg=f"ranker input column {name}")
    ranks = served[:, replay_names.index("candidate_rank_co_viewed")]
    assert ranks[[c.product_id for c in gathered.candidates].index(seen[12])] == 8.0  # 10th, after 2 excluded
    assert set(served[:, replay_names.index("candidate_sources")].tolist()) >= {1.0, 2.0}
    assert np.isfinite(served[:, replay_names.index("propensity_score")]).all()


def test_a_changed_online_value_changes_the_served_input(shop: tuple[Settings, pa.Table]) -> None:
    """The comparison above can fail: a view read after later rows were materialised differs from its row."""
    settings, table = shop
    service = ScoringService(settings, catalogue=load_catalogue(settings))
    service._connect()
    model = ServingModel(ModelInfo("inputs", "0", "test", "xgboost", ""), InputsOnly(), model_input_columns(), 0.0)
    first_day = storage.list_partitions(settings.offline_events_dir)[0]
    start = datetime.combine(first_day, clock(), tzinfo=timezone.utc)
    early = table.slice(0, 1).to_pylist()[0]
    materialize(settings, start, datetime.combine(storage.list_partitions(settings.offline_events_dir)[-1],
                                                  clock(), tzinfo=timezone.utc))
    served = service.score(model, early["user_id"], [early["product_id"]], early["event_time"]).inputs
    differing = [n for n in model_input_columns() if not _same(served[n].to_pylist()[0], early[n])]
    assert differing, "features materialised after the view should differ from the training row"
    assert Path(settings.data_dir).is_dir()
