"""The shopper bootstrap behind the intervals of the replay and propensity figures."""

from __future__ import annotations

import numpy as np
import pytest

from freshcart.recommendation.confidence import cluster_draws, interval, per_query_values, rank_intervals


def test_a_draw_takes_whole_shoppers():
    users = np.array([7, 7, 7, 3, 9, 9])
    for rows in cluster_draws(users, draws=200, seed=1):
        drawn = users[rows]
        # every shopper drawn brings all of their rows, as often as it was drawn
        for user, count in zip(*np.unique(drawn, return_counts=True)):
            assert count % int((users == user).sum()) == 0
        assert np.unique(drawn).shape[0] <= 3


def test_the_interval_holds_the_figure_and_narrows_with_more_shoppers():
    rng = np.random.default_rng(0)
    small_hits = rng.random(40) < 0.5
    large_hits = rng.random(4000) < 0.5
    small = interval(lambda rows: float(small_hits[rows].mean()), np.arange(40), draws=400)
    large = interval(lambda rows: float(large_hits[rows].mean()), np.arange(4000), draws=400)
    for figure in (small, large):
        assert figure.low <= figure.value <= figure.high
    assert large.high - large.low < (small.high - small.low) / 4
    assert 0.46 < large.low < 0.5 < large.high < 0.54


def test_one_shopper_with_many_rows_widens_the_interval():
    # 20 shoppers hit, one shopper misses 80 times: per-row, the share is tightly ~0.2; per shopper it is not
    hits = np.concatenate([np.ones(20), np.zeros(80)])
    users = np.concatenate([np.arange(20), np.full(80, 99)])
    clustered = interval(lambda rows: float(hits[rows].mean()), users, draws=400)
    independent = interval(lambda rows: float(hits[rows].mean()), np.arange(100), draws=400)
    assert clustered.high - clustered.low > 2 * (independent.high - independent.low)


def test_rank_metrics_per_query_average_to_the_replay_metrics():
    ranks = np.array([1, 2, 11, 150, 600])
    values = per_query_values(ranks)
    assert values["hr@10"].tolist() == [1, 1, 0, 0, 0]
    assert values["ndcg@10"][:2].tolist() == pytest.approx([1.0, 1 / np.log2(3)])
    assert values["recall@100"].tolist() == [1, 1, 1, 0, 0]
    assert values["recall@500"].tolist() == [1, 1, 1, 1, 0]
    figures = rank_intervals(ranks, np.arange(5), draws=100)
    assert figures["mrr"].value == pytest.approx(np.mean(1 / ranks))


def test_undefined_draws_are_left_out_and_all_undefined_is_an_error():
    labels = np.array([0, 1, 0, 1])

    def needs_both(rows):
        if labels[rows].min() == labels[rows].max():
            raise ValueError("one class")
        return float(labels[rows].mean())

    assert 0 < interval(needs_both, np.arange(4), draws=200).low
    with pytest.raises(ValueError, match="too small"):
        interval(lambda rows: float("nan"), np.arange(4), draws=50)
    with pytest.raises(ValueError, match="level"):
        interval(needs_both, np.arange(4), level=95)
