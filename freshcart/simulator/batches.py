"""Day-by-day output of the simulation as Arrow tables in the canonical schema.

Events that happen after midnight of the day their session started (sessions
running over, return purchases) are carried over and land in the batch of
their own UTC date. After the last simulated day the remaining carried events
are emitted as (small) batches of their own dates, so every view's purchase
window is complete and the truth stays exact to the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from freshcart.schema import ARROW_SCHEMA, EVENT_TYPES, table_to_records
from freshcart.simulator.calibration import calibrate
from freshcart.simulator.config import SimulationConfig
from freshcart.simulator.conflicts import EpisodeWindow
from freshcart.simulator.day import DAY_US, RawEvents, drift_knobs, generate_day, to_us
from freshcart.simulator.ids import fixed_width_strings, hex_bytes, mix64, seed_salt, uuid_bytes
from freshcart.simulator.world import World, build_world

TRUTH_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("purchase_proba", pa.float64(), nullable=False),
    ]
)
EVENT_ID_SALT, SESSION_SALT = 11, 12
RECORD_CHUNK = 10_000  # rows turned into dicts at a time by iter_records
_EVENT_TYPE_NAMES = pa.array(EVENT_TYPES, pa.string())


@dataclass(frozen=True)
class DayBatch:
    """The events of one UTC date (sorted by event_time, event_id) and the truth of its views."""

    day: date
    events: pa.Table
    truth: pa.Table


def build_tables(world: World, config: SimulationConfig, raw: RawEvents) -> tuple[pa.Table, pa.Table]:
    """Canonical events table (sorted by time, then event id) and the truth table of its views."""
    with np.errstate(over="ignore"):
        mixed = mix64(raw.event_key + seed_salt(config.seed, EVENT_ID_SALT))
    order = time_order(raw.time, mixed)
    session_ids = session_strings(raw.session_key, seed_salt(config.seed, SESSION_SALT))[order]
    raw = raw.take(order)
    event_ids = fixed_width_strings(hex_bytes(mixed[order]))
    knobs = drift_knobs(world, config)
    inflation = np.where(raw.time >= knobs.drift_from_us, 1.0 + config.drift.price_inflation, 1.0)
    product = pa.array(raw.product)
    events = pa.Table.from_arrays(
        [
            event_ids,
            pa.array(raw.time, pa.timestamp("us", tz="UTC")),
            _EVENT_TYPE_NAMES.take(pa.array(raw.kind)),
            pa.array(world.product_ids[raw.product]),
            pa.array(world.category_ids[world.product_category[raw.product]]),
            world.product_codes.take(product),
            world.product_brands.take(product),
            pa.array(np.round(world.product_price[raw.product] * inflation, 2)),
            pa.array(world.user_ids[raw.user]),
            fixed_width_strings(session_ids),
        ],
        schema=ARROW_SCHEMA,
    )
    views = np.flatnonzero(raw.kind == 0)
    truth = pa.Table.from_arrays(
        [event_ids.take(pa.array(views)), pa.array(raw.proba[views])], schema=TRUTH_SCHEMA
    )
    return events, truth


def time_order(time: np.ndarray, tie_break: np.ndarray) -> np.ndarray:
    """The permutation sorting rows by ``time`` and then ``tie_break`` (ties are rare)."""
    order = np.argsort(time, kind="stable")
    sorted_time = time[order]
    tied = np.flatnonzero(sorted_time[1:] == sorted_time[:-1])
    if tied.size:
        # Tied rows occupy contiguous positions; re-sort just those positions.
        positions = np.unique(np.concatenate([tied, tied + 1]))
        rows = order[positions]
        order[positions] = rows[np.lexsort((tie_break[rows], time[rows]))]
    return order


def session_strings(session_key: np.ndarray, salt: np.uint64) -> np.ndarray:
    """The (n, 36) UUID byte matrix of each row's session, computed once per run of equal keys."""
    if session_key.shape[0] == 0:
        return np.zeros((0, 36), dtype=np.uint8)
    starts = np.flatnonzero(np.concatenate([[True], session_key[1:] != session_key[:-1]]))
    lengths = np.diff(np.concatenate([starts, [session_key.shape[0]]]))
    return np.repeat(uuid_bytes(session_key[starts], salt), lengths, axis=0)


def _date_of(day_start_us: int) -> date:
    return date(1970, 1, 1) + timedelta(microseconds=day_start_us)


def simulate_days(config: SimulationConfig) -> Iterator[DayBatch]:
    """The simulation, one UTC date at a time (memory bounded by about two days of events)."""
    world = build_world(config)
    calibration = calibrate(world, config)
    window = EpisodeWindow.empty()
    pending: RawEvents | None = None
    first_day_us = to_us(config.start)
    for day_index in range(config.days):
        raw, window = generate_day(world, config, calibration, day_index, window)
        pending = raw if pending is None else RawEvents.concat([pending, raw])
        day_end = first_day_us + (day_index + 1) * DAY_US
        today = pending.time < day_end
        batch = pending.take(np.flatnonzero(today))
        pending = pending.take(np.flatnonzero(~today))
        events, truth = build_tables(world, config, batch)
        yield DayBatch(day=_date_of(day_end - DAY_US), events=events, truth=truth)
    while pending is not None and pending.size:
        day_start = first_day_us + int((pending.time.min() - first_day_us) // DAY_US) * DAY_US
        today = pending.time < day_start + DAY_US
        events, truth = build_tables(world, config, pending.take(np.flatnonzero(today)))
        pending = pending.take(np.flatnonzero(~today))
        yield DayBatch(day=_date_of(day_start), events=events, truth=truth)


def iter_records(config: SimulationConfig) -> Iterator[dict[str, Any]]:
    """JSON-ready canonical records in time order, day by day (e.g. to produce to Kafka)."""
    for batch in simulate_days(config):
        for chunk in batch.events.to_batches(max_chunksize=RECORD_CHUNK):
            yield from table_to_records(pa.Table.from_batches([chunk]))
