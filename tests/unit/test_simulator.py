"""Tests of the traffic simulator: determinism, schema, funnel, truth, drift, faults, output."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sklearn.metrics import roc_auc_score

from freshcart.schema import (
    ARROW_SCHEMA,
    EVENT_TYPES,
    Event,
    TimeBounds,
    event_from_json,
    validate_record,
)
from freshcart.simulator import (
    FAULT_REASONS,
    MAX_MESSAGE_BYTES,
    TRUTH_DIR,
    TRUTH_SCHEMA,
    DayBatch,
    DriftConfig,
    SimulationConfig,
    SimulationConfigError,
    build_world,
    inject_faults,
    iter_records,
    label_views,
    oracle_auc,
    oracle_auc_from_dir,
    roc_auc,
    simulate_days,
    write_simulation,
)
from freshcart.storage import read_events, read_partition

SMALL = SimulationConfig(
    seed=11, users=2_000, products=1_500, categories=25, days=3, events_per_day=30_000
)
FLOOR = datetime(2000, 1, 1, tzinfo=timezone.utc)
DEFAULT_2_DAYS = SimulationConfig(seed=5, days=2)
DRIFT_BASE = SimulationConfig(seed=3, users=3_000, products=2_000, days=4, events_per_day=40_000)
DRIFT_FROM = DRIFT_BASE.start + timedelta(days=2)
SESSION_GAP_US = 30 * 60 * 1_000_000


def _run(config: SimulationConfig) -> list[DayBatch]:
    return list(simulate_days(config))


def _events(batches: list[DayBatch]) -> pa.Table:
    return pa.concat_tables([b.events for b in batches])


def _truth(batches: list[DayBatch]) -> pa.Table:
    return pa.concat_tables([b.truth for b in batches])


def _drifted(**knobs: object) -> SimulationConfig:
    return replace(DRIFT_BASE, drift=DriftConfig(drift_from=DRIFT_FROM, **knobs))


def _us(column: pa.ChunkedArray) -> np.ndarray:
    return pc.cast(column, pa.int64()).to_numpy()


@pytest.fixture(scope="module")
def small() -> list[DayBatch]:
    return _run(SMALL)


@pytest.fixture(scope="module")
def default_run() -> list[DayBatch]:
    return _run(DEFAULT_2_DAYS)


@pytest.fixture(scope="module")
def drift_base() -> pa.Table:
    return _events(_run(DRIFT_BASE))


# --- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"users": 0}, "users"),
        ({"products": 10, "categories": 40}, "products"),
        ({"start": datetime(2025, 1, 6)}, "start"),
        ({"start": datetime(2025, 1, 6, 12, tzinfo=timezone.utc)}, "start"),
        ({"horizon_hours": 0}, "horizon_hours"),
        ({"events_per_day": "many"}, "events_per_day"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(SimulationConfigError, match=f"{field}="):
        SimulationConfig(seed=1, **kwargs)  # type: ignore[arg-type]


def test_bad_drift_names_the_field() -> None:
    with pytest.raises(SimulationConfigError, match="drift.category_shift=1.5"):
        DriftConfig(drift_from=DRIFT_FROM, category_shift=1.5)
    with pytest.raises(SimulationConfigError, match="drift.drift_from=None"):
        DriftConfig(bot_share=0.1)
    assert isinstance(SimulationConfigError("x"), ValueError)


# --- determinism, schema, layout -----------------------------------------------------


def test_same_seed_gives_identical_tables(small: list[DayBatch]) -> None:
    again = _run(SMALL)
    assert [b.day for b in again] == [b.day for b in small]
    for first, second in zip(small, again):
        assert first.events.equals(second.events)
        assert first.truth.equals(second.truth)


def test_other_seed_gives_other_data(small: list[DayBatch]) -> None:
    other = _run(replace(SMALL, seed=12))
    assert not other[0].events.equals(small[0].events)
    shared = set(small[0].events["event_id"].to_pylist()) & set(other[0].events["event_id"].to_pylist())
    assert len(shared) < 5


def test_schema_and_order_are_exact(small: list[DayBatch]) -> None:
    for batch in small:
        assert batch.events.schema.equals(ARROW_SCHEMA, check_metadata=True)
        assert batch.truth.schema.equals(TRUTH_SCHEMA)
        times = _us(batch.events["event_time"])
        ids = np.array(batch.events["event_id"].to_pylist())
        assert np.all(np.diff(times) >= 0)
        tied = np.flatnonzero(np.diff(times) == 0)
        assert np.all(ids[tied] < ids[tied + 1])
    events = _events(small)
    assert set(pc.unique(events["event_type"]).to_pylist()) == set(EVENT_TYPES)
    prices = events["price"].to_numpy()
    assert prices.min() >= 0 and np.allclose(prices, np.round(prices, 2))
    assert events["product_id"].to_numpy().min() >= 1_000_000
    assert events["user_id"].to_numpy().min() >= 500_000_000
    assert events["category_id"].to_numpy().min() > 2 * 10**18
    sessions = pc.unique(events["user_session"]).to_pylist()
    assert all(len(s) == 36 and s[14] == "4" and s.count("-") == 4 for s in sessions[:1000])
    null_codes = events["category_code"].null_count / events.num_rows
    null_brands = events["brand"].null_count / events.num_rows
    assert 0.05 < null_codes < 0.3 and 0.05 < null_brands < 0.3
    assert "." in pc.drop_null(events["category_code"])[0].as_py()


def test_event_ids_unique_across_the_run(small: list[DayBatch]) -> None:
    ids = _events(small)["event_id"]
    assert pc.count_distinct(ids).as_py() == len(ids)


def test_each_batch_holds_its_own_date_and_spills_are_carried(small: list[DayBatch]) -> None:
    assert [b.day for b in small[:3]] == [SMALL.start.date() + timedelta(days=i) for i in range(3)]
    for batch in small:
        days = pc.unique(pc.cast(batch.events["event_time"], pa.date32())).to_pylist()
        assert days == [batch.day]
    # Sessions running over midnight have events in two consecutive batches.
    first = set(small[0].events["user_session"].to_pylist())
    second = set(small[1].events["user_session"].to_pylist())
    assert len(first & second) > 0
    assert sum(b.events.num_rows for b in small[3:]) < 0.02 * SMALL.events_per_day


def test_sessions_have_no_internal_gap_of_30_minutes(small: list[DayBatch]) -> None:
    events = _events(small)
    _, session = np.unique(events["user_session"].to_numpy(zero_copy_only=False), return_inverse=True)
    times = _us(events["event_time"])
    order = np.lexsort((times, session))
    same = session[order][1:] == session[order][:-1]
    gaps = np.diff(times[order])[same]
    assert gaps.size > 0 and gaps.max() < SESSION_GAP_US


def test_sessions_follow_a_daily_rhythm(small: list[DayBatch]) -> None:
    events = _events(small)
    hours = pc.hour(events["event_time"]).to_numpy()
    night = np.isin(hours, [2, 3, 4, 5]).sum()
    evening = np.isin(hours, [18, 19, 20, 21]).sum()
    assert evening > 5 * night


def test_iter_records_yields_valid_canonical_records_in_time_order(small: list[DayBatch]) -> None:
    bounds = TimeBounds(floor=FLOOR, latest=datetime(2100, 1, 1, tzinfo=timezone.utc))
    records = list(iter_records(SMALL))
    assert len(records) == _events(small).num_rows
    assert records[0]["event_id"] == small[0].events["event_id"][0].as_py()
    sample = records[:: max(1, len(records) // 500)]
    assert all(isinstance(validate_record(r, bounds), Event) for r in sample)
    times = [validate_record(r, bounds).event_time for r in sample]  # type: ignore[union-attr]
    assert times == sorted(times)


# --- funnel, volume, truth -----------------------------------------------------------


def test_funnel_shares_match_real_funnels(default_run: list[DayBatch]) -> None:
    events = _events(default_run)
    counts = {row["values"]: row["counts"] for row in events["event_type"].value_counts().to_pylist()}
    share = {name: 100 * counts.get(name, 0) / events.num_rows for name in EVENT_TYPES}
    assert abs(share["view"] - 96.0) <= 1.5, share
    assert abs(share["cart"] - 2.3) <= 0.8, share
    assert abs(share["purchase"] - 1.2) <= 0.5, share
    assert 0.05 <= share["remove_from_cart"] <= 0.8, share
    assert 0.05 <= share["wishlist"] <= 0.8, share


def test_events_per_day_is_matched(default_run: list[DayBatch]) -> None:
    for batch in default_run[:2]:
        assert abs(batch.events.num_rows / DEFAULT_2_DAYS.events_per_day - 1) < 0.05


def test_popularity_is_heavy_tailed(default_run: list[DayBatch]) -> None:
    views = _events(default_run).filter(pc.equal(_events(default_run)["event_type"], "view"))
    counts = np.sort(views["product_id"].value_counts().field("counts").to_numpy())[::-1]
    top_share = counts[: len(counts) // 100].sum() / counts.sum()
    assert top_share > 0.05  # the top 1% of products draw far more than 1% of views


def test_truth_covers_exactly_the_views(small: list[DayBatch]) -> None:
    for batch in small:
        views = batch.events.filter(pc.equal(batch.events["event_type"], "view"))
        assert views["event_id"].to_pylist() == batch.truth["event_id"].to_pylist()
        proba = batch.truth["purchase_proba"].to_numpy()
        assert np.all((proba >= 0) & (proba <= 1)) and not np.isnan(proba).any()


def test_oracle_auc_is_informative(default_run: list[DayBatch]) -> None:
    events, truth = _events(default_run), _truth(default_run)
    auc = oracle_auc(events, truth, DEFAULT_2_DAYS.horizon_hours)
    assert 0.75 <= auc <= 0.92
    permuted = np.random.default_rng(0).permutation(truth["purchase_proba"].to_numpy())
    shuffled = truth.set_column(1, "purchase_proba", pa.array(permuted))
    assert oracle_auc(events, shuffled, DEFAULT_2_DAYS.horizon_hours) < auc - 0.2


def test_truth_is_exact_on_average(default_run: list[DayBatch]) -> None:
    labels = label_views(_events(default_run), DEFAULT_2_DAYS.horizon_hours)
    labels = labels.join(_truth(default_run), "event_id")
    proba, label = labels["purchase_proba"].to_numpy(), labels["label"].to_numpy()
    sigma = np.sqrt(np.sum(proba * (1 - proba))) / proba.shape[0]
    assert abs(proba.mean() - label.mean()) < 4 * sigma
    assert np.all(proba[label == 1] > 0)  # nothing is bought that the truth says cannot be
    high = proba > np.quantile(proba, 0.9)
    assert abs(label[high].mean() / proba[high].mean() - 1) < 0.1


def test_purchases_come_from_one_episode(small: list[DayBatch]) -> None:
    """All views of a (user, product) within H before a purchase share one truth value."""
    frame = _events(small).to_pandas()
    frame = frame.merge(_truth(small).to_pandas(), on="event_id", how="left")
    buys = frame[frame.event_type == "purchase"]
    views = frame[frame.event_type == "view"].merge(
        buys[["user_id", "product_id", "event_time"]],
        on=["user_id", "product_id"],
        suffixes=("", "_buy"),
    )
    window = views[(views.event_time < views.event_time_buy)
                   & (views.event_time >= views.event_time_buy - timedelta(hours=SMALL.horizon_hours))]
    per_purchase = window.groupby(["user_id", "product_id", "event_time_buy"]).purchase_proba
    assert len(buys) > 50 and per_purchase.nunique().max() == 1


def test_label_views_uses_the_horizon_boundaries() -> None:
    t0 = datetime(2025, 1, 6, tzinfo=timezone.utc)
    rows = [  # event_id, hours after t0, type, product, user
        ("a", 0, "view", 1, 10), ("b", 1, "view", 1, 10), ("c", 2, "view", 2, 10),
        ("d", 3, "view", 1, 11), ("h", 2, "view", 1, 12),
        ("e", 25, "purchase", 1, 10), ("f", 3, "purchase", 1, 11), ("g", 26, "purchase", 2, 10),
    ]
    table = pa.table(
        {
            "event_id": [r[0] for r in rows],
            "event_time": pa.array(
                [t0 + timedelta(hours=r[1]) for r in rows], pa.timestamp("us", tz="UTC")
            ),
            "event_type": [r[2] for r in rows],
            "product_id": [r[3] for r in rows],
            "user_id": [r[4] for r in rows],
        }
    )
    labels = label_views(table, 24).to_pydict()
    # a: bought 25 h later (out); b, c: bought exactly 24 h later (in); d: bought at the
    # same instant (not after); h: only other users bought the product.
    assert dict(zip(labels["event_id"], labels["label"])) == {"a": 0, "b": 1, "c": 1, "d": 0, "h": 0}


def test_roc_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, 2_000).astype(float)
    labels = (rng.random(2_000) < 0.1 + 0.1 * scores).astype(int)
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(scores, np.zeros(2_000))


# --- drift -------------------------------------------------------------------------


def test_price_inflation_moves_prices_after_drift_only(drift_base: pa.Table) -> None:
    drifted = _events(_run(_drifted(price_inflation=0.2)))
    cut = pa.scalar(DRIFT_FROM, pa.timestamp("us", tz="UTC"))
    for table in (drift_base, drifted):
        assert pc.any(pc.less(table["event_time"], cut)).as_py()
    base_views = drift_base.filter(pc.equal(drift_base["event_type"], "view"))
    drift_views = drifted.filter(pc.equal(drifted["event_type"], "view"))
    assert base_views["event_id"].equals(drift_views["event_id"])  # same views, other prices
    after = pc.greater_equal(base_views["event_time"], cut).to_numpy(zero_copy_only=False)
    ratio = drift_views["price"].to_numpy() / base_views["price"].to_numpy()
    assert np.allclose(ratio[~after], 1.0)
    assert ratio[after].mean() == pytest.approx(1.2, abs=0.01)


def test_category_shift_moves_the_category_mix(drift_base: pa.Table) -> None:
    def distance(table: pa.Table) -> float:
        views = table.filter(pc.equal(table["event_type"], "view")).to_pandas()
        before = views[views.event_time < DRIFT_FROM].category_id.value_counts(normalize=True)
        after = views[views.event_time >= DRIFT_FROM].category_id.value_counts(normalize=True)
        return 0.5 * before.sub(after, fill_value=0).abs().sum()

    shifted = distance(_events(_run(_drifted(category_shift=0.6))))
    assert distance(drift_base) < 0.08 and shifted > distance(drift_base) + 0.15


def test_new_products_appear_after_drift_and_take_share(drift_base: pa.Table) -> None:
    config = _drifted(new_products=40)
    new_ids = pa.array(build_world(config).new_product_ids)
    events = _events(_run(config))
    is_new = pc.is_in(events["product_id"], value_set=new_ids).to_numpy(zero_copy_only=False)
    times = events["event_time"].to_pandas()
    assert is_new.any() and (times[is_new] >= DRIFT_FROM).all()
    assert is_new[(times >= DRIFT_FROM).to_numpy()].mean() > 0.15
    assert not pc.any(pc.is_in(drift_base["product_id"], value_set=new_ids)).as_py()


def test_bots_view_densely_and_never_buy(drift_base: pa.Table) -> None:
    config = _drifted(bot_share=0.1)
    bot_ids = pa.array(build_world(config).bot_user_ids)
    frame = _events(_run(config)).to_pandas()
    bots = frame[frame.user_id.isin(bot_ids.to_pylist())]
    humans = frame[~frame.user_id.isin(bot_ids.to_pylist())]
    assert len(bots) > 0 and set(bots.event_type) == {"view"}
    assert (bots.event_time >= DRIFT_FROM).all()
    per_session = bots.groupby("user_session").size()
    human_median = humans.groupby("user_session").size().median()
    assert per_session.min() >= 20 and per_session.median() > 4 * human_median
    duration = bots.groupby("user_session").event_time.agg(lambda s: (s.max() - s.min()).total_seconds())
    assert (duration / per_session).median() < 10  # seconds per view: rapid
    after = humans[humans.event_time >= DRIFT_FROM + timedelta(days=1)].user_session.nunique()
    bot_sessions = bots[bots.event_time >= DRIFT_FROM + timedelta(days=1)].user_session.nunique()
    assert bot_sessions / (bot_sessions + after) == pytest.approx(0.1, abs=0.03)
    assert not pc.any(pc.is_in(drift_base["user_id"], value_set=bot_ids)).as_py()


# --- faults ------------------------------------------------------------------------


def test_fault_reasons_match_the_schema_validation(small: list[DayBatch]) -> None:
    records = small[0].events.slice(0, 4_000).to_pylist()
    bounds = TimeBounds.around(datetime.now(timezone.utc), FLOOR, 3600)
    messages = list(inject_faults(records, share=0.2, seed=7))
    seen = set()
    for message in messages:
        if message.reason is None:
            assert isinstance(event_from_json(message.value, bounds), Event)
        elif message.reason == "oversized":
            assert len(message.value) > MAX_MESSAGE_BYTES
        else:
            result = event_from_json(message.value, bounds)
            assert getattr(result, "reason", None) == message.reason, (message.reason, result)
        seen.add(message.reason)
    assert seen == set(FAULT_REASONS) | {None}
    valid = [m for m in messages if m.reason is None]
    parsed = [event_from_json(m.value, bounds) for m in valid]
    assert [getattr(e, "event_id", None) for e in parsed] == [r["event_id"] for r in records]
    assert all(m.key == str(r["user_id"]).encode() for m, r in zip(valid, records))
    from_events = list(inject_faults([validate_record(r, bounds) for r in records[:50]], share=0.0))
    assert [m.value for m in from_events] == [m.value for m in valid[:50]]


def test_fault_share_is_right_and_deterministic(small: list[DayBatch]) -> None:
    records = small[0].events.slice(0, 20_000).to_pylist()
    reasons = [r for r in FAULT_REASONS if r != "oversized"]
    messages = list(inject_faults(records, share=0.01, seed=3, reasons=reasons))
    faulty = sum(m.reason is not None for m in messages)
    expected = 0.01 * len(messages)
    assert abs(faulty - expected) < 4 * np.sqrt(expected)
    assert len(messages) - faulty == len(records)
    again = list(inject_faults(records, share=0.01, seed=3, reasons=reasons))
    assert again == messages
    clean = list(inject_faults(records[:100], share=0.0, seed=9))
    assert all(m.reason is None for m in clean) and len(clean) == 100
    with pytest.raises(ValueError, match="share"):
        list(inject_faults(records[:1], share=0.9))


# --- writing -----------------------------------------------------------------------


def _digest(root: Path) -> dict[str, str]:
    files = sorted(root.rglob("*.parquet"))
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_write_simulation_writes_partitions_and_summary(small: list[DayBatch], tmp_path: Path) -> None:
    advanced: list[int] = []
    summary = write_simulation(SMALL, tmp_path / "a", progress=advanced.append)
    events = _events(small)
    assert summary.total == events.num_rows
    assert advanced == [1] * SMALL.days  # one step per simulated day
    assert summary.days == [b.day for b in small]
    assert sum(summary.counts.values()) == summary.total
    purchases = pc.sum(pc.equal(events["event_type"], "purchase")).as_py()
    assert summary.counts["purchase"] == purchases
    assert summary.users == pc.count_distinct(events["user_id"]).as_py()
    assert summary.products == pc.count_distinct(events["product_id"]).as_py()
    assert summary.truth_dir == tmp_path / "a" / TRUTH_DIR and summary.seconds > 0
    on_disk = read_events(tmp_path / "a")
    on_disk = on_disk.sort_by([("event_time", "ascending"), ("event_id", "ascending")])
    assert on_disk.select(ARROW_SCHEMA.names).equals(events)
    truth = read_partition(summary.truth_dir, small[0].day, schema=TRUTH_SCHEMA)
    assert truth is not None and truth.equals(small[0].truth)
    assert oracle_auc_from_dir(tmp_path / "a", SMALL.horizon_hours) == pytest.approx(
        oracle_auc(events, _truth(small), SMALL.horizon_hours), abs=1e-12
    )
    # Same config: byte-identical files; writing again into the same folder changes nothing.
    write_simulation(SMALL, tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    before = read_events(tmp_path / "a").num_rows
    write_simulation(SMALL, tmp_path / "a")
    assert read_events(tmp_path / "a").num_rows == before
    truth_again = read_partition(summary.truth_dir, small[0].day, schema=TRUTH_SCHEMA)
    assert truth_again is not None and truth_again.equals(small[0].truth)
