"""Calibrate the funnel and the traffic volume on a pilot sample of sessions.

The cart intercept is solved so that carts per view hit ``CART_PER_VIEW`` on a
pilot of sessions drawn like real ones (with their own random stream); the same
pilot gives the expected events per session, from which each day's session
count follows ``events_per_day``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from freshcart.simulator.config import SimulationConfig
from freshcart.simulator.funnel import (
    PURCHASE_GIVEN_CART,
    REMOVE_GIVEN_ABANDONED_CART,
    WISHLIST_PER_CART_CHANCE,
    cart_logit,
    sigmoid,
)
from freshcart.simulator.traffic import (
    BOT_VIEWS_EXTRA,
    BOT_VIEWS_MIN,
    HOUR_CDF,
    HOUR_US,
    DriftKnobs,
    sample_episodes,
    sample_sessions,
)
from freshcart.simulator.world import World

CART_PER_VIEW = 0.0245
PILOT_SESSIONS = 20_000
PILOT_STREAM = 2
NO_DRIFT = DriftKnobs(drift_from_us=2**62, bot_share=0.0, category_shift=0.0, new_products=False)


@dataclass(frozen=True)
class Calibration:
    """Constants derived from the world before any traffic is generated."""

    intercept: float
    events_per_session: float
    events_per_bot_session: float


def calibrate(world: World, config: SimulationConfig) -> Calibration:
    """Solve the cart intercept and measure events per session on a pilot sample."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, PILOT_STREAM]))
    sessions = sample_sessions(world, rng, 0, PILOT_SESSIONS, NO_DRIFT)
    episodes = sample_episodes(world, rng, sessions, NO_DRIFT)
    logit = cart_logit(
        world,
        sessions.user[episodes.session],
        episodes.product,
        np.ones(episodes.product.shape[0]),
        sessions.intent[episodes.session],
        episodes.interest,
    )
    target = CART_PER_VIEW * float(episodes.views.sum())
    low, high = -30.0, 10.0
    for _ in range(60):
        middle = (low + high) / 2
        if sigmoid(logit + middle).sum() > target:
            high = middle
        else:
            low = middle
    intercept = (low + high) / 2
    p_cart = sigmoid(logit + intercept)
    funnel = p_cart * (1 + PURCHASE_GIVEN_CART + (1 - PURCHASE_GIVEN_CART) * REMOVE_GIVEN_ABANDONED_CART)
    funnel += (1 - p_cart) * WISHLIST_PER_CART_CHANCE * p_cart
    return Calibration(
        intercept=intercept,
        events_per_session=float(episodes.views.sum() + funnel.sum()) / PILOT_SESSIONS,
        events_per_bot_session=float(BOT_VIEWS_MIN + BOT_VIEWS_EXTRA),
    )


def drifted_share(day_start_us: int, drift_from_us: int) -> float:
    """Expected share of a day's sessions that start at or after ``drift_from_us``."""
    hour_start = day_start_us + np.arange(24) * HOUR_US
    after = np.clip((hour_start + HOUR_US - drift_from_us) / HOUR_US, 0.0, 1.0)
    weights = np.diff(np.concatenate([[0.0], HOUR_CDF]))
    return float(np.sum(weights * after))


def sessions_for_day(
    config: SimulationConfig, calibration: Calibration, day_start_us: int, drift_from_us: int
) -> int:
    """Sessions to start on a day so that its expected event count is ``events_per_day``."""
    bots = config.drift.bot_share * drifted_share(day_start_us, drift_from_us)
    per_session = (1 - bots) * calibration.events_per_session + bots * calibration.events_per_bot_session
    return max(1, int(round(config.events_per_day / per_session)))
