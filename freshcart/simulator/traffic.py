"""Sessions, product episodes and view times of one day, generated with vectorised numpy.

A session is a user (or a bot) arriving at a time drawn from the daily rhythm.
It holds a sequence of product *episodes*: one product, viewed one or more
times in a row. Humans pick a category (their main one, another preferred one,
or any) and then a product by popularity within it, leaning towards their price
level; bots crawl the catalogue at random. Every random array is drawn for all
rows whatever the branch, so one knob never reshuffles the others' draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from freshcart.simulator.vocab import HOURLY_PROFILE
from freshcart.simulator.world import World

HOUR_US = 3_600_000_000
SECOND_US = 1_000_000
HOUR_CDF = np.cumsum(HOURLY_PROFILE) / np.sum(HOURLY_PROFILE)
EPISODES_MEAN = 2.2  # extra episodes per human session (before a per-session spread)
REVIEW_MEAN = 0.45  # extra views per episode at average interest
MAIN_CATEGORY_SHARE = 0.7  # episodes in the session's main category
PREFERRED_CATEGORY_SHARE = 0.2  # episodes in another of the user's preferred categories
CLOSER_PRICE_SHARE = 0.75  # of two candidate products, how often the one nearer the user's price
NEW_PRODUCT_SHARE = 0.3  # episodes of drifted sessions that land on a new product
BOT_VIEWS_MIN, BOT_VIEWS_EXTRA = 20, 30
VIEW_GAP_S, BOT_GAP_S, MAX_GAP_S = 40.0, 3.0, 1200.0
INTENT_SPREAD, INTEREST_SPREAD = 0.45, 0.5  # hidden parts of the cart log-odds


@dataclass(frozen=True)
class Sessions:
    """One row per session."""

    start: np.ndarray  # int64 microseconds since the epoch
    user: np.ndarray  # index into World.user_ids (bots come after the humans)
    intent: np.ndarray  # latent purchase intent of the visit
    drifted: np.ndarray  # started at or after drift_from
    bot: np.ndarray
    shifted: np.ndarray  # browses the shifted category mix


@dataclass(frozen=True)
class Episodes:
    """One row per product episode, grouped by session in session order."""

    session: np.ndarray
    product: np.ndarray
    interest: np.ndarray  # latent interest in this product (drives re-views and the funnel)
    views: np.ndarray  # number of consecutive views
    new_product: np.ndarray  # drawn from the drift's new products


@dataclass(frozen=True)
class DriftKnobs:
    """The drift settings as the traffic code needs them (times in microseconds)."""

    drift_from_us: int
    bot_share: float
    category_shift: float
    new_products: bool


def sample_sessions(
    world: World, rng: np.random.Generator, day_start_us: int, count: int, knobs: DriftKnobs
) -> Sessions:
    """``count`` sessions starting within the day that begins at ``day_start_us``."""
    hour = np.searchsorted(HOUR_CDF, rng.random(count) * (1 - 1e-12), side="right")
    start = day_start_us + hour * HOUR_US + rng.integers(0, HOUR_US, count)
    human = np.searchsorted(world.user_activity_cdf, rng.random(count) * (1 - 1e-12), side="right")
    bot_user = world.humans + rng.integers(0, world.user_ids.shape[0] - world.humans, count)
    drifted = start >= knobs.drift_from_us
    bot = drifted & (rng.random(count) < knobs.bot_share)
    shifted = drifted & ~bot & (rng.random(count) < knobs.category_shift)
    intent = rng.normal(0.0, INTENT_SPREAD, count)
    return Sessions(
        start=start.astype(np.int64),
        user=np.where(bot, bot_user, human).astype(np.int32),
        intent=intent,
        drifted=drifted,
        bot=bot,
        shifted=shifted,
    )


def from_weights(weights: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Indices drawn with the given weights, one per uniform draw in [0, 1)."""
    return np.searchsorted(np.cumsum(weights), draws * (1 - 1e-12), side="right").astype(np.int32)


def _preferred_category(world: World, user: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """One of each user's preferred categories, by preference weight."""
    cumulative = np.cumsum(world.user_pref_weights[user], axis=1)
    slot = np.minimum((draws[:, None] >= cumulative).sum(axis=1), cumulative.shape[1] - 1)
    return world.user_pref_categories[user, slot]


def choose_products(
    world: World,
    rng: np.random.Generator,
    user: np.ndarray,
    category: np.ndarray,
    new: np.ndarray,
    *,
    uniform: bool = False,
) -> np.ndarray:
    """Products for human episodes: popular ones in ``category``, nearer the user's price level.

    Where ``new`` is set the product comes from the drift's new products instead.
    ``uniform`` ignores popularity (the fallback when popular choices keep colliding).
    """
    n = category.shape[0]
    if uniform:
        size = world.category_offsets[category + 1] - world.category_offsets[category]
        first = world.category_offsets[category] + (rng.random(n) * size).astype(np.int64)
        second = world.category_offsets[category] + (rng.random(n) * size).astype(np.int64)
    else:
        first = np.searchsorted(world.category_cdf, category + rng.random(n), side="right")
        second = np.searchsorted(world.category_cdf, category + rng.random(n), side="right")
    level = world.user_price_level[user]
    first_nearer = np.abs(world.product_log_offset[first] - level) <= np.abs(
        world.product_log_offset[second] - level
    )
    nearer, farther = np.where(first_nearer, first, second), np.where(first_nearer, second, first)
    product = np.where(rng.random(n) < CLOSER_PRICE_SHARE, nearer, farther)
    new_draws = rng.random(n) * (1 - 1e-12)
    if world.new_product_cdf.shape[0]:
        newcomer = world.regular_products + np.searchsorted(
            world.new_product_cdf, new_draws, side="right"
        )
        product = np.where(new, newcomer, product)
    return product.astype(np.int32)


def sample_episodes(
    world: World, rng: np.random.Generator, sessions: Sessions, knobs: DriftKnobs
) -> Episodes:
    """The product episodes of every session (bots: one single-view episode per crawled page)."""
    n_sessions = int(sessions.start.shape[0])
    human_count = 1 + rng.poisson(EPISODES_MEAN * rng.lognormal(0.0, 0.5, n_sessions))
    bot_count = BOT_VIEWS_MIN + rng.poisson(BOT_VIEWS_EXTRA, n_sessions)
    count = np.where(sessions.bot, bot_count, human_count)
    session = np.repeat(np.arange(n_sessions, dtype=np.int32), count)
    n = int(session.shape[0])
    user, bot, shifted = sessions.user[session], sessions.bot[session], sessions.shifted[session]

    # Human category choice: the session's main category, another preferred one, or any.
    main_draw = rng.random(n_sessions)
    main = np.where(
        sessions.shifted,
        from_weights(world.shifted_weights, main_draw),
        np.where(
            rng.random(n_sessions) < 0.85,
            _preferred_category(world, np.minimum(sessions.user, world.humans - 1), main_draw),
            from_weights(world.category_weights, main_draw),
        ),
    )[session]
    kind, draw = rng.random(n), rng.random(n)
    human_user = np.minimum(user, world.humans - 1)
    other = np.where(
        shifted,
        from_weights(world.shifted_weights, draw),
        np.where(
            kind < MAIN_CATEGORY_SHARE + PREFERRED_CATEGORY_SHARE,
            _preferred_category(world, human_user, draw),
            from_weights(world.category_weights, draw),
        ),
    )
    category = np.where(kind < MAIN_CATEGORY_SHARE, main, other)
    new = sessions.drifted[session] & (rng.random(n) < NEW_PRODUCT_SHARE) & knobs.new_products
    product = choose_products(world, rng, human_user, category, new)
    crawled = rng.integers(0, world.product_ids.shape[0], n)  # bots exist only after drift_from
    product = np.where(bot, crawled, product).astype(np.int32)

    interest = rng.normal(0.0, INTEREST_SPREAD, n)
    reviews = rng.poisson(REVIEW_MEAN * np.exp(0.7 * (interest + sessions.intent[session])))
    views = np.where(bot, 1, 1 + reviews)
    return Episodes(
        session=session, product=product, interest=interest, views=views, new_product=new & ~bot
    )


def layout_views(
    rng: np.random.Generator, sessions: Sessions, episodes: Episodes
) -> tuple[np.ndarray, np.ndarray]:
    """View times (int64 us) and the episode of each view, episodes laid out one after another.

    Gaps are exponential (tens of seconds for humans, seconds for bots) and capped
    well below the 30-minute inactivity gap that would end a session.
    """
    view_episode = np.repeat(np.arange(episodes.session.shape[0], dtype=np.int64), episodes.views)
    view_session = episodes.session[view_episode]
    mean_gap = np.where(sessions.bot[view_session], BOT_GAP_S, VIEW_GAP_S)
    gap = np.minimum(rng.exponential(1.0, view_session.shape[0]) * mean_gap, MAX_GAP_S)
    gap_us = (gap * SECOND_US).astype(np.int64) + 1
    first_of_session = np.ones(view_session.shape[0], dtype=bool)
    first_of_session[1:] = view_session[1:] != view_session[:-1]
    gap_us[first_of_session] = 0
    elapsed = np.cumsum(gap_us)
    session_offset = np.maximum.accumulate(np.where(first_of_session, elapsed, 0))
    return sessions.start[view_session] + (elapsed - session_offset), view_episode
