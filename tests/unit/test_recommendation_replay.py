"""The recommendation replay: exact metrics, no future leakage, known baseline rankings, a small shop."""

from __future__ import annotations

import math
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from freshcart.recommendation.base import Recommender, TieBreak, rank_of, top_k
from freshcart.recommendation.baselines import ItemKNN, Popularity, SessionKNN, Trending
from freshcart.recommendation.log import EventLog, build_log
from freshcart.recommendation.metrics import hit_rate, mrr, ndcg
from freshcart.recommendation.oracle import Oracle, read_truth, truth_per_event
from freshcart.recommendation.replay import (
    default_recommenders,
    evaluate_recommendations,
    query_positions,
    replay,
    replay_one,
)
from freshcart.recommendation.reranking import Reranked
from freshcart.recommendation.tracking import log_to_mlflow
from freshcart.settings import load_settings
from freshcart.storage import read_events

T0 = datetime(2025, 1, 6, tzinfo=timezone.utc)
SECOND = 1_000_000
START = int(T0.timestamp()) * SECOND + 1000 * SECOND  # the replayed period starts 1000 s after T0


def events(rows: list[tuple[float, str, int, int, int, str]]) -> pa.Table:
    """Canonical events from (seconds after T0, type, product, category, user, session) rows."""
    times = [int(T0.timestamp() * SECOND + seconds * SECOND) for seconds, *_ in rows]
    return pa.table({
        "event_id": [f"e{n:04d}" for n in range(len(rows))],
        "event_time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "event_type": [r[1] for r in rows], "product_id": [r[2] for r in rows],
        "category_id": [r[3] for r in rows], "user_id": [r[4] for r in rows],
        "user_session": [r[5] for r in rows],
    })


def shop() -> EventLog:
    """History: A (product 1) is the most popular, then B (2), C (3), D (4, category 20).

    Sessions s1 and s2 hold A and B, s3 holds A and C. In the period, user 7 views A and buys B.
    """
    history = [(1, "view", 1, 10, 1, "s1"), (2, "view", 2, 10, 1, "s1"), (3, "view", 1, 10, 2, "s2"),
               (4, "view", 2, 10, 2, "s2"), (5, "view", 1, 10, 3, "s3"), (6, "view", 3, 10, 3, "s3"),
               (7, "view", 4, 20, 4, "s4")]
    period = [(1001, "view", 1, 10, 7, "u7"), (1002, "purchase", 2, 10, 7, "u7")]
    return build_log(events(history + period))


class FixedScores(Recommender):
    """Always the same scores, by product id."""

    name = "fixed"

    def __init__(self, by_product: dict[int, float]) -> None:
        super().__init__()
        self.by_product = by_product

    def scores(self, user: int, now: int) -> np.ndarray:
        log = self._log()
        return np.array([self.by_product.get(int(p), 0.0) for p in log.product_ids])


def test_metrics_of_known_ranks() -> None:
    ranks = np.array([1, 3, 11, 200, 600])
    assert hit_rate(ranks, 10) == pytest.approx(0.4)
    assert ndcg(ranks, 10) == pytest.approx((1.0 + 1.0 / math.log2(4)) / 5)
    assert mrr(ranks) == pytest.approx((1 + 1 / 3 + 1 / 11 + 1 / 200 + 1 / 600) / 5)
    assert hit_rate(ranks, 100) == pytest.approx(0.6) and hit_rate(ranks, 500) == pytest.approx(0.8)


def test_rank_and_top_k_break_ties_by_popularity() -> None:
    log = shop()
    ties = TieBreak.by_popularity(log, log.position(START))
    scores = np.zeros(log.products)
    scores[3] = 1.0  # product 4, the least popular, scored alone
    assert list(log.product_ids[top_k(scores, 3, ties)]) == [4, 1, 2]
    assert [rank_of(scores, i, ties) for i in range(4)] == [2, 3, 4, 1]


def test_replay_scores_a_known_ranking_exactly() -> None:
    log = build_log(events([(1, "view", p, 10, 1, "h") for p in (1, 2, 3, 4, 5)]
                           + [(1001, "purchase", 5, 10, 8, "a"), (1002, "cart", 3, 10, 9, "b"),
                              (1003, "purchase", 2, 10, 9, "b")]))
    calls: list[tuple[str, int, int]] = []
    table = replay(log, [FixedScores({5: 9.0, 4: 8.0, 3: 7.0, 2: 6.0, 1: 5.0})], START, START + 10_000 * SECOND,
                   progress=lambda name, done, total: calls.append((name, done, total)))
    assert calls[-1] == ("fixed", 3, 3)
    rows = {r["event_type"]: r for r in table.to_pylist()}
    purchase, cart = rows["purchase"], rows["cart"]  # purchase ranks 1 and 4; cart rank 3
    assert purchase["queries"] == 2 and cart["queries"] == 1
    assert purchase["hr@10"] == 1.0 and purchase["recall@100"] == 1.0
    assert purchase["ndcg@10"] == pytest.approx((1.0 + 1.0 / math.log2(5)) / 2)
    assert purchase["mrr"] == pytest.approx((1.0 + 1 / 4) / 2)
    assert cart["ndcg@10"] == pytest.approx(1 / math.log2(4)) and cart["mrr"] == pytest.approx(1 / 3)
    assert purchase["coverage@10"] == pytest.approx(1.0)  # 5 products, all shown


def test_each_baseline_gives_the_known_ranking() -> None:
    log = shop()
    stop, now, user = log.position(START), START + 2 * SECOND, int(np.flatnonzero(log.user_ids == 7)[0])
    expected = {Popularity(): [1, 2, 4, 3],  # by recency-weighted counts: D (one view) is newer than C
                ItemKNN(): [1, 2, 3, 4],  # A itself, then B (cosine 2/sqrt(6)), then C (1/sqrt(3))
                SessionKNN(): [1, 2, 3, 4]}  # s1, s2, s3 are equally close; A is in all three, B in two
    # (C and D, one event each, tie where unscored: the lower product index first)
    for recommender, ranking in expected.items():
        recommender.fit(log, stop)
        assert list(recommender.recommend(user, 4, now)) == ranking, recommender.name
    trending = Trending()
    trending.fit(log, stop)
    # User 4 has only seen category 20: its product D leads although it is the least popular.
    assert list(trending.recommend(int(np.flatnonzero(log.user_ids == 4)[0]), 2, now))[0] == 4


def test_item_knn_neighbours_come_from_co_occurrence() -> None:
    log = shop()
    knn = ItemKNN(half_life_hours=1e6)
    knn.fit(log, log.position(START))
    index = {int(p): i for i, p in enumerate(log.product_ids)}
    a, b, c = index[1], index[2], index[3]
    assert knn.matrix[a, b] == pytest.approx(2.0) and knn.matrix[b, a] == pytest.approx(2.0)
    assert knn.matrix[a, c] == pytest.approx(1.0) and knn.matrix[b, c] == 0.0
    assert np.diagonal(knn.matrix)[[a, b, c]] == pytest.approx([3.0, 2.0, 1.0])


def test_the_replay_never_sees_the_event_it_asks_about_nor_later_ones() -> None:
    """User 7 buys B at t; at t another shopper buys B too, and later B sells a hundred times."""
    base = [(1, "view", p, 10, 1, "h") for p in (1, 1, 1, 2, 3)]
    query = [(1001, "view", 1, 10, 7, "u7"), (1002, "purchase", 2, 10, 7, "u7"), (1002, "purchase", 2, 10, 8, "x")]
    later = [(1003 + n, "purchase", 2, 10, 9, f"l{n}") for n in range(100)] + [(1004, "view", 2, 10, 7, "u7")]
    end = START + 2 * SECOND + 1  # the two purchases at 1002 s only
    full, cut = build_log(events(base + query + later)), build_log(events(base + query))
    truth = np.where(full.kind == 0, 0.1, np.nan)
    for name in ("popularity", "trending", "item-knn", "sknn", "oracle"):
        seen = []
        for log in (full, cut):  # the same ranks and lists with or without what came at and after t
            recommender = next(r for r in default_recommenders(log, truth[: log.size]) if r.name == name)
            stop = log.position(START)
            queries = query_positions(log, START, end)["purchase"]
            ranks, shown, _, _ = replay_one(log, recommender, stop, queries, TieBreak.by_popularity(log, stop))
            seen.append((ranks.tolist(), shown.tolist()))
        assert len(seen[0][0]) == 2 and seen[0] == seen[1], name
    popularity = Popularity()
    popularity.fit(full, full.position(START))
    user = int(np.flatnonzero(full.user_ids == 7)[0])
    # B's rank as of t: behind A (3 views), not first as a hundred later purchases would make it.
    assert list(popularity.recommend(user, 3, START + 2 * SECOND)) == [1, 2, 3]
    assert full.recent_items(user, START + 2 * SECOND).tolist() == [int(np.flatnonzero(full.product_ids == 1)[0])]


def test_the_oracle_ranks_carted_products_above_viewed_ones() -> None:
    log = build_log(events([(1, "view", 1, 10, 1, "h"), (2, "view", 2, 10, 1, "h"), (3, "view", 3, 10, 1, "h"),
                            (4, "cart", 3, 10, 1, "h"), (5, "view", 4, 10, 1, "h"), (6, "cart", 4, 10, 1, "h"),
                            (7, "remove_from_cart", 4, 10, 1, "h")]))
    truth = np.full(log.size, np.nan)
    truth[[0, 1, 2, 4]] = [0.05, 0.2, 0.01, 0.3]
    oracle = Oracle(truth)
    oracle.fit(log, log.size)
    # Product 3 is in the cart (0.52), 4 was removed (0), 2 and 1 by their view's truth.
    assert list(oracle.recommend(0, 4, int(log.time[-1]) + 1)) == [3, 2, 1, 4]


def test_a_model_over_candidates_reorders_the_pool_only() -> None:
    log = shop()

    class Reverse:
        name = "reverse"

        def rank(self, user_id: int, product_ids: np.ndarray, now: int) -> np.ndarray:
            return np.arange(product_ids.shape[0], dtype=float)  # the candidates' last first

    reranked = Reranked(Popularity(), Reverse(), pool=2)
    reranked.fit(log, log.position(START))
    assert list(reranked.recommend(0, 4, START)) == [2, 1, 4, 3]  # popularity: 1, 2, 4, 3


@pytest.fixture(scope="module")
def small_shop(small_simulation: Path) -> EventLog:
    return build_log(read_events(small_simulation))


def test_item_knn_and_sknn_beat_popularity_on_a_small_simulated_shop(small_simulation: Path,
                                                                       small_shop: EventLog) -> None:
    """Shoppers buy what they viewed in the session: neighbourhood methods find it, popularity does not."""
    truth, covered = truth_per_event(small_shop, read_truth(small_simulation))
    assert covered == 1.0
    start = int(small_shop.time[0]) + 3 * 86_400 * SECOND  # the fourth day
    table = replay(small_shop, default_recommenders(small_shop, truth), start, start + 86_400 * SECOND)
    ndcg_of = {(r["recommender"], r["event_type"]): r["ndcg@10"] for r in table.to_pylist()}
    assert min(r["queries"] for r in table.to_pylist()) > 50
    for kind in ("purchase", "cart"):
        assert ndcg_of[("item-knn", kind)] > 2 * ndcg_of[("popularity", kind)]
        assert ndcg_of[("sknn", kind)] > 2 * ndcg_of[("popularity", kind)]
    # The oracle knows the carts and their true purchase probability: the ceiling for purchases.
    assert ndcg_of[("oracle", "purchase")] > max(ndcg_of[(name, "purchase")] for name in
                                                 ("popularity", "trending", "item-knn", "sknn"))


def test_evaluate_recommendations_reads_the_offline_store_and_logs_to_mlflow(small_simulation: Path,
                                                                             tmp_path: Path) -> None:
    settings = load_settings(profile="local", data_dir=tmp_path, mlflow_tracking_uri=f"sqlite:///{tmp_path}/m.db")
    shutil.copytree(small_simulation, settings.simulation_dir)
    shutil.copytree(small_simulation, settings.offline_events_dir, ignore=shutil.ignore_patterns("_truth"))
    days = sorted(p.name.split("=")[1] for p in settings.offline_events_dir.glob("event_date=*"))
    start = date.fromisoformat(days[3])
    table = evaluate_recommendations(settings, start, date.fromordinal(start.toordinal() + 1))
    assert sorted(set(table["recommender"].to_pylist())) == ["item-knn", "oracle", "popularity", "sknn", "trending"]
    with pytest.raises(ValueError, match="end 2025-01-01 must be after start 2025-01-02"):
        evaluate_recommendations(settings, date(2025, 1, 2), date(2025, 1, 1))
    import mlflow

    run_id = log_to_mlflow(settings, table, model_version="3")
    run = mlflow.get_run(run_id)
    row = table.to_pylist()[0]
    assert run.data.tags["model_version"] == "3"
    assert run.data.metrics[f"{row['recommender']}.{row['event_type']}.ndcg_at_10"] == pytest.approx(row["ndcg@10"])


def test_bad_input_is_rejected_with_the_field_and_what_to_do() -> None:
    table = events([(1, "view", 1, 10, 1, "h"), (2, "click", 1, 10, 1, "h")])
    with pytest.raises(ValueError, match="event_type 'click' is not one of"):
        build_log(table)
    with pytest.raises(ValueError, match=r"lack the columns \['user_session'\]"):
        build_log(table.drop_columns(["user_session"]))
    log = shop()
    with pytest.raises(ValueError, match="no events before the replay period"):
        replay(log, [Popularity()], int(log.time[0]), int(log.time[-1]))


def test_cli_prints_the_table_and_names_a_bad_interval(small_simulation: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from freshcart.cli import app

    monkeypatch.setenv("FRESHCART_DATA_DIR", str(tmp_path))
    settings = load_settings(profile="local", data_dir=tmp_path)
    shutil.copytree(small_simulation, settings.offline_events_dir, ignore=shutil.ignore_patterns("_truth"))
    days = sorted(p.name.split("=")[1] for p in settings.offline_events_dir.glob("event_date=*"))
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate-recommendations", "--start", days[3], "--no-log-to-mlflow"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0] + " " + line.split()[1] for line in result.output.splitlines()
             if line.strip() and line.split()[0] in ("popularity", "trending", "item-knn", "sknn")}
    assert lines == {f"{r} {e}" for r in ("popularity", "trending", "item-knn", "sknn") for e in ("purchase", "cart")}
    assert "oracle" not in result.output  # no simulator truth in this data dir
    bad = runner.invoke(app, ["evaluate-recommendations", "--start", days[3], "--end", days[2]])
    assert bad.exit_code == 1 and "must be after start" in bad.output
