"""Generate the events (and their truth) of the sessions that start on one day.

The output is columnar numpy (:class:`RawEvents`), unsorted; events may lie
after midnight (sessions that run over, return purchases) and are routed to
their own date by :mod:`freshcart.simulator.batches`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

import numpy as np

from freshcart.simulator.calibration import Calibration, sessions_for_day
from freshcart.simulator.config import SimulationConfig
from freshcart.simulator.conflicts import (
    EpisodeWindow,
    advance_window,
    conflicts_against,
    find_conflicts,
    merge_sorted,
    pair_keys,
    to_window_ms,
)
from freshcart.simulator.funnel import (
    PURCHASE_GIVEN_CART,
    cart_logit,
    draw_funnel,
    purchase_possible,
    sigmoid,
)
from freshcart.simulator.traffic import (
    SECOND_US,
    DriftKnobs,
    choose_products,
    from_weights,
    layout_views,
    sample_episodes,
    sample_sessions,
)
from freshcart.simulator.world import World

DAY_US = 86_400 * SECOND_US
DAY_STREAM = 3
RESAMPLE_ROUNDS = 4
POPULAR_ROUNDS = 1
SAME_CATEGORY_ROUNDS = 3
SESSION_GAP_US = 30 * 60 * SECOND_US
VIEW, CART, REMOVE, PURCHASE, WISHLIST = 0, 1, 2, 3, 4  # positions in schema.EVENT_TYPES
RETURN_FLAG = 1 << 39


@dataclass(frozen=True)
class RawEvents:
    """Events as numpy columns; ``proba`` is the truth of views and NaN otherwise."""

    time: np.ndarray
    kind: np.ndarray
    product: np.ndarray
    user: np.ndarray
    session_key: np.ndarray
    event_key: np.ndarray
    proba: np.ndarray

    @property
    def size(self) -> int:
        return int(self.time.shape[0])

    def take(self, index: np.ndarray) -> "RawEvents":
        return RawEvents(*(getattr(self, f.name)[index] for f in fields(self)))

    @classmethod
    def concat(cls, parts: list["RawEvents"]) -> "RawEvents":
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))


def to_us(value: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch."""
    return int(round(value.timestamp() * 1_000_000))


def horizon_us(config: SimulationConfig) -> int:
    return int(round(config.horizon_hours * 3600 * SECOND_US))


def drift_knobs(world: World, config: SimulationConfig) -> DriftKnobs:
    drift = config.drift
    return DriftKnobs(
        drift_from_us=to_us(drift.drift_from) if drift.active and drift.drift_from else 2**62,
        bot_share=drift.bot_share,
        category_shift=drift.category_shift,
        new_products=world.new_product_cdf.shape[0] > 0,
    )


def _session_segments(session: np.ndarray, time: np.ndarray, affected: np.ndarray) -> np.ndarray:
    """Segment number of each event: a new one after every 30-minute pause within a session.

    Pauses only appear where dropped episodes left a hole, so only ``affected``
    sessions are examined.
    """
    segment = np.zeros(session.shape[0], dtype=np.int64)
    rows = np.flatnonzero(np.isin(session, affected))
    if rows.size == 0:
        return segment
    rows = rows[np.lexsort((time[rows], session[rows]))]
    pause = np.zeros(rows.shape[0], dtype=np.int64)
    pause[1:] = (session[rows][1:] == session[rows][:-1]) & (np.diff(time[rows]) >= SESSION_GAP_US)
    new_session = np.ones(rows.shape[0], dtype=bool)
    new_session[1:] = session[rows][1:] != session[rows][:-1]
    running = np.cumsum(pause)
    segment[rows] = running - np.maximum.accumulate(np.where(new_session, running, 0))
    return np.minimum(segment, 255)


def generate_day(
    world: World,
    config: SimulationConfig,
    calibration: Calibration,
    day_index: int,
    window: EpisodeWindow,
) -> tuple[RawEvents, EpisodeWindow]:
    """Events of the sessions starting on day ``day_index``, and the updated conflict window."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, DAY_STREAM, day_index]))
    knobs = drift_knobs(world, config)
    horizon = horizon_us(config)
    day_start = to_us(config.start) + day_index * DAY_US
    count = sessions_for_day(config, calibration, day_start, knobs.drift_from_us)
    sessions = sample_sessions(world, rng, day_start, count, knobs)
    episodes = sample_episodes(world, rng, sessions, knobs)
    view_time, view_episode = layout_views(rng, sessions, episodes)
    ends = np.cumsum(episodes.views)
    first_view, last_view = view_time[ends - episodes.views], view_time[ends - 1]

    # One live episode per (user, product) within the horizon: resample, then drop the rest.
    human = np.flatnonzero(~sessions.bot[episodes.session])
    user = sessions.user[episodes.session[human]]
    product = episodes.product.copy()
    category = world.product_category[product[human]]
    first_ms, reach_ms = to_window_ms(first_view[human], last_view[human], horizon)
    n_products = world.product_ids.shape[0]
    keys = pair_keys(user, product[human], n_products)
    conflict, reference = find_conflicts(keys, first_ms, reach_ms, window)
    accepted = EpisodeWindow.empty()
    retry = np.flatnonzero(conflict)  # positions in ``human``
    for attempt in range(RESAMPLE_ROUNDS):
        if retry.size == 0:
            break
        # Popular products first; if they keep colliding, any product of the category,
        # and at last any product of a category drawn from the global mix.
        redo = human[retry]
        fallback = attempt >= POPULAR_ROUNDS
        if attempt >= SAME_CATEGORY_ROUNDS:
            category[retry] = from_weights(world.category_weights, rng.random(retry.shape[0]))
        new = episodes.new_product[redo] & (not fallback)
        product[redo] = choose_products(world, rng, user[retry], category[retry], new, uniform=fallback)
        key = pair_keys(user[retry], product[redo], n_products)
        clash, _ = find_conflicts(key, first_ms[retry], reach_ms[retry], EpisodeWindow.empty())
        clash |= conflicts_against(key, first_ms[retry], reach_ms[retry], reference)
        clash |= conflicts_against(key, first_ms[retry], reach_ms[retry], accepted)
        fine = retry[~clash]
        accepted = merge_sorted(accepted, key[~clash], first_ms[fine], reach_ms[fine])
        retry = retry[clash]
    conflict = np.zeros(human.shape[0], dtype=bool)
    conflict[retry] = True
    kept = human[~conflict]
    window = advance_window([reference, accepted], (day_start + DAY_US) // 1000)

    # The funnel of the kept human episodes.
    session = episodes.session[kept]
    price_factor = np.where(sessions.drifted[session], 1.0 + config.drift.price_inflation, 1.0)
    logit = cart_logit(
        world, sessions.user[session], product[kept], price_factor, sessions.intent[session],
        episodes.interest[kept],
    )
    p_cart = sigmoid(logit + calibration.intercept)
    funnel = draw_funnel(rng, p_cart, first_view[kept], last_view[kept], horizon)
    truth = np.zeros(episodes.session.shape[0])
    possible = purchase_possible(first_view[kept], last_view[kept], horizon)
    truth[kept] = p_cart * PURCHASE_GIVEN_CART * possible

    keep_episode = np.ones(episodes.session.shape[0], dtype=bool)
    keep_episode[human[conflict]] = False
    views = np.flatnonzero(keep_episode[view_episode])
    parts = [
        (view_episode[views], view_time[views], VIEW),
        (kept[funnel.cart_episode], funnel.cart_time, CART),
        (kept[funnel.purchase_episode], funnel.purchase_time, PURCHASE),
        (kept[funnel.remove_episode], funnel.remove_time, REMOVE),
        (kept[funnel.wishlist_episode], funnel.wishlist_time, WISHLIST),
    ]
    episode = np.concatenate([p[0] for p in parts])
    time = np.concatenate([p[1] for p in parts]).astype(np.int64)
    kind = np.concatenate([np.full(p[0].shape[0], p[2], dtype=np.int8) for p in parts])
    returned = np.zeros(episode.shape[0], dtype=bool)
    purchase_from = views.shape[0] + funnel.cart_episode.shape[0]
    returned[purchase_from: purchase_from + funnel.purchase_episode.shape[0]] = funnel.purchase_on_return

    event_session = episodes.session[episode].astype(np.int64)
    segment = _session_segments(
        np.where(returned, -1, event_session), time, np.unique(episodes.session[human[conflict]])
    )
    day_key = np.int64(day_index) << np.int64(40)
    session_key = np.where(
        returned, day_key | RETURN_FLAG | episode, day_key | (event_session << np.int64(8)) | segment
    )
    return (
        RawEvents(
            time=time,
            kind=kind,
            product=product[episode],
            user=sessions.user[episodes.session[episode]],
            session_key=session_key.astype(np.uint64),
            event_key=(day_key | np.arange(episode.shape[0], dtype=np.int64)).astype(np.uint64),
            proba=np.where(kind == VIEW, truth[episode], np.nan),
        ),
        window,
    )
