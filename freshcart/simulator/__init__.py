"""Deterministic e-commerce traffic: the project's ground truth.

Shoppers with category and price preferences browse a Zipf-popular catalogue in
sessions with a daily rhythm; each product *episode* may end in a cart and a
purchase with a probability the simulator records for every view, so the best
achievable ranking quality (:func:`oracle_auc`) is known. Drift (price
inflation, category-mix shift, new products, bots) and poison messages are
available on demand.

Modules, in the order data flows through them::

    config       SimulationConfig, DriftConfig (validated)
    world        categories, products, users from the seed
    calibration  funnel intercept and sessions per day from a pilot sample
    traffic      sessions, product episodes, view times (vectorised per day)
    conflicts    one live episode per (user, product) within the horizon
    funnel       cart / purchase / remove / wishlist outcomes and times
    day          one day's events and truth as numpy columns
    batches      DayBatch tables in the canonical schema, iter_records
    writer       write_simulation to date-partitioned Parquet
    oracle       labels from events, rank AUC, oracle_auc
    faults       poison messages with their expected rejection reasons
"""

from __future__ import annotations

from freshcart.simulator.batches import TRUTH_SCHEMA, DayBatch, iter_records, simulate_days
from freshcart.simulator.config import DriftConfig, SimulationConfig, SimulationConfigError
from freshcart.simulator.faults import FAULT_REASONS, MAX_MESSAGE_BYTES, KafkaMessage, inject_faults
from freshcart.simulator.oracle import label_views, oracle_auc, oracle_auc_from_dir, roc_auc
from freshcart.simulator.world import World, build_world
from freshcart.simulator.writer import (
    TRUTH_DIR,
    SimulationSummary,
    read_simulation,
    write_simulation,
)

__all__ = [
    "FAULT_REASONS",
    "MAX_MESSAGE_BYTES",
    "TRUTH_DIR",
    "TRUTH_SCHEMA",
    "DayBatch",
    "DriftConfig",
    "KafkaMessage",
    "SimulationConfig",
    "SimulationConfigError",
    "SimulationSummary",
    "World",
    "build_world",
    "inject_faults",
    "iter_records",
    "label_views",
    "oracle_auc",
    "oracle_auc_from_dir",
    "read_simulation",
    "roc_auc",
    "simulate_days",
    "write_simulation",
]
