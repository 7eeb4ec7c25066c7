"""Training sets: labels, point-in-time joins that never leak, the as-of join itself."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from freshcart import storage
from freshcart.features import spec
from freshcart.features.tables import FeatureBuildError, build_feature_tables
from freshcart.features.training_set import asof_indices, build_training_set, feature_columns
from freshcart.settings import load_settings
from tests.unit.test_features import SCENARIO, at, events_table

# A view at the very time of a purchase of the same product (e05 and e05b share 10:30).
LEAK_SCENARIO = SCENARIO + [("e05b", at(10, 30), "view", 11, 100, 20.0, 1, "s1")]


@pytest.fixture
def scenario_settings(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    for day, rows in storage.split_by_date(events_table(LEAK_SCENARIO)).items():
        storage.upsert_partition(settings.offline_events_dir, day, rows)
    build_feature_tables(settings, date(2026, 11, 2), date(2026, 11, 4))
    return settings


def examples_by_id(settings) -> dict[str, dict]:
    table, _ = build_training_set(settings, date(2026, 11, 2), date(2026, 11, 3))
    return {row["event_id"]: row for row in table.to_pylist()}


def test_labels_look_only_ahead_within_the_horizon(scenario_settings):
    rows = examples_by_id(scenario_settings)
    assert set(rows) == {"e01", "e02", "e03", "e05b", "e06", "e07"}  # the views of day 0
    assert rows["e03"]["label"] == 1  # p11 bought 10 minutes later
    assert rows["e05b"]["label"] == 0  # the purchase is at the same time, not after
    assert rows["e01"]["label"] == 0 and rows["e07"]["label"] == 0


def test_a_purchase_never_shows_in_the_features_of_a_view_at_or_before_it(scenario_settings):
    rows = examples_by_id(scenario_settings)
    same_time = rows["e05b"]
    assert same_time["user_activity__purchases_1h"] == 0
    assert same_time["user_activity__carts_1h"] == 0
    assert same_time["product_activity__purchases_1h"] == 0
    assert same_time["user_session__recent_product_ids"] == [10, 11]
    assert same_time["user_activity__last_event_ts"] == at(10, 20).timestamp()
    after = rows["e06"]  # 11:08: the 10:30 purchase is in the past now
    assert after["user_activity__purchases_1h"] == 1
    assert after["propensity_on_demand__price_vs_user_avg"] == pytest.approx(30.0 / 20.0)
    assert after["propensity_on_demand__seconds_since_last_event"] == pytest.approx(38 * 60)
    first = rows["e01"]  # nothing before the user's first event
    assert first["user_activity__views_1h"] is None
    assert first["propensity_on_demand__category_in_user_top3"] == 0


def test_every_feature_is_strictly_before_its_view(tmp_path, small_simulation):
    settings = load_settings(data_dir=tmp_path)
    days = storage.list_partitions(small_simulation)
    for day in days:
        storage.upsert_partition(settings.offline_events_dir, day, storage.read_partition(small_simulation, day))
    build_feature_tables(settings, days[0], days[-1])
    table, report = build_training_set(settings, days[1], days[-2])
    assert report.examples == table.num_rows > 1_000
    assert set(feature_columns()) <= set(table.column_names)
    last_seen = table["user_activity__last_event_ts"].to_numpy(zero_copy_only=False)
    request = table["request_ts"].to_numpy()
    known = ~np.isnan(last_seen.astype(float))
    assert known.mean() > 0.9
    assert (last_seen[known] < request[known]).all()
    assert 0 < report.positives < report.examples


def test_labels_need_the_horizon_ingested(scenario_settings):
    with pytest.raises(FeatureBuildError, match=r"\[2026-11-03, 2026-11-04\).*missing 2026-11-04"):
        build_training_set(scenario_settings, date(2026, 11, 3), date(2026, 11, 4))


def test_asof_join_matches_brute_force():
    rng = np.random.default_rng(7)
    row_keys, row_us = rng.integers(0, 30, 2_000), rng.integers(0, 10_000, 2_000)
    query_keys, query_us = rng.integers(0, 35, 500), rng.integers(0, 10_000, 500)
    ttl = 2_000
    got = asof_indices([row_keys], row_us, [query_keys], query_us, ttl)
    for q in range(500):
        ok = (row_keys == query_keys[q]) & (row_us <= query_us[q]) & (row_us >= query_us[q] - ttl)
        if not ok.any():
            assert got[q] == -1
        else:
            assert got[q] >= 0 and row_us[got[q]] == row_us[ok].max() and row_keys[got[q]] == query_keys[q]


def test_fast_join_equals_feast_historical_retrieval(scenario_settings, monkeypatch):
    """The fast path and Feast's get_historical_features give the same examples, value for value.

    Feast's file offline store (0.67) drops an entity row whose key has feature
    rows only after it (its TTL filter removes them all, and the row with them);
    the fast path keeps such an example with null features, as a left join does.
    Every row Feast returns must match, and the rows it drops must be exactly those.
    """
    from freshcart.features.store import apply

    monkeypatch.setenv("FRESHCART_DATA_DIR", str(scenario_settings.data_dir))
    applied = apply(scenario_settings)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    fast, _ = build_training_set(scenario_settings, date(2026, 11, 2), date(2026, 11, 3), method="fast")
    feast, _ = build_training_set(scenario_settings, date(2026, 11, 2), date(2026, 11, 3), method="feast")
    fast_rows = {row["event_id"]: row for row in fast.to_pylist()}
    feast_rows = feast.to_pylist()
    complete = {r["event_id"] for r in fast_rows.values()
                if all(r[f"{view}__{spec.VIEWS[view].feature_names[0]}"] is not None for view in spec.VIEWS)}
    assert {row["event_id"] for row in feast_rows} == complete == {"e05b", "e07"}
    for row in feast_rows:
        expected = fast_rows[row["event_id"]]
        for column in feature_columns() + ["label"]:
            got, want = row[column], expected[column]
            if isinstance(want, float) or isinstance(got, float):
                assert (got is None or got != got) == (want is None or want != want), (row["event_id"], column)
                if want is not None and want == want:
                    assert got == pytest.approx(want, rel=1e-12), (row["event_id"], column)
            else:
                got = list(got) if isinstance(want, list) and got is not None else got
                assert got == want, (row["event_id"], column, got, want)
