"""The oracle recommender: the simulator's true purchase probabilities (the ceiling on simulated data).

The simulator records, for every view, the true probability that the viewing shopper
buys that product within the horizon of the episode's first view (``_truth`` beside
the simulated events: ``event_id, purchase_proba``). It records nothing for products a
shopper has not viewed, so the oracle ranks the products the shopper viewed in the last
horizon before ``now`` by the truth of their latest view; every other product scores 0
and falls to the shared tie-break (popularity). In the simulator every purchase and
every add-to-cart follows views of the same product within the horizon, so this covers
what can be bought; what stays unknown to the oracle too is whether the dice fall.

What the shopper did since the view is known too, and the simulator's funnel makes its
effect exact: a product carted since its latest view (and neither removed nor bought
since) is bought with probability ``PURCHASE_GIVEN_CART`` (when its truth is not 0, i.e.
the purchase is still possible); a product removed from the cart or bought since is not
bought again within the episode (0). Without this the oracle would rank a purchase's
carted product by its view-time probability and lose to a recommender that saw the cart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from freshcart.recommendation.base import Recommender
from freshcart.recommendation.log import CART, PURCHASE, REMOVE, VIEW, EventLog
from freshcart.simulator.batches import TRUTH_SCHEMA
from freshcart.simulator.funnel import PURCHASE_GIVEN_CART
from freshcart.simulator.writer import TRUTH_DIR


def read_truth(simulation_dir: Path) -> pa.Table | None:
    """The truth table (event_id, purchase_proba) written by the simulator, or None when there is none."""
    folder = Path(simulation_dir) / TRUTH_DIR
    if not folder.is_dir() or not any(folder.glob("event_date=*")):
        return None
    return ds.dataset(folder, format="parquet", schema=TRUTH_SCHEMA).to_table(
        columns=["event_id", "purchase_proba"])


def truth_per_event(log: EventLog, truth: pa.Table) -> tuple[np.ndarray, float]:
    """The true purchase probability of each view of the log (NaN elsewhere), and the share of views covered."""
    views = np.flatnonzero(log.kind == VIEW)
    left = pa.table({"event_id": log.event_id.take(pa.array(views)), "position": views})
    joined = left.join(truth.select(["event_id", "purchase_proba"]), "event_id", join_type="inner")
    per_event = np.full(log.size, np.nan)
    per_event[joined["position"].to_numpy()] = joined["purchase_proba"].to_numpy()
    return per_event, joined.num_rows / views.shape[0] if views.shape[0] else 0.0


class Oracle(Recommender):
    """The shopper's products viewed in the last ``horizon_hours``, by the truth of their latest view."""

    name = "oracle"

    def __init__(self, truth: np.ndarray, horizon_hours: float = 24.0) -> None:
        super().__init__()
        self.truth = truth
        self.horizon_us = int(horizon_hours * 3600e6)

    def scores(self, user: int, now: int) -> np.ndarray:
        log = self._log()
        scores = np.zeros(log.products)
        events = log.by_user.before(user, now)
        events = events[log.time[events] > now - self.horizon_us]
        kind, item = log.kind[events], log.item[events]
        views = events[(kind == VIEW) & ~np.isnan(self.truth[events])]
        scores[log.item[views]] = self.truth[views]  # events run oldest first: the latest view wins
        last_view, last_cart, last_close = (np.full(log.products, -1) for _ in range(3))
        last_view[log.item[views]] = views
        for kinds, last in (((CART,), last_cart), ((REMOVE, PURCHASE), last_close)):
            chosen = np.isin(kind, kinds)
            last[item[chosen]] = events[chosen]
        carted = (last_cart > last_view) & (last_cart > last_close) & (scores > 0)
        scores[carted] = PURCHASE_GIVEN_CART
        scores[(last_close > last_view) & (last_close > last_cart)] = 0.0
        return scores
