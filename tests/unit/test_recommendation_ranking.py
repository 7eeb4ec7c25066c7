"""Rankers of the blend's candidates: point-in-time candidate features, the learning-to-rank model on a
small simulated shop against popularity, and the ranker gate of a real MLflow registry in a tmp dir."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from freshcart.features import spec
from freshcart.features.training_set import join_features
from freshcart.recommendation.base import TieBreak
from freshcart.recommendation.baselines import Popularity
from freshcart.recommendation.candidate_features import CandidateTable, candidate_examples, candidate_rows
from freshcart.recommendation.log import build_log
from freshcart.recommendation.ranker import RankerParams, train_ranker
from freshcart.recommendation.ranker_experiment import RankerComparison, compare_rankers
from freshcart.recommendation.ranker_registry import RANKER_MODEL, SERVING_RANKER_TAG, promote_ranker, \
    register_ranker
from freshcart.recommendation.ranker_training import ranker_scores
from freshcart.recommendation.ranking_replay import target_ranks, validation_ndcg
from freshcart.recommendation.replay import replay_one
from freshcart.settings import Settings, load_settings
from freshcart.simulator import SimulationConfig, write_simulation
from freshcart.storage import read_events

SHOP = SimulationConfig(seed=7, users=1_200, products=500, days=6, events_per_day=25_000)
DAY_US = 86_400 * 1_000_000
QUERIES_PER_DAY = 250
T = int(datetime(2025, 1, 8, 12, tzinfo=timezone.utc).timestamp()) * 1_000_000


def one_query(user: int, products: list[int], time_us: int, target: int) -> CandidateTable:
    n = len(products)
    return CandidateTable(
        names=["recent"], query=np.zeros(n, np.int64), user_id=np.full(n, user), product_id=np.asarray(products),
        time_us=np.full(n, time_us), position=np.arange(n), source=np.zeros(n, np.int64),
        rank_in=np.arange(n, dtype=np.float32)[:, None], label=(np.asarray(products) == target).astype(np.int8),
        targets=np.asarray([target]), kinds=np.asarray([0], np.int8))


def view_rows(view: spec.ViewSpec, rows: list[dict[str, object]]) -> pa.Table:
    """Feature rows of ``view`` (features not given are null)."""
    columns = {}
    for field in view.schema:
        columns[field.name] = pa.array([row.get(field.name) for row in rows], field.type)
    return pa.table(columns, schema=view.schema)


def test_candidate_features_are_those_strictly_before_the_query() -> None:
    """A purchase at t (the feature rows it wrote at t, the price it paid at t) is not in a query at t."""
    before, at = pa.scalar(T - 60_000_000, pa.timestamp("us", tz="UTC")), pa.scalar(T, pa.timestamp("us", tz="UTC"))
    ts = spec.TIMESTAMP
    views = {
        "user_activity": view_rows(spec.USER_ACTIVITY, [
            {"user_id": 1, ts: before.as_py(), "purchases_24h": 0, "views_24h": 3},
            {"user_id": 1, ts: at.as_py(), "purchases_24h": 1, "views_24h": 3}]),
        "product_activity": view_rows(spec.PRODUCT_ACTIVITY, [
            {"product_id": 7, ts: before.as_py(), "purchases_24h": 4},
            {"product_id": 7, ts: at.as_py(), "purchases_24h": 5}]),
        "user_category": view_rows(spec.USER_CATEGORY, [
            {"user_id": 1, "category_id": 70, ts: before.as_py(), "category_views_30d": 3}]),
        "user_session": view_rows(spec.USER_SESSION, [
            {"user_id": 1, ts: before.as_py(), "recent_product_ids": [7, 8], "recent_category_ids": [70, 80]},
            {"user_id": 1, ts: at.as_py(), "recent_product_ids": [7, 8, 7], "recent_category_ids": [70, 80, 70]}]),
    }
    events = pa.table({
        "product_id": [7, 8, 7], "event_time": pa.array([T - 60_000_000, T - 30_000_000, T],
                                                         pa.timestamp("us", tz="UTC")),
        "category_id": [70, 80, 71], "price": [10.0, 20.0, 99.0]})
    table = one_query(1, [7, 8, 9], T, 7)
    examples = candidate_examples(table, events)
    assert examples["price"].to_pylist() == [10.0, 20.0, None]  # not the 99.0 of the event at t; 9 unseen
    assert examples["category_id"].to_pylist() == [70, 80, None]
    rows = join_features(examples, views)
    assert rows["user_activity__purchases_24h"].to_pylist() == [0, 0, 0]
    assert rows["product_activity__purchases_24h"].to_pylist() == [4, None, None]
    assert rows["user_session__recent_product_ids"].to_pylist()[0] == [7, 8]
    assert rows["user_category__category_views_30d"].to_pylist() == [3, None, None]
    # one microsecond later the rows written at t are known
    later = candidate_rows(replace(table, time_us=table.time_us + 1), events, views)
    assert later["user_activity__purchases_24h"].to_pylist() == [1, 1, 1]
    assert later["price"].to_pylist()[0] == 99.0


def test_ranks_put_the_candidates_first_and_the_rest_in_popularity_order() -> None:
    products = [1, 1, 1, 2, 2, 3, 4]
    log = build_log(pa.table({
        "event_id": [f"e{n}" for n in range(len(products))],
        "event_time": pa.array([T - 1000 + n for n in range(len(products))], pa.timestamp("us", tz="UTC")),
        "event_type": ["view"] * len(products), "product_id": products, "category_id": [1] * len(products),
        "user_id": [1] * len(products), "user_session": ["s"] * len(products)}))
    ties = TieBreak.by_popularity(log, log.size)  # popularity order 1, 2, 3, 4
    hit = one_query(1, [3, 2], T, 2)
    ranks, shown = target_ranks(log, hit, np.array([0.1, 0.9]), ties, k=3)
    assert ranks.tolist() == [1]
    assert log.product_ids[shown[0]].tolist() == [2, 3, 1]
    miss = one_query(1, [3, 2], T, 4)
    ranks, _ = target_ranks(log, miss, np.array([0.1, 0.9]), ties, k=3)
    assert ranks.tolist() == [4]  # after the 2 candidates, then 1, then 4
    with pytest.raises(ValueError, match="one score per row"):
        target_ranks(log, miss, np.array([0.1]), ties)


@dataclass
class Shop:
    settings: Settings
    log: object
    compared: RankerComparison
    popularity_ndcg: float
    start: int


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    settings = load_settings(data_dir=tmp_path_factory.mktemp("ranking_shop"), training_threads=1)
    write_simulation(SHOP, settings.offline_events_dir)
    events = read_events(settings.offline_events_dir)
    log = build_log(events)
    end = int(log.time[-1]) // DAY_US * DAY_US
    start = end - DAY_US
    compared = compare_rankers(settings, log, events, start, end, None, ranker_days=2,
                               max_queries=QUERIES_PER_DAY, params=RankerParams(max_rounds=60, threads=1), threads=1)
    holdout = {r["event_type"]: r for r in compared.rows if r["recommender"] == "rank:ndcg"}
    assert sum(r["queries"] for r in holdout.values()) == QUERIES_PER_DAY
    # popularity on the very same holdout queries
    queries = np.sort(np.concatenate([np.flatnonzero((log.time >= start) & (log.time < end) & (log.kind == k))
                                      for k in (1, 3)]))
    queries = queries[np.linspace(0, queries.shape[0] - 1, QUERIES_PER_DAY).astype(np.int64)]
    fit_stop = log.position(start)
    ranks, *_ = replay_one(log, Popularity(), fit_stop, queries, TieBreak.by_popularity(log, fit_stop))
    popularity = float(np.mean(np.where(ranks <= 10, 1.0 / np.log2(ranks + 1.0), 0.0)))
    return Shop(settings, log, compared, popularity, start)


def test_the_trained_ranker_beats_popularity_on_small_simulated_data(shop: Shop) -> None:
    rows = [r for r in shop.compared.rows if r["recommender"] == "rank:ndcg"]
    weights = [r["queries"] for r in rows]
    ranker = float(np.average([r["ndcg@10"] for r in rows], weights=weights))
    assert ranker > 2 * shop.popularity_ndcg
    assert ranker > 0.3
    # and on validation it is at least as good as the candidates' own order
    assert shop.compared.validation_ndcg["rank:ndcg"] >= shop.compared.validation_ndcg["blend"] - 0.02


def test_a_ranker_that_scores_at_random_is_not_promoted(shop: Shop) -> None:
    settings, validation = shop.settings, shop.compared.validation
    ties = TieBreak.by_popularity(shop.log, shop.log.position(shop.start - DAY_US))
    x, names = validation.ranker_inputs()
    shuffled = replace(validation.table, label=np.random.default_rng(0).permutation(validation.table.label))
    noise = train_ranker(x, shuffled, x, shuffled, names, RankerParams(max_rounds=3, early_stopping_rounds=3,
                                                                        threads=1))
    noise_ndcg = validation_ndcg(shop.log, validation.table, ranker_scores(noise, validation), ties)
    real = shop.compared.ranker
    real_ndcg = validation_ndcg(shop.log, validation.table, ranker_scores(real, validation), ties)
    assert noise_ndcg < real_ndcg

    first = register_ranker(settings, noise, {"validation_ndcg_at_10": noise_ndcg}, {"what": "random"})
    decision = promote_ranker(settings, validation, shop.log, ties)
    assert (decision.action, decision.challenger, decision.champion_after) == ("kept", first, None)
    assert decision.serving == "propensity"

    from freshcart.training.registry import connect, version_by_alias

    client = connect(settings)
    assert client.get_registered_model(RANKER_MODEL).tags[SERVING_RANKER_TAG] == "propensity"
    assert client.get_model_version(RANKER_MODEL, first).tags["ranker_promotion.action"] == "kept"

    second = register_ranker(settings, real, {"validation_ndcg_at_10": real_ndcg}, {"what": "trained"})
    decision = promote_ranker(settings, validation, shop.log, ties)
    if decision.propensity_ndcg + settings.promotion_margin < real_ndcg:
        assert (decision.action, decision.champion_after, decision.serving) == ("promoted", second, "ranker")
    else:  # the propensity model ranks better here: the trained ranker is kept out too
        assert decision.action == "kept"

    third = register_ranker(settings, noise, {"validation_ndcg_at_10": noise_ndcg}, {"what": "random again"})
    before = decision.champion_after
    decision = promote_ranker(settings, validation, shop.log, ties)
    assert decision.action == "kept" and decision.challenger == third
    champion = version_by_alias(client, RANKER_MODEL, "champion")
    assert (None if champion is None else str(champion.version)) == before
    assert decision.challenger_ndcg == pytest.approx(noise_ndcg)


def test_train_ranker_task_registers_and_gates_against_the_propensity_champion(shop: Shop) -> None:
    """The DAG task's logic on the offline store: the propensity champion from the registry, the ranker
    registered as a new version, a decision with both figures recorded on it."""
    from freshcart.recommendation.ranker_job import train_and_gate
    from freshcart.training.promote import promote
    from freshcart.training.registry import RegistryError, connect
    from freshcart.training.train import train_model

    settings = shop.settings
    end = datetime.fromtimestamp(shop.start / 1e6, tz=timezone.utc)  # validation: the day before the holdout
    with pytest.raises(RegistryError, match="no champion"):
        train_and_gate(settings, end, ranker_days=1, max_queries=QUERIES_PER_DAY)
    first = datetime.fromtimestamp(int(shop.log.time[0]) // DAY_US * DAY_US / 1e6, tz=timezone.utc)
    train_model(settings, "xgboost", first.date(), (end - timedelta(days=2)).date())
    assert promote(settings).action == "promoted"
    summary = train_and_gate(settings, end, ranker_days=1, max_queries=QUERIES_PER_DAY,
                             params=RankerParams(max_rounds=30, threads=1))
    assert summary["validation_queries"] == QUERIES_PER_DAY and summary["propensity_version"] == "1"
    assert summary["action"] in ("promoted", "kept")
    assert summary["challenger_ndcg"] > 0 and summary["propensity_ndcg"] > 0
    best = max(summary["propensity_ndcg"], summary["champion_ndcg"] or 0.0)
    assert (summary["action"] == "promoted") == (summary["challenger_ndcg"] >= best + settings.promotion_margin)
    tags = connect(settings).get_model_version(RANKER_MODEL, summary["version"]).tags
    assert tags["ranker_promotion.action"] == summary["action"]
    assert float(tags["ranker_promotion.propensity_ndcg"]) == pytest.approx(summary["propensity_ndcg"])


def test_cli_train_ranker_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from freshcart.cli import app

    monkeypatch.setenv("FRESHCART_DATA_DIR", str(tmp_path))  # a data dir without a propensity champion
    runner = CliRunner()
    bad_day = runner.invoke(app, ["train-ranker", "--validation-day", "12/01/2025"])
    assert bad_day.exit_code == 2 and "--start" not in bad_day.output and "12/01/2025" in bad_day.output
    no_champion = runner.invoke(app, ["train-ranker", "--validation-day", "2025-01-10"])
    assert no_champion.exit_code == 1
    assert "no champion" in no_champion.output and "train and promote a propensity model" in no_champion.output
