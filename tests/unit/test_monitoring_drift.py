"""Drift verdicts on simulated traffic: no alarm without drift, each drift kind caught within two windows.

Each scenario simulates a small shop with one of the simulator's drift knobs turned on,
trains XGBoost on the views before the onset, logs every view through the serving
package's prediction-log encoding into the offline store and judges hourly windows.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from freshcart.monitoring import drift, tables
from freshcart.monitoring.performance import Estimator, expected_auc, measured
from freshcart.monitoring.report import monitor_window
from freshcart.monitoring.scenario import DRIFT_KINDS, Scenario, build_scenario, serve_views
from freshcart.settings import load_settings

HOUR = timedelta(hours=1)


def _scenario(tmp_path_factory: pytest.TempPathFactory, kind: str) -> Scenario:
    settings = load_settings(data_dir=tmp_path_factory.mktemp(f"monitor-{kind}"), training_threads=1)
    return build_scenario(settings, kind)


def test_statistics_are_evidentlys() -> None:
    from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon
    from evidently.legacy.calculations.stattests.wasserstein_distance_norm import _wasserstein_distance_norm
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(3)
    ref, cur = rng.gamma(2.0, 1.0, 5_000), rng.gamma(2.3, 1.0, 800)
    prepared = drift.prepare({"x": ref}, ["x"])["x"]
    expected, _ = _wasserstein_distance_norm(pd.Series(ref), pd.Series(cur), ColumnType.Numerical, 0.1)
    assert drift.column_score(prepared, cur) == pytest.approx(expected, rel=1e-9)
    ids_ref, ids_cur = rng.integers(0, 50, 5_000), rng.integers(0, 60, 800)
    expected, _ = _jensenshannon(pd.Series(ids_ref), pd.Series(ids_cur), ColumnType.Categorical, 0.1)
    assert drift.jensenshannon_ids(ids_ref, ids_cur) == pytest.approx(expected, rel=1e-9)


def test_performance_estimate_matches_calibrated_scores() -> None:
    rng = np.random.default_rng(4)
    scores = rng.beta(1, 8, 40_000)
    labels = (rng.random(40_000) < scores).astype(int)
    real = measured(labels, scores)["auc"]
    assert expected_auc(scores, scores) == pytest.approx(real, abs=0.01)
    estimate = Estimator.fit(labels[:20_000], scores[:20_000]).estimate(scores[20_000:])
    assert estimate["auc"] == pytest.approx(measured(labels[20_000:], scores[20_000:])["auc"], abs=0.015)


def test_derived_columns_follow_the_reference_catalogue() -> None:
    reference = {"product_id": np.array([1, 1, 2, 3]), "price": np.log1p(np.array([10.0, 10.0, 20.0, 5.0]))}
    current = {"product_id": np.array([1, 2, 9]), "price": np.log1p(np.array([13.0, 20.0, 7.0]))}
    out = drift.derive(reference, current)
    assert list(out["product_unseen"]) == [0.0, 0.0, 1.0]
    assert out["price_vs_reference"][0] == pytest.approx(np.log1p(13.0) - np.log1p(10.0))
    assert out["price_vs_reference"][1] == pytest.approx(0.0) and np.isnan(out["price_vs_reference"][2])


def test_24_windows_without_drift_raise_no_alarm(tmp_path_factory: pytest.TempPathFactory) -> None:
    scenario = _scenario(tmp_path_factory, "none")
    settings, first = scenario.settings, scenario.onset - 12 * HOUR
    serve_views(settings, scenario.views, scenario.model, first, first + 24 * HOUR)
    reports = [monitor_window(settings, scenario.reference, first + i * HOUR, first + (i + 1) * HOUR, html=i == 0)
               for i in range(24)]
    judged = [r for r in reports if r.status == "judged"]
    assert len(judged) >= 16, [(r.start, r.status, r.rows) for r in reports]
    assert [r.start for r in judged if r.alarm] == [], [r.reasons for r in judged if r.alarm]
    windows = tables.read_table(settings, tables.WINDOWS)
    assert len(windows) == 24 and not windows["alarm"].any()
    columns = tables.read_table(settings, tables.COLUMNS)
    assert set(columns["column"]) >= {"price", "score", "product_unseen"}
    assert reports[0].report_path is not None and reports[0].report_path.stat().st_size > 10_000


@pytest.mark.parametrize("kind", sorted(DRIFT_KINDS))
def test_each_drift_is_detected_within_two_windows(tmp_path_factory: pytest.TempPathFactory, kind: str) -> None:
    scenario = _scenario(tmp_path_factory, kind)
    settings, onset = scenario.settings, scenario.onset
    serve_views(settings, scenario.views, scenario.model, onset - 2 * HOUR, onset + 2 * HOUR)
    before = [monitor_window(settings, scenario.reference, onset - i * HOUR, onset - (i - 1) * HOUR, html=False)
              for i in (2, 1)]
    after = [monitor_window(settings, scenario.reference, onset + i * HOUR, onset + (i + 1) * HOUR, html=False)
             for i in (0, 1)]
    assert not any(r.alarm for r in before), [r.reasons for r in before]
    assert any(r.alarm for r in after), [(r.status, r.rows, r.verdicts[:3]) for r in after]
    stored = tables.read_table(settings, tables.WINDOWS).set_index("window_start")
    alarmed = stored.loc[[r.start for r in after if r.alarm]]
    assert alarmed["reasons"].str.len().gt(0).all()
