"""The feature logic: hand-computed values, batch/stream parity, feature tables."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from freshcart import storage
from freshcart.features import spec
from freshcart.features.batch import compute_feature_rows
from freshcart.features.parity import run_parity
from freshcart.features.stream import FeatureState
from freshcart.features.tables import FeatureBuildError, build_feature_tables, read_feature_table
from freshcart.schema import ARROW_SCHEMA
from freshcart.settings import load_settings

DAY0 = datetime(2026, 11, 2, tzinfo=timezone.utc)


def at(hh: int, mm: int, day: int = 0) -> datetime:
    return DAY0 + timedelta(days=day, hours=hh, minutes=mm)


def events_table(rows: list[tuple]) -> pa.Table:
    """Rows of (event_id, time, type, product, category, price, user, session)."""
    columns = {name: [] for name in ARROW_SCHEMA.names}
    for event_id, moment, kind, product, category, price, user, session in rows:
        values = dict(event_id=event_id, event_time=moment, event_type=kind, product_id=product,
                      category_id=category, category_code=None, brand=None, price=price,
                      user_id=user, user_session=session)
        for name in columns:
            columns[name].append(values[name])
    return pa.table(columns, schema=ARROW_SCHEMA)


SCENARIO = [
    ("e01", at(10, 9), "view", 10, 100, 10.0, 1, "s1"),
    ("e02", at(10, 10), "view", 10, 100, 10.0, 2, "t1"),
    ("e03", at(10, 20), "view", 11, 100, 20.0, 1, "s1"),
    ("e04", at(10, 30), "cart", 11, 100, 20.0, 1, "s1"),
    ("e05", at(10, 30), "purchase", 11, 100, 20.0, 1, "s1"),
    ("e06", at(11, 8), "view", 12, 200, 30.0, 1, "s1"),
    ("e07", at(12, 0), "view", 10, 100, 12.0, 1, "s2"),
    ("e08", at(9, 0, day=1), "view", 12, 200, None, 1, "s3"),
    ("e09", at(13, 0), "wishlist", 13, 200, 40.0, 2, "t2"),
]


def row_at(table: pa.Table, moment: datetime, **keys: int) -> dict:
    for row in table.to_pylist():
        if row[spec.TIMESTAMP] == moment and all(row[k] == v for k, v in keys.items()):
            return row
    raise AssertionError(f"no row at {moment} for {keys}")


@pytest.fixture(scope="module")
def scenario_rows() -> dict[str, pa.Table]:
    return compute_feature_rows(events_table(SCENARIO))


def test_user_activity_uses_tiled_windows(scenario_rows):
    row = row_at(scenario_rows["user_activity"], at(11, 8), user_id=1)
    # 1 h window at 11:08 = tiles from 10:10 on: the view at 10:09 is out, the one at 10:20 in
    assert (row["views_1h"], row["carts_1h"], row["purchases_1h"], row["spend_1h"]) == (2, 1, 1, 20.0)
    assert (row["views_24h"], row["views_7d"], row["purchases_30d"]) == (3, 3, 1)
    assert row["distinct_categories_7d"] == 2
    assert (row["distinct_products_7d"], row["wishlists_7d"]) == (3, 0)
    assert row["avg_purchase_price_30d"] == 20.0
    assert row["last_event_ts"] == at(11, 8).timestamp()
    assert row["top_categories_30d"] == []  # no full day before


def test_one_row_per_key_and_time_after_all_its_events(scenario_rows):
    stamps = [r[spec.TIMESTAMP] for r in scenario_rows["user_activity"].to_pylist() if r["user_id"] == 1]
    assert stamps == [at(10, 9), at(10, 20), at(10, 30), at(11, 8), at(12, 0), at(9, 0, day=1)]
    row = row_at(scenario_rows["user_activity"], at(10, 30), user_id=1)
    assert (row["carts_1h"], row["purchases_1h"]) == (1, 1)  # both events at 10:30


def test_top_categories_come_from_previous_days(scenario_rows):
    row = row_at(scenario_rows["user_activity"], at(9, 0, day=1), user_id=1)
    assert row["top_categories_30d"] == [100, 200]  # 3 views vs 1 the day before


def test_session_and_recent_items(scenario_rows):
    row = row_at(scenario_rows["user_session"], at(11, 8), user_id=1)
    assert (row["session_events"], row["session_products"], row["session_carts"]) == (5, 3, 1)
    assert row["recent_product_ids"] == [10, 11, 11, 11, 12]
    assert row["recent_category_ids"] == [100, 100, 100, 100, 200]
    later = row_at(scenario_rows["user_session"], at(12, 0), user_id=1)
    assert (later["session_events"], later["session_products"], later["session_carts"]) == (1, 1, 0)


def test_product_and_user_category(scenario_rows):
    p11 = row_at(scenario_rows["product_activity"], at(10, 30), product_id=11)
    assert (p11["views_1h"], p11["carts_1h"], p11["purchases_1h"]) == (1, 1, 1)
    assert p11["conversion_rate_7d"] == pytest.approx((1 + 1) / (1 + 100))
    p10 = row_at(scenario_rows["product_activity"], at(12, 0), product_id=10)
    assert (p10["views_24h"], p10["current_price"]) == (3, 12.0)
    p12 = row_at(scenario_rows["product_activity"], at(9, 0, day=1), product_id=12)
    assert p12["current_price"] == 30.0  # a null price keeps the last known one
    pair = row_at(scenario_rows["user_category"], at(12, 0), user_id=1, category_id=100)
    assert (pair["category_views_30d"], pair["category_view_share_30d"]) == (3, 0.75)
    assert pair["category_log_price_30d"] == pytest.approx((math.log(11) + math.log(21) + math.log(13)) / 3)
    later = row_at(scenario_rows["user_category"], at(9, 0, day=1), user_id=1, category_id=200)
    assert later["category_log_price_30d"] == pytest.approx(math.log(31))  # a view without a price is left out


def test_wishlists_and_distinct_products(scenario_rows):
    row = row_at(scenario_rows["user_activity"], at(13, 0), user_id=2)
    assert (row["views_7d"], row["wishlists_7d"], row["distinct_products_7d"]) == (1, 1, 2)
    pair = row_at(scenario_rows["user_category"], at(13, 0), user_id=2, category_id=200)
    assert pair["category_log_price_30d"] is None  # a wishlist is not a view


def test_stream_update_gives_the_hand_computed_row():
    state = FeatureState()
    for record in sorted(SCENARIO, key=lambda r: (r[1], r[0]))[:6]:
        rows = state.update(record[0], int(record[1].timestamp()) * 1_000_000, *record[2:])
    by_view = {row.view: row for row in rows}
    assert by_view["user_activity"].values["views_1h"] == 2
    assert by_view["user_session"].values["recent_product_ids"] == [10, 11, 11, 11, 12]
    assert by_view["user_category"].values["category_view_share_30d"] == pytest.approx(1 / 3)
    assert by_view["user_category"].values["category_log_price_30d"] == pytest.approx(math.log(31))
    assert by_view["user_activity"].values["distinct_products_7d"] == 3


def test_parity_on_the_scenario():
    report = run_parity(events_table(SCENARIO), [at(10, 30), at(11, 0), at(23, 0), at(10, 0, day=1)])
    assert report.ok, report.summary()


def test_parity_on_simulated_traffic(small_simulation):
    events = storage.read_events(small_simulation)
    first = events["event_time"].to_pylist()
    start, end = min(first), max(first)
    checkpoints = [start + (end - start) * k / 6 for k in range(1, 7)]
    report = run_parity(events, checkpoints)
    assert report.ok, report.summary()
    assert report.values > 50_000


def test_parity_on_the_rees46_sample(rees46_events):
    """Real data: second-resolution times (many ties) and interleaved sessions."""
    times = rees46_events["event_time"].to_pylist()
    start, end = min(times), max(times)
    report = run_parity(rees46_events, [start + (end - start) * k / 4 for k in range(1, 5)])
    assert report.ok, report.summary()


def test_parity_catches_a_wrong_stream(monkeypatch):
    import freshcart.features.stream as stream

    wide = spec.Window("1h", timedelta(hours=2), timedelta(minutes=5))  # a stream that counts 2 h as 1 h
    monkeypatch.setattr(stream, "_ACTIVITY_TILES", [("1h", wide.tile_seconds, wide.tiles)] + stream._ACTIVITY_TILES[1:])
    report = run_parity(events_table(SCENARIO), [at(11, 8)])
    assert not report.ok
    assert {m.feature for m in report.mismatches} >= {"views_1h"}


def test_feature_tables_are_rebuilt_identically(tmp_path, small_simulation):
    settings = load_settings(data_dir=tmp_path)
    days = storage.list_partitions(small_simulation)
    for day in days:
        storage.upsert_partition(settings.offline_events_dir, day, storage.read_partition(small_simulation, day))
    start, end = days[1], days[3]
    first = build_feature_tables(settings, start, end)
    tables = {name: read_feature_table(settings, name) for name in spec.VIEWS}
    again = build_feature_tables(settings, start, end)
    assert first.rows == again.rows and first.rows["user_activity"] > 0
    for name, table in tables.items():
        assert read_feature_table(settings, name).equals(table), name
        assert table.schema == spec.VIEWS[name].schema
        stamps = table[spec.TIMESTAMP].to_pylist()
        assert min(stamps).date() >= start and max(stamps).date() < end


def test_feature_tables_need_the_interval_ingested(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    with pytest.raises(FeatureBuildError, match=r"\[2026-11-02, 2026-11-04\).*2026-11-02, 2026-11-03"):
        build_feature_tables(settings, date(2026, 11, 2), date(2026, 11, 4))
    with pytest.raises(FeatureBuildError, match="empty interval"):
        build_feature_tables(settings, date(2026, 11, 4), date(2026, 11, 4))


MONTH = [
    ("m01", at(10, 0), "view", 10, 100, 10.0, 1, "a1"),
    ("m02", at(10, 1), "cart", 10, 100, 10.0, 1, "a1"),
    ("m03", at(10, 2), "wishlist", 11, 100, 15.0, 1, "a1"),
    ("m04", at(10, 0, day=10), "view", 12, 100, 20.0, 1, "b1"),
    ("m05", at(10, 1, day=10), "cart", 12, 100, 20.0, 1, "b1"),
    ("m06", at(10, 2, day=10), "purchase", 12, 100, 20.0, 1, "b1"),
    ("m07", at(11, 0, day=10), "view", 10, 100, 10.0, 2, "c1"),
    ("m08", at(9, 0, day=35), "view", 10, 100, 10.0, 1, "d1"),
]


@pytest.fixture(scope="module")
def month_rows() -> dict[str, pa.Table]:
    return compute_feature_rows(events_table(MONTH))


def test_thirty_day_user_counts_reach_past_the_week(month_rows):
    row = row_at(month_rows["user_activity"], at(10, 2, day=10), user_id=1)
    assert (row["views_30d"], row["carts_30d"], row["wishlists_30d"], row["distinct_products_30d"]) == (2, 2, 1, 3)
    assert (row["carts_7d"], row["wishlists_7d"], row["distinct_products_7d"]) == (1, 0, 1)  # day 0 is out
    late = row_at(month_rows["user_activity"], at(9, 0, day=35), user_id=1)  # 30 d from day 6: day 0 is out
    assert (late["views_30d"], late["carts_30d"], late["wishlists_30d"], late["distinct_products_30d"]) == (2, 1, 0, 2)


def test_thirty_day_product_and_user_category_counts(month_rows):
    p10 = row_at(month_rows["product_activity"], at(11, 0, day=10), product_id=10)
    assert (p10["views_30d"], p10["carts_30d"], p10["purchases_30d"], p10["views_7d"]) == (2, 1, 0, 1)
    p12 = row_at(month_rows["product_activity"], at(10, 2, day=10), product_id=12)
    assert (p12["views_30d"], p12["carts_30d"], p12["purchases_30d"]) == (1, 1, 1)
    late = row_at(month_rows["product_activity"], at(9, 0, day=35), product_id=10)
    assert (late["views_30d"], late["carts_30d"]) == (2, 0)
    pair = row_at(month_rows["user_category"], at(10, 2, day=10), user_id=1, category_id=100)
    assert (pair["category_views_30d"], pair["category_carts_30d"]) == (2, 2)
    pair = row_at(month_rows["user_category"], at(9, 0, day=35), user_id=1, category_id=100)
    assert (pair["category_views_30d"], pair["category_carts_30d"]) == (2, 1)


def test_stream_gives_the_hand_computed_thirty_day_rows():
    state = FeatureState()
    for record in MONTH:
        rows = {row.view: row.values for row in state.update(record[0], int(record[1].timestamp()) * 1_000_000,
                                                              *record[2:])}
    user, product, pair = rows["user_activity"], rows["product_activity"], rows["user_category"]
    assert (user["views_30d"], user["carts_30d"], user["wishlists_30d"], user["distinct_products_30d"]) == (2, 1, 0, 2)
    assert (product["views_30d"], product["carts_30d"], product["purchases_30d"]) == (2, 0, 0)
    assert (pair["category_views_30d"], pair["category_carts_30d"]) == (2, 1)
    report = run_parity(events_table(MONTH), [at(10, 2), at(23, 0, day=10), at(10, 0, day=35)])
    assert report.ok, report.summary()


def test_a_checkpointed_pair_from_before_cart_counts_restores_without_carts():
    import pickle

    from freshcart.features.stream import _Pair

    pair = _Pair(day_views={3: 2})
    del pair.__dict__["day_carts"]  # as a checkpoint written before carts were counted per pair
    restored = pickle.loads(pickle.dumps(pair))
    assert (restored.day_views, restored.day_carts) == ({3: 2}, {})
    current = _Pair(day_carts={3: 1})
    assert pickle.loads(pickle.dumps(current)).day_carts == {3: 1}
