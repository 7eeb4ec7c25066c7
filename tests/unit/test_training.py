"""Models on small simulated data: quality against the baseline and the oracle, behaviour, cold start, seeds.

The models are trained directly (no MLflow) on a small simulated shop; the
registry and promotion are tested in tests/integration/test_registry.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.compute as pc
import pytest

from freshcart import storage
from freshcart.features.tables import build_feature_tables
from freshcart.settings import Settings, load_settings
from freshcart.simulator import SimulationConfig, write_simulation
from freshcart.training.data import load_or_build, number_matrix, sequence_matrix, split_by_time, tabular_matrix
from freshcart.training.din_train import train_din
from freshcart.training.evaluate import EvaluationReport, PopularityBaseline, evaluate_scores
from freshcart.training.train import din_params, split_table, xgboost_params
from freshcart.training.xgb_model import train_xgboost

# One thread: on a small, shared machine OpenMP threads that wait on each other are slower than one.
SHOP = SimulationConfig(seed=5, users=1_500, products=600, days=6, events_per_day=30_000)


def build_small_shop(data_dir: Path, **overrides: object) -> tuple[Settings, pa.Table]:
    """A small simulated shop in ``data_dir``: offline events (truth beside them), feature tables, and the
    training set of the views of days 1-3 (labels need day 4)."""
    settings = load_settings(data_dir=data_dir, din_max_epochs=3, training_threads=1, **overrides)
    write_simulation(SHOP, settings.offline_events_dir)
    days = storage.list_partitions(settings.offline_events_dir)
    build_feature_tables(settings, days[0], days[5])
    table, _, _ = load_or_build(settings, days[1], days[4])
    return settings, table


@dataclass
class Trained:
    settings: Settings
    train: pa.Table
    validation: pa.Table
    holdout: pa.Table
    xgboost: object
    din: object
    reports: dict[str, EvaluationReport]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    settings, table = build_small_shop(tmp_path_factory.mktemp("shop"))
    split = split_by_time(table, settings.training_validation_share, settings.training_holdout_share)
    train, validation, holdout = split_table(table, split)
    x, names = tabular_matrix(train)
    vx, _ = tabular_matrix(validation)
    xgb = train_xgboost(x, train["label"].to_numpy(), vx, validation["label"].to_numpy(), names,
                        xgboost_params(settings))
    din, _ = train_din(train, validation, din_params(settings))
    baseline = PopularityBaseline.fit(train)
    reports = {name: evaluate_scores(settings, holdout, model.predict(holdout), baseline)
               for name, model in (("xgboost", xgb), ("din", din))}
    for name, report in reports.items():
        print(f"\n{name}: AUC {report.model['auc']:.4f}, popularity {report.baseline['auc']:.4f}, "
              f"oracle {report.oracle_auc:.4f}; {report.model}")
    return Trained(settings, train, validation, holdout, xgb, din, reports)


@pytest.mark.parametrize("model", ["xgboost", "din"])
def test_model_beats_popularity_and_lands_near_the_oracle(trained: Trained, model: str) -> None:
    report = trained.reports[model]
    assert report.oracle_auc is not None and report.oracle_auc > 0.75  # simulated data: the truth is known
    assert report.model["auc"] >= report.baseline["auc"] + 0.10
    assert report.model["pr_auc"] >= 1.5 * report.baseline["pr_auc"]
    assert report.model["log_loss"] < report.baseline["log_loss"]
    # The oracle knows each visit's hidden intent and each episode's hidden interest; on four days
    # of a small shop the models recover well over half of its lift over chance.
    assert report.oracle_auc - report.model["auc"] < 0.16
    assert (report.model["auc"] - 0.5) / (report.oracle_auc - 0.5) > 0.55
    assert report.model["calibration_error"] < 0.02


def _with(table: pa.Table, **columns: object) -> pa.Table:
    """``table`` with some columns replaced by one value each (lists for the sequences)."""
    for name, value in columns.items():
        column = table[name]
        array = pa.array([value] * table.num_rows, type=column.type)
        table = table.set_column(table.column_names.index(name), name, array)
    return table


@pytest.mark.parametrize("model", ["xgboost", "din"])
def test_a_user_who_keeps_viewing_a_category_scores_higher_on_its_products(trained: Trained, model: str) -> None:
    rows = trained.holdout.slice(0, 400)
    scorer = getattr(trained, model)
    categories = rows["category_id"].to_pylist()
    # The fan's recent items are all in the candidate's category; the stranger's all in another one.
    fan = rows.set_column(rows.column_names.index("user_session__recent_category_ids"),
                         "user_session__recent_category_ids",
                         pa.array([[c] * 20 for c in categories], pa.list_(pa.int64())))
    fan = _with(fan, user_category__category_views_30d=60, user_category__category_view_share_30d=0.9,
                propensity_on_demand__category_in_user_top3=1)
    stranger = rows.set_column(rows.column_names.index("user_session__recent_category_ids"),
                               "user_session__recent_category_ids",
                               pa.array([[c + 1] * 20 for c in categories], pa.list_(pa.int64())))
    stranger = _with(stranger, user_category__category_views_30d=0, user_category__category_view_share_30d=0.0,
                     user_category__category_log_price_30d=None, propensity_on_demand__category_in_user_top3=0)
    fan_scores, stranger_scores = scorer.predict(fan), scorer.predict(stranger)
    assert np.mean(fan_scores) > 1.5 * np.mean(stranger_scores)
    assert np.mean(fan_scores > stranger_scores) > 0.8


@pytest.mark.parametrize("model", ["xgboost", "din"])
def test_a_product_never_bought_scores_low(trained: Trained, model: str) -> None:
    train = trained.train
    products = train["product_id"].to_numpy()
    labels = train["label"].to_numpy()
    ids, views = np.unique(products, return_counts=True)
    bought = np.unique(products[labels == 1])
    never = ids[(views >= 40) & ~np.isin(ids, bought)]
    assert len(never) >= 5, "the shop should have products viewed often and never bought"
    holdout = trained.holdout
    scores = getattr(trained, model).predict(holdout)
    in_never = np.isin(holdout["product_id"].to_numpy(), never)
    in_bought = np.isin(holdout["product_id"].to_numpy(), bought)
    assert in_never.sum() >= 20
    assert np.mean(scores[in_never]) < 0.9 * np.mean(scores[in_bought])
    # the same views, the product's history rewritten: popular and never carted or bought, or often bought
    rows = holdout.slice(0, 400)
    zero = {f"product_activity__{m}_{w}": 0 for m in ("carts", "purchases") for w in ("1h", "24h", "7d")}
    never_bought = _with(rows, **zero, product_activity__views_7d=300, product_activity__views_24h=80,
                         product_activity__conversion_rate_7d=0.01 * 100 / 400)
    often = {f"product_activity__{m}_7d": n for m, n in (("carts", 30), ("purchases", 15))}
    often_bought = _with(rows, **often, product_activity__carts_24h=8, product_activity__purchases_24h=4,
                         product_activity__views_7d=300, product_activity__views_24h=80,
                         product_activity__conversion_rate_7d=(15 + 1) / 400)
    scorer = getattr(trained, model)
    low, high = scorer.predict(never_bought), scorer.predict(often_bought)
    assert np.mean(low < high) >= 0.9  # view by view, the never-bought history scores lower
    assert np.mean(low) < 0.8 * np.mean(high)


@pytest.mark.parametrize("model", ["xgboost", "din"])
def test_cold_start_users_and_products_get_finite_scores(trained: Trained, model: str) -> None:
    rows = trained.holdout.slice(0, 50)
    cold = _with(rows, product_id=10**12, category_id=10**12 + 1, user_id=10**12 + 2,
                 user_session__recent_product_ids=None, user_session__recent_category_ids=None,
                 user_activity__top_categories_30d=None)
    for name in rows.column_names:  # every feature of the unknown user and product missing
        if name.startswith(("user_activity__", "product_activity__", "user_category__", "user_session__",
                            "propensity_on_demand__")) and not pa.types.is_list(rows[name].type):
            cold = cold.set_column(cold.column_names.index(name), name, pa.nulls(rows.num_rows, rows[name].type))
    scores = getattr(trained, model).predict(cold)
    assert scores.shape == (50,)
    assert np.isfinite(scores).all() and ((scores > 0) & (scores < 1)).all()
    assert np.mean(scores) < 0.2


def test_same_seed_same_data_same_metrics(trained: Trained) -> None:
    settings = load_settings(data_dir=trained.settings.data_dir, din_max_epochs=1, training_threads=1)
    train, validation = trained.train.slice(0, 8_000), trained.validation.slice(0, 2_000)
    holdout = trained.holdout.slice(0, 4_000)
    baseline = PopularityBaseline.fit(train)
    metrics = []
    for _ in range(2):
        x, names = tabular_matrix(train)
        vx, _ = tabular_matrix(validation)
        xgb = train_xgboost(x, train["label"].to_numpy(), vx, validation["label"].to_numpy(), names,
                            xgboost_params(settings))
        din, _ = train_din(train, validation, din_params(settings))
        metrics.append([evaluate_scores(settings, holdout, m.predict(holdout), baseline).model for m in (xgb, din)])
    assert metrics[0] == metrics[1]
    other = load_settings(data_dir=trained.settings.data_dir, din_max_epochs=1, training_threads=1,
                          training_seed=7)
    din, _ = train_din(train, validation, din_params(other))
    changed = evaluate_scores(other, holdout, din.predict(holdout), baseline).model
    assert changed["auc"] != metrics[0][1]["auc"]  # the seed is what makes them equal


def test_split_is_by_time_and_keeps_both_classes(trained: Trained) -> None:
    last_train = pc.max(trained.train["event_time"]).as_py()
    assert last_train < pc.min(trained.validation["event_time"]).as_py()
    assert pc.max(trained.validation["event_time"]).as_py() < pc.min(trained.holdout["event_time"]).as_py()
    total = trained.train.num_rows + trained.validation.num_rows + trained.holdout.num_rows
    assert trained.holdout.num_rows == pytest.approx(0.15 * total, rel=0.05)


def test_derived_rates_per_product_and_price_gap() -> None:
    from freshcart.training.data import SEQUENCE_CATEGORIES, SEQUENCE_PRODUCTS, derived_features

    ids = pa.list_(pa.int64())
    table = pa.table({
        SEQUENCE_PRODUCTS: pa.array([[7, 8], None], ids), SEQUENCE_CATEGORIES: pa.array([[1, 1], None], ids),
        "product_id": [8, 9], "category_id": [1, 2], "price": [e - 1 for e in (np.e**3, 5.0)],
        "user_activity__views_7d": [12, None], "user_activity__carts_7d": [2, None],
        "user_activity__purchases_7d": [1, None], "user_activity__wishlists_7d": [1, None],
        "user_activity__distinct_products_7d": [3, None],
        "product_activity__views_7d": [9, 0], "product_activity__carts_7d": [1, 0],
        "user_category__category_log_price_30d": pa.array([2.5, None], pa.float64()),
        "user_activity__carts_30d": [4, None], "user_activity__wishlists_30d": [2, None],
        "user_activity__distinct_products_30d": [11, None],
        "product_activity__views_30d": [39, 0], "product_activity__carts_30d": [4, 0],
        "product_activity__purchases_30d": [2, 0],
        "user_category__category_views_30d": [9, None], "user_category__category_carts_30d": [3, None],
        "user_session__session_events": [6, None], "user_session__session_products": [4, None],
    })
    derived = derived_features(table)
    assert derived["user_views_per_product_7d"][0] == pytest.approx(4.0)  # 12 views of 3 products
    assert derived["user_carts_per_product_7d"][0] == pytest.approx(2 / (3 + 5))
    assert derived["user_interest_per_product_7d"][0] == pytest.approx(3 / (3 + 5))
    assert derived["price_gap_user_category"][0] == pytest.approx(0.5)  # log(1 + price) = 3 vs 2.5
    assert derived["abs_price_gap_user_category"][0] == pytest.approx(0.5)
    assert all(np.isnan(derived[name][1]) for name in ("user_carts_per_product_7d", "abs_price_gap_user_category"))
    # 30 days: 4 carts (and 2 wishlists) over 11 products + 5 pseudo-products; a product's 4 carts and
    # 2 purchases of 39 views + 1; the user's 3 carts of 9 views + 1 in the category
    assert derived["user_carts_per_product_30d"][0] == pytest.approx(4 / 16)
    assert derived["user_interest_per_product_30d"][0] == pytest.approx(6 / 16)
    assert derived["product_cart_rate_30d"][0] == pytest.approx(0.1)
    assert derived["product_purchase_rate_30d"][0] == pytest.approx(0.05)
    assert derived["user_category_cart_rate_30d"][0] == pytest.approx(0.3)
    assert derived["session_views_per_product"][0] == pytest.approx(1.5)  # 6 events of 4 products
    assert derived["product_cart_rate_30d"][1] == 0.0 and np.isnan(derived["user_category_cart_rate_30d"][1])


def test_a_training_set_from_older_features_is_built_again(trained: Trained) -> None:
    days = storage.list_partitions(trained.settings.offline_events_dir)
    table, path, built = load_or_build(trained.settings, days[1], days[4])
    assert not built  # the fixture built it: read back as it is
    pq.write_table(table.drop_columns(["user_activity__distinct_products_7d"]), path)  # as an older FreshCart wrote it
    again, _, built = load_or_build(trained.settings, days[1], days[4])
    assert built and "user_activity__distinct_products_7d" in again.column_names
    assert again.num_rows == table.num_rows


def test_each_epoch_is_reported_and_the_model_loads_back(trained: Trained, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from freshcart.training.din_model import DINModel

    settings = load_settings(data_dir=trained.settings.data_dir, din_max_epochs=4, din_patience=1, training_threads=1)
    train, validation = trained.train.slice(0, 6_000), trained.validation.slice(0, 1_500)
    reports = []
    with caplog.at_level("INFO", logger="freshcart.training.din_train"):
        din, history = train_din(train, validation, din_params(settings), on_epoch=reports.append)
    assert [r.validation_loss for r in reports] == history.validation_loss
    assert [r.epoch for r in reports] == list(range(1, len(reports) + 1))
    best = 1 + min(range(len(reports)), key=lambda i: history.validation_loss[i])
    assert reports[-1].best_epoch == history.best_epoch == best
    assert reports[-1].stopping == (len(reports) < 4)  # early stopping is the only way to end before the cap
    assert all(r.rows_per_second > 0 for r in reports) and "validation loss" in reports[0].line()
    assert [m for m in caplog.messages if m.startswith("attention model epoch")] == \
        [f"attention model {r.line()}" for r in reports]
    folder = din.save(tmp_path / "din")
    again = DINModel.load(folder, "cpu")
    np.testing.assert_allclose(again.predict(trained.holdout.slice(0, 500)), din.predict(trained.holdout.slice(0, 500)))


def test_the_booster_loads_back_and_refuses_other_columns(trained: Trained, tmp_path: Path) -> None:
    from freshcart.training.xgb_model import XGBoostModel, check_columns

    model = trained.xgboost
    again = XGBoostModel.load(model.save(tmp_path / "xgb"))
    assert again.best_iteration == model.best_iteration and again.feature_names == model.feature_names
    rows = trained.holdout.slice(0, 300)
    np.testing.assert_array_equal(again.predict(rows), model.predict(rows))
    names = model.feature_names
    check_columns("model", names, list(names))
    with pytest.raises(ValueError, match=f"missing: {names[-1]}; new: extra; or in another order.*the model again"):
        check_columns("model", names, [*names[:-1], "extra"])
    with pytest.raises(ValueError, match="missing: none; new: none; or in another order"):
        check_columns("model", names, names[::-1])


def test_number_matrix_is_float32_with_nan_for_null_over_chunks_and_any_number_type() -> None:
    first = pa.table({"a": pa.array([1, None, 3], pa.int64()), "b": pa.array([0.5, 1.5, None]),
                      "c": pa.array([True, False, None])})  # not a number type: cast like float_column does
    table = pa.concat_tables([first, first.slice(0, 0), first.slice(1, 2)])
    matrix = number_matrix(table, ["b", "a", "c"])
    nan = np.nan
    expected = np.array([[0.5, 1, 1], [1.5, nan, 0], [nan, 3, nan], [1.5, nan, 0], [nan, 3, nan]], dtype=np.float32)
    assert matrix.dtype == np.float32 and np.array_equal(matrix, expected, equal_nan=True)
    assert number_matrix(table.slice(0, 0), ["a", "b"]).shape == (0, 2)


def test_sequence_matrix_keeps_the_newest_ids_right_aligned_with_null_lists_and_ids() -> None:
    lists = pa.array([[1, 2, 3], None, [], [4, None]], pa.list_(pa.int64()))
    assert sequence_matrix(lists, 2).tolist() == [[2, 3], [0, 0], [0, 0], [4, 0]]
    assert sequence_matrix(pa.array([[5], [6, 7]], pa.list_(pa.int64())), 3).tolist() == [[0, 0, 5], [0, 6, 7]]
