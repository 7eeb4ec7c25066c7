"""Candidate sources: co-occurrence on a hand-built log, each source's proposals, no future in the replay,
the quota search, and the neighbours through Feast's SQLite online store to the service's sources."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from freshcart.features import spec
from freshcart.recommendation.candidate_replay import (
    CandidateLists, ReplaySources, SnapshotNeighbours, SnapshotSessions, propose_all, replay_context,
)
from freshcart.recommendation.cooccurrence import build_cooccurrence, neighbour_table
from freshcart.recommendation.log import build_log
from freshcart.recommendation.quotas import blend_recall, contributions, search_quotas
from freshcart.recommendation.session_index import build_session_index, load_session_index
from freshcart.serving.candidates import (
    Blend, NeighbourSource, SessionKNNSource, ShopperContext, blend, gather_candidates,
)

T0 = datetime(2025, 1, 6, tzinfo=timezone.utc)
SECOND = 1_000_000
DAY = 86_400 * SECOND
T0_US = int(T0.timestamp()) * SECOND


def events(rows: list[tuple[float, str, int, int, int, str]]) -> pa.Table:
    """Canonical events from (seconds after T0, type, product, category, user, session) rows."""
    return pa.table({
        "event_id": [f"e{n:04d}" for n in range(len(rows))],
        "event_time": pa.array([T0_US + int(r[0] * SECOND) for r in rows], pa.timestamp("us", tz="UTC")),
        "event_type": [r[1] for r in rows], "product_id": [r[2] for r in rows],
        "category_id": [r[3] for r in rows], "user_id": [r[4] for r in rows],
        "user_session": [r[5] for r in rows], "price": [1.0] * len(rows),
        "category_code": [None] * len(rows), "brand": [None] * len(rows),
    })


# s1: 1, 2 and buys 2; s2: 1, 3, 2; s3: 4 carted; s4 (after the build instant): 1, 5.
LOG_ROWS = [(1, "view", 1, 10, 1, "s1"), (2, "view", 2, 10, 1, "s1"), (3, "purchase", 2, 10, 1, "s1"),
            (4, "view", 1, 10, 2, "s2"), (5, "view", 3, 10, 2, "s2"), (6, "view", 2, 10, 2, "s2"),
            (7, "view", 4, 20, 3, "s3"), (8, "cart", 4, 20, 3, "s3"),
            (100, "view", 1, 10, 4, "s4"), (101, "view", 5, 10, 4, "s4")]


def as_lists(log, cooccurrence, kind: str) -> dict[int, list[tuple[int, float]]]:
    table = cooccurrence.kind(kind)
    out = {}
    for item, product in enumerate(log.product_ids.tolist()):
        ids, weights = table.of(item)
        out[product] = [(int(log.product_ids[i]), round(float(w), 3)) for i, w in zip(ids, weights)]
    return out


def test_cooccurrence_of_a_hand_built_log_gives_the_known_neighbours() -> None:
    log = build_log(events(LOG_ROWS))
    built = build_cooccurrence(log, T0_US + 50 * SECOND)  # s4 is after the instant: not counted
    # 1 and 2 share s1 and s2 (cosine 2 / sqrt(2 * 2)); 1-3 and 2-3 share s2 (1 / sqrt(2 * 1)),
    # 3-2 a second later than 3-1, so it weighs a little more (recency)
    assert as_lists(log, built, "co_viewed") == {1: [(2, 1.0), (3, 0.707)], 2: [(1, 1.0), (3, 0.707)],
                                                 3: [(2, 0.707), (1, 0.707)], 4: [], 5: []}
    ids, weights = built.co_viewed.of(2)
    assert weights[0] > weights[1] and built.co_viewed.of(int(np.flatnonzero(log.product_ids == 3)[0]))[1][0] > \
        built.co_viewed.of(int(np.flatnonzero(log.product_ids == 3)[0]))[1][1]
    # 2 was bought in s1 after 1 was viewed; 4 was carted with nothing viewed before it but itself
    assert as_lists(log, built, "co_bought") == {1: [(2, 0.707)], 2: [], 3: [], 4: [], 5: []}
    later = build_cooccurrence(log, T0_US + 200 * SECOND)
    assert as_lists(log, later, "co_viewed")[5] == [(1, 0.577)]  # 1 in three sessions, 5 in one
    table = neighbour_table(log, built)
    assert table.schema == spec.PRODUCT_NEIGHBOURS.schema
    assert table["product_id"].to_pylist() == [1, 2, 3]  # products without a neighbour have no row
    assert table["co_bought_ids"].to_pylist() == [[2], [], []]
    assert {t.timestamp() for t in table[spec.TIMESTAMP].to_pylist()} == {(T0_US + 50 * SECOND - 1) / SECOND}


def test_top_n_keeps_the_best_neighbours_and_breaks_ties_by_product_id() -> None:
    from freshcart.recommendation.cooccurrence import CooccurrenceConfig

    rows = [(1, "view", product, 10, 1, "s1") for product in (9, 3, 7, 5)]  # one instant: equal weights
    log = build_log(events(rows))
    built = build_cooccurrence(log, T0_US + 10 * SECOND, CooccurrenceConfig(top_n=2))
    assert [p for p, _ in as_lists(log, built, "co_viewed")[9]] == [3, 5]  # all tie at 1.0: lowest ids


class FixedNeighbours:
    def __init__(self, lists: dict[int, tuple[list[int], list[float]]]) -> None:
        self.lists = lists
        self.asked: list[list[int]] = []

    def neighbours(self, kind: str, product_ids: list[int]) -> list[tuple[list[int], list[float]]]:
        self.asked.append(list(product_ids))
        return [self.lists.get(p, ([], [])) for p in product_ids]


def test_neighbour_source_sums_recency_weighted_lists_and_leaves_the_seeds_out() -> None:
    lookup = FixedNeighbours({1: ([2, 3, 9], [1.0, 0.5, 0.4]), 9: ([4, 1], [1.0, 0.9])})
    context = ShopperContext(user_id=7, recent_products=[1, 9], session_products=1)
    source = NeighbourSource("co_viewed", lookup, decay=0.5)
    # 2: 1.0; 3: 0.5; 4: 0.5 * 1.0 (9 is one step older); 9 and 1 are the shopper's own
    assert source.propose(context, 10) == [2, 3, 4]
    assert source.propose(context, 2) == [2, 3]
    assert source.propose(ShopperContext(user_id=8), 10) == []


def test_session_knn_source_votes_with_similar_sessions() -> None:
    log = build_log(events(LOG_ROWS))
    index = build_session_index(log, T0_US + 50 * SECOND)
    assert index.size == 3

    class Fixed:
        def current(self):
            return index

    source = SessionKNNSource(Fixed())
    # s1 {1, 2} (cosine 1/sqrt(2)) and s2 {1, 3, 2} (1/sqrt(3)) hold 1: 2 gets both votes, 3 one
    assert source.propose(ShopperContext(user_id=7, recent_products=[1, 5], session_products=1), 10) == [2, 3]
    assert source.propose(ShopperContext(user_id=7, recent_products=[4], session_products=1), 10) == []


def test_session_index_file_round_trip(tmp_path: Path) -> None:
    log = build_log(events(LOG_ROWS))
    index = build_session_index(log, T0_US + 200 * SECOND)
    loaded = load_session_index(index.save(tmp_path / "index.parquet"))
    assert loaded.as_of == index.as_of and loaded.neighbours([1], 10) == index.neighbours([1], 10) == [2, 5, 3]
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="not a session index"):
        load_session_index(tmp_path / "bad.parquet")


def test_blend_respects_quotas_then_fills_in_source_order() -> None:
    proposals = [("a", [1, 2, 3]), ("b", [2, 4, 5]), ("c", [6, 7])]
    assert list(blend(proposals, 4, quotas={"a": 1, "b": 1, "c": 1})) == [1, 2, 6, 3]
    assert blend(proposals, 3, quotas={"a": 1, "b": 1, "c": 1})[2] == ["b"]  # past a's quota: b added it
    assert blend([("a", [1, 2]), ("b", [1, 4])], 3) == {1: ["a", "b"], 2: ["a"], 4: ["b"]}
    assert list(blend(proposals, 3, exclude={1})) == [2, 3, 4]  # no quotas: in order


def test_gather_candidates_takes_the_quotas_of_a_blend() -> None:
    class Fixed:
        def __init__(self, name: str, products: list[int]) -> None:
            self.name, self.products = name, products

        def propose(self, context: ShopperContext, limit: int) -> list[int]:
            return self.products[:limit]

    sources = [Fixed("a", [1, 2, 3]), Fixed("b", [4, 5])]
    context = ShopperContext(user_id=1)
    assert [c.product_id for c in gather_candidates(Blend(sources, {"a": 0.25, "b": 0.75}), context, 4)] == [1, 4, 5, 2]
    assert [c.product_id for c in gather_candidates(sources, context, 4)] == [1, 2, 3, 4]


def test_replay_never_sees_the_future_of_the_new_sources() -> None:
    # day 0: 1 and 2 viewed together; at day 1 00:00 exactly, 1 and 3 together; user 9 views 1 and buys 7
    rows = [(10, "view", 1, 10, 1, "a"), (11, "view", 2, 10, 1, "a"),
            (86_400, "view", 1, 10, 2, "b"), (86_400, "view", 3, 10, 2, "b"),
            (86_400 + 5, "view", 1, 10, 9, "c"), (86_400 + 6, "purchase", 7, 10, 9, "c")]
    log = build_log(events(rows))
    day1 = T0_US + DAY
    neighbours, sessions = SnapshotNeighbours(log), SnapshotSessions(log)
    # at day 1 00:00 the view built at that instant is not used (the one of day 0 knows nothing yet);
    # just after it, the view of day 1 knows day 0 only: the events at 00:00 come with day 2's view
    expected = {day1: ([], []), day1 + 1: ([2], [2]), day1 + DAY + 1: ([3, 2], [2, 3, 7])}
    for moment, (co_viewed, sknn) in expected.items():
        neighbours.at(moment)
        sessions.at(moment)
        assert neighbours.neighbours("co_viewed", [1])[0][0] == co_viewed
        assert sessions.current().as_of < moment and sessions.current().neighbours([1], 10) == sknn
    purchase = int(np.flatnonzero(log.kind == 3)[0])
    context = replay_context(log, int(log.user[purchase]), int(log.time[purchase]))
    assert context.recent_products == [1] and context.session_products == 1  # not the product bought
    found = propose_all(log, np.array([purchase]), 10, ReplaySources(log))
    assert found.targets == [7] and all(7 not in proposals for proposals in found.proposals[0])


def test_quota_search_picks_the_known_best_blend() -> None:
    # 2 candidates from c, a, b (asked in that order): a has the target first in 3 queries, b in 2,
    # c only second, in 1. The even split (c 1, a 1) finds 3 of 6; the best blend, a 1 and b 1, finds 5.
    names = ["c", "a", "b"]
    queries = ([[1, 2], [100, 3], [4, 5]],) * 3 + ([[6, 7], [8, 9], [100, 10]],) * 2 + ([[11, 100], [12], [13]],)
    lists = CandidateLists(names, np.arange(6), [100] * 6, [list(q) for q in queries], [set()] * 6)
    found = search_quotas(lists, limit=2, unit=1)
    assert found.even_recall == pytest.approx(3 / 6)
    assert found.quotas == {"c": 0, "a": 1, "b": 1}
    assert found.recall == pytest.approx(5 / 6) and blend_recall(lists, found.quotas, 2) == pytest.approx(5 / 6)
    assert found.shares == {"c": 0.0, "a": 0.5, "b": 0.5}
    shares = contributions(lists, found.quotas, 2)
    assert shares["a"]["added"] == pytest.approx(0.5) and shares["b"]["added"] == pytest.approx(1 / 3)
    assert shares["c"]["recall_alone"] == pytest.approx(1 / 6) and shares["c"]["added"] == 0.0
    assert shares["a"]["recall_without"] == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="divide"):
        search_quotas(lists, limit=2, unit=3)


def test_neighbours_reach_the_service_sources_through_the_online_store(tmp_path: Path) -> None:
    from freshcart import storage
    from freshcart.features.store import run_feast
    from freshcart.recommendation.neighbour_tables import build_neighbour_tables
    from freshcart.serving.candidates import default_sources
    from freshcart.serving.features import OnlineFeatureReader
    from freshcart.settings import load_settings
    from freshcart.training.data import FEATURE_SERVICES

    settings = load_settings(profile="local", data_dir=tmp_path / "data")
    table = events(LOG_ROWS)
    for day, rows in storage.split_by_date(table).items():
        storage.upsert_partition(settings.offline_events_dir, day, rows)
    done = run_feast(settings, "apply", capture=True)
    assert done.returncode == 0, done.stdout + done.stderr
    end = T0 + timedelta(days=1)
    report = build_neighbour_tables(settings, end)
    assert report.rows == 4 and report.online_rows == 4 and report.session_index.is_file()  # 4 has none

    reader = OnlineFeatureReader(settings, FEATURE_SERVICES)
    sources = {s.name: s for s in default_sources(index=None, reader=reader, settings=settings)}
    context = ShopperContext(user_id=7, recent_products=[1], session_products=1)
    assert sources["co_viewed"].propose(context, 10) == [2, 5, 3]  # s4 counts (as of day 1), the newest of 3, 5
    assert sources["co_bought"].propose(context, 10) == [2]
    assert sources["sknn"].propose(context, 10) == [2, 5, 3]  # s4 {1, 5} is closer than s2 {1, 3, 2}
