"""The view -> cart -> purchase funnel of an episode and the times of its funnel events.

``p_cart`` is a logistic function of things a feature pipeline can mostly
observe (the user's buyer propensity, their affinity to the category, the
distance of the price from their usual price level, the product's appeal, the
session's intent) plus the episode's latent interest, which also drives how
often the product is re-viewed. A cart becomes a purchase with probability
``PURCHASE_GIVEN_CART``, so every view of the episode has the exact truth
``p_cart * PURCHASE_GIVEN_CART``: the purchase, if any, comes after the last
view and no later than the first view plus the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from freshcart.simulator.traffic import SECOND_US
from freshcart.simulator.world import World

BUYER_WEIGHT = 1.0
AFFINITY_WEIGHT = 0.6
AFFINITY_FLOOR = 0.03  # weight of a category the user does not prefer
APPEAL_WEIGHT = 0.6
PRICE_WEIGHT = 1.2
PURCHASE_GIVEN_CART = 0.52
REMOVE_GIVEN_ABANDONED_CART = 0.3
WISHLIST_PER_CART_CHANCE = 0.15  # wishlist chance of a non-carted episode = this * p_cart
IN_SESSION_PURCHASE = 0.65  # the rest are bought on a return visit later
RETURN_MIN_DELAY_US = 40 * 60 * SECOND_US
RETURN_MAX_DELAY_US = 30 * 3600 * SECOND_US  # a return visit comes the same or the next day
CART_GAP_S, PURCHASE_GAP_S, REMOVE_GAP_S, WISHLIST_GAP_S = 20.0, 180.0, 90.0, 15.0
MAX_FUNNEL_GAP_S = 900.0


@dataclass(frozen=True)
class FunnelEvents:
    """Funnel events of the carting/wishlisting episodes, one array per event kind."""

    cart_episode: np.ndarray
    cart_time: np.ndarray
    purchase_episode: np.ndarray
    purchase_time: np.ndarray
    purchase_on_return: np.ndarray
    remove_episode: np.ndarray
    remove_time: np.ndarray
    wishlist_episode: np.ndarray
    wishlist_time: np.ndarray


def affinity(world: World, user: np.ndarray, category: np.ndarray) -> np.ndarray:
    """log of the user's preference weight for the category (floored for non-preferred ones)."""
    matches = world.user_pref_categories[user] == category[:, None]
    weight = (world.user_pref_weights[user] * matches).sum(axis=1)
    return np.log(weight + AFFINITY_FLOOR)


def cart_logit(
    world: World,
    user: np.ndarray,
    product: np.ndarray,
    price_factor: np.ndarray,
    intent: np.ndarray,
    interest: np.ndarray,
) -> np.ndarray:
    """The cart log-odds of human episodes, without the calibrated intercept."""
    price_distance = np.abs(
        world.product_log_offset[product] + np.log(price_factor) - world.user_price_level[user]
    )
    return (
        BUYER_WEIGHT * world.user_buyer[user]
        + AFFINITY_WEIGHT * affinity(world, user, world.product_category[product])
        + APPEAL_WEIGHT * world.product_appeal[product]
        - PRICE_WEIGHT * price_distance
        + intent
        + interest
    )


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))


def _gap_us(rng: np.random.Generator, mean_s: float, n: int) -> np.ndarray:
    """Positive exponential gaps (at least one second, capped below the session gap)."""
    seconds = np.minimum(1.0 + rng.exponential(mean_s, n), MAX_FUNNEL_GAP_S)
    return (seconds * SECOND_US).astype(np.int64)


def purchase_possible(first_view: np.ndarray, last_view: np.ndarray, horizon_us: int) -> np.ndarray:
    """Whether an in-session purchase would still fall within the horizon of the first view.

    Only an episode whose views span nearly the whole horizon fails this; it can
    be carted but never bought, and its truth is 0.
    """
    return last_view + int(2 * MAX_FUNNEL_GAP_S * SECOND_US) < first_view + horizon_us


def draw_funnel(
    rng: np.random.Generator,
    p_cart: np.ndarray,
    first_view: np.ndarray,
    last_view: np.ndarray,
    horizon_us: int,
) -> FunnelEvents:
    """Outcomes and times of the funnel events of each episode (indices into the episode arrays).

    In-session events follow the episode's last view by at most two capped gaps,
    so a session never goes quiet for 30 minutes; a return purchase falls between
    40 minutes and 30 hours after the last view, and never after the first view
    plus the horizon.
    """
    n = int(p_cart.shape[0])
    carted = rng.random(n) < p_cart
    bought = carted & (rng.random(n) < PURCHASE_GIVEN_CART)
    bought &= purchase_possible(first_view, last_view, horizon_us)
    removed = carted & ~bought & (rng.random(n) < REMOVE_GIVEN_ABANDONED_CART)
    wished = ~carted & (rng.random(n) < WISHLIST_PER_CART_CHANCE * p_cart)
    on_return_draw, return_position = rng.random(n), rng.random(n)

    cart_episode = np.flatnonzero(carted)
    cart_time = last_view[cart_episode] + _gap_us(rng, CART_GAP_S, cart_episode.shape[0])
    cart_time_of = np.zeros(n, dtype=np.int64)
    cart_time_of[cart_episode] = cart_time

    purchase_episode = np.flatnonzero(bought)
    latest = np.minimum(
        first_view[purchase_episode] + horizon_us - SECOND_US,
        last_view[purchase_episode] + RETURN_MAX_DELAY_US,
    )
    earliest = last_view[purchase_episode] + RETURN_MIN_DELAY_US
    on_return = (on_return_draw[purchase_episode] >= IN_SESSION_PURCHASE) & (latest > earliest)
    n_bought = purchase_episode.shape[0]
    in_session_time = cart_time_of[purchase_episode] + _gap_us(rng, PURCHASE_GAP_S, n_bought)
    return_time = earliest + (return_position[purchase_episode] * (latest - earliest)).astype(np.int64)

    remove_episode = np.flatnonzero(removed)
    wishlist_episode = np.flatnonzero(wished)
    return FunnelEvents(
        cart_episode=cart_episode,
        cart_time=cart_time,
        purchase_episode=purchase_episode,
        purchase_time=np.where(on_return, return_time, in_session_time),
        purchase_on_return=on_return,
        remove_episode=remove_episode,
        remove_time=cart_time_of[remove_episode] + _gap_us(rng, REMOVE_GAP_S, remove_episode.shape[0]),
        wishlist_episode=wishlist_episode,
        wishlist_time=(
            last_view[wishlist_episode] + _gap_us(rng, WISHLIST_GAP_S, wishlist_episode.shape[0])
        ),
    )
