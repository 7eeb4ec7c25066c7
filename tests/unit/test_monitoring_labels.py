"""Feedback labels from a hand-built prediction log and events: exact labels, open windows, hit rates."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from freshcart.monitoring.labels import hit_rates, label_predictions, label_window, read_labels, served_version
from freshcart.settings import load_settings

T0 = datetime(2025, 3, 1, 10, tzinfo=timezone.utc)
H = timedelta(hours=24)


def _log() -> pd.DataFrame:
    rows = [
        # request, position, at, endpoint, user, product, score
        ("a", 0, T0, "predict", 1, 100, 0.9),                       # bought 2 h later -> 1
        ("a", 1, T0, "predict", 1, 101, 0.2),                       # bought 25 h later -> 0 (past horizon)
        ("b", 0, T0 + timedelta(minutes=5), "predict", 2, 100, 0.5),  # user 1 bought it, not user 2 -> 0
        ("c", 0, T0 + timedelta(minutes=10), "predict", 3, 300, 0.4),  # bought at the same instant -> 0
        ("d", 0, T0 + timedelta(minutes=20), "predict", 4, 400, 0.6),  # bought before and exactly at t+H -> 1
        ("r", 0, T0, "recommend", 5, 500, 0.8),
        ("r", 1, T0, "recommend", 5, 501, 0.7),
        ("r", 2, T0, "recommend", 5, 502, 0.1),                     # bought, but ranked 3rd of k=2 served
        ("s", 0, T0, "recommend", 6, 600, 0.3),
    ]
    return pd.DataFrame(rows, columns=["request_id", "position", "requested_at", "endpoint", "user_id", "product_id",
                                       "score"])


def _purchases() -> pd.DataFrame:
    rows = [
        (1, 100, T0 + timedelta(hours=2)),
        (1, 101, T0 + timedelta(hours=25)),
        (3, 300, T0 + timedelta(minutes=10)),
        (4, 400, T0 - timedelta(hours=1)),
        (4, 400, T0 + timedelta(minutes=20) + H),
        (5, 501, T0 + timedelta(hours=3)),
        (5, 502, T0 + timedelta(hours=3)),
    ]
    return pd.DataFrame(rows, columns=["user_id", "product_id", "event_time"])


def test_labels_are_exact_in_the_half_open_horizon() -> None:
    labelled = label_predictions(_log(), _purchases(), H)
    assert list(labelled["request_id"]) == list(_log()["request_id"])  # input order kept
    assert list(labelled["label"]) == [1, 0, 0, 0, 1, 0, 1, 1, 0]
    assert labelled.loc[0, "bought_at"] == T0 + timedelta(hours=2)
    assert pd.isna(labelled.loc[1, "bought_at"])
    assert labelled.loc[4, "bought_at"] == T0 + timedelta(minutes=20) + H


def test_hit_rate_counts_only_the_served_top_k() -> None:
    labelled = label_predictions(_log(), _purchases(), H)
    rates = hit_rates(labelled, k=2)
    assert rates["served"] == 3  # r: 500, 501; s: 600
    assert rates["hit_rate"] == pytest.approx(1 / 3)  # 501 bought; 502 was not served
    assert rates["request_hit_rate"] == pytest.approx(1 / 2)


def test_open_window_stays_unlabelled_and_a_closed_one_is_idempotent(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    start, end = T0, T0 + timedelta(hours=1)
    still_open = label_window(settings, _log(), _purchases(), start, end, as_of=end + H - timedelta(seconds=1))
    assert still_open.status == "open" and still_open.closes_at == end + H
    assert read_labels(settings, start) is None
    first = label_window(settings, _log(), _purchases(), start, end, as_of=end + H)
    assert first.status == "closed" and first.rows == 9 and first.positives == 2
    written = read_labels(settings, start)
    second = label_window(settings, _log(), _purchases(), start, end, as_of=end + H + timedelta(days=3))
    assert second.positives == first.positives
    pd.testing.assert_frame_equal(read_labels(settings, start), written)


def test_served_version_is_the_one_behind_most_predict_rows() -> None:
    log = pd.DataFrame({"endpoint": ["predict", "predict", "predict", "recommend", "recommend", "recommend"],
                        "model_version": ["3", "4", "3", "4", "4", "4"]})
    assert served_version(log) == "3"  # recommendation candidates do not count
    assert served_version(log.drop(columns="model_version")) is None
    assert served_version(log.head(0)) is None
