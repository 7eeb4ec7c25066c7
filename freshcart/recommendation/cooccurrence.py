"""Item-item co-occurrence: each product's co-viewed and co-bought neighbours, from one function.

:func:`build_cooccurrence` reads the events of ``[as_of - days, as_of)`` of an :class:`EventLog`:

- ``co_viewed``: two products viewed in the same session (each product's first view in a session
  pairs with the session's previous ``window`` first-viewed products, both ways);
- ``co_bought``: product b carted or purchased in a session that viewed product a before (a != b):
  "shoppers who looked at a bought b". Each (session, a, b) counts once.

A co-occurrence weighs ``2 ** ((t - as_of) / half_life)`` (t: the later event), so old sessions fade;
sums are cosine-normalised, ``w(a, b) / sqrt(n(a) * n(b))`` with ``n`` a product's weighted sessions
(for co_bought, b's buying sessions), so a popular product is not everyone's neighbour. Each product
keeps its ``top_n`` best neighbours per kind (ties: the lower product id).

The ``materialize_features`` DAG writes the result to the online view ``product_neighbours``
(:mod:`freshcart.recommendation.neighbour_tables`); the replay builds it at each refresh instant
from the events strictly before that instant. Both call this one function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from freshcart.features import spec
from freshcart.recommendation.base import decay_weights
from freshcart.recommendation.log import CART, PURCHASE, VIEW, EventLog

KINDS = ("co_viewed", "co_bought")
DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True)
class CooccurrenceConfig:
    """How the neighbours are counted."""

    days: int = 28
    """Days of events before ``as_of`` that count."""
    half_life_hours: float = 72.0
    """A co-occurrence this much older than ``as_of`` weighs half."""
    window: int = 10
    """A product pairs with at most this many products seen before it in the session."""
    top_n: int = spec.NEIGHBOURS

    def __post_init__(self) -> None:
        for name in ("days", "window", "top_n"):
            if getattr(self, name) < 1:
                raise ValueError(f"cooccurrence {name}={getattr(self, name)} must be at least 1")
        if self.half_life_hours <= 0:
            raise ValueError(f"cooccurrence half_life_hours={self.half_life_hours} must be positive")


@dataclass(frozen=True)
class Neighbours:
    """Each item's neighbours (item indices of the log), best first: ``ids[offsets[i]:offsets[i + 1]]``."""

    offsets: np.ndarray
    ids: np.ndarray
    weights: np.ndarray

    def of(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = int(self.offsets[item]), int(self.offsets[item + 1])
        return self.ids[lo:hi], self.weights[lo:hi]


@dataclass(frozen=True)
class Cooccurrence:
    """The neighbours of every item, built from the events strictly before ``as_of`` (microseconds)."""

    as_of: int
    co_viewed: Neighbours
    co_bought: Neighbours

    def kind(self, name: str) -> Neighbours:
        if name not in KINDS:
            raise ValueError(f"neighbour kind {name!r} is not one of {list(KINDS)}")
        return self.co_viewed if name == "co_viewed" else self.co_bought


def _first_views(log: EventLog, start: int, stop: int) -> np.ndarray:
    """Positions of each (session, item)'s first view in ``[start, stop)``, ordered by session, then time."""
    positions = np.flatnonzero(log.kind[start:stop] == VIEW) + start
    positions = positions[np.argsort(log.session[positions], kind="stable")]
    _, first = np.unique(log.session[positions] * np.int64(log.products) + log.item[positions], return_index=True)
    return positions[np.sort(first)]


def _earlier(firsts: np.ndarray, anchor: np.ndarray, lo: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """For each anchor ``k`` (index into ``firsts``; the session's first index ``lo``), the up to
    ``window`` firsts just before it: (anchor number, position of the earlier first)."""
    counts = np.minimum(anchor - lo, window)
    owner = np.repeat(np.arange(anchor.shape[0]), counts)
    step = np.arange(owner.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, firsts[anchor[owner] - counts[owner] + step]


def _top(log: EventLog, a: np.ndarray, b: np.ndarray, weight: np.ndarray, norm_a: np.ndarray,
         norm_b: np.ndarray, top_n: int) -> Neighbours:
    """Sum ``weight`` per (a, b), cosine-normalise, keep each a's ``top_n`` best b."""
    products = np.int64(log.products)
    cells, inverse = np.unique(a * products + b, return_inverse=True)
    total = np.bincount(inverse, weights=weight, minlength=cells.shape[0])
    a, b = cells // products, cells % products
    score = total / np.sqrt(np.maximum(norm_a[a] * norm_b[b], 1e-300))
    order = np.lexsort((b, -score, a))  # item indices follow product ids: ties go to the lower id
    a, b, score = a[order], b[order], score[order]
    group_start = np.searchsorted(a, a, side="left")
    keep = np.arange(a.shape[0]) - group_start < top_n
    offsets = np.zeros(log.products + 1, dtype=np.int64)
    np.cumsum(np.bincount(a[keep], minlength=log.products), out=offsets[1:])
    return Neighbours(offsets=offsets, ids=b[keep], weights=score[keep])


def build_cooccurrence(log: EventLog, as_of: int, config: CooccurrenceConfig = CooccurrenceConfig()
                       ) -> Cooccurrence:
    """The co-viewed and co-bought neighbours of every item from the events of ``[as_of - days, as_of)``."""
    start, stop = log.position(as_of - config.days * DAY_US), log.position(as_of)
    firsts = _first_views(log, start, stop)
    session = log.session[firsts]
    key = session * np.int64(max(log.size, 1)) + firsts  # (session, position): ascending
    lo = np.searchsorted(key, session * np.int64(max(log.size, 1)), side="left")
    seen = decay_weights(log.time[firsts], as_of, config.half_life_hours)
    seen_per_item = np.bincount(log.item[firsts], weights=seen, minlength=log.products)

    owner, earlier = _earlier(firsts, np.arange(firsts.shape[0]), lo, config.window)
    later = firsts[owner]
    a, b = log.item[later], log.item[earlier]
    weight = decay_weights(log.time[later], as_of, config.half_life_hours)
    co_viewed = _top(log, np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([weight, weight]),
                     seen_per_item, seen_per_item, config.top_n)

    buys = np.flatnonzero(np.isin(log.kind[start:stop], (CART, PURCHASE))) + start
    buy_session = log.session[buys]
    anchor = np.searchsorted(key, buy_session * np.int64(max(log.size, 1)) + buys, side="left")
    buy_lo = np.searchsorted(key, buy_session * np.int64(max(log.size, 1)), side="left")
    owner, earlier = _earlier(firsts, anchor, buy_lo, config.window)
    bought, viewed = log.item[buys[owner]], log.item[earlier]
    other = viewed != bought
    triple = np.stack([buy_session[owner][other], viewed[other], bought[other]], axis=1)
    _, once = np.unique(triple, axis=0, return_index=True)  # the first buy of b after a, per session
    once = np.flatnonzero(other)[once]
    weight = decay_weights(log.time[buys[owner[once]]], as_of, config.half_life_hours)
    buy_pairs = np.unique(buy_session * np.int64(log.products) + log.item[buys], return_index=True)[1]
    bought_per_item = np.bincount(log.item[buys[buy_pairs]], minlength=log.products,
                                  weights=decay_weights(log.time[buys[buy_pairs]], as_of, config.half_life_hours))
    co_bought = _top(log, viewed[once], bought[once], weight, seen_per_item, bought_per_item, config.top_n)
    return Cooccurrence(as_of=as_of, co_viewed=co_viewed, co_bought=co_bought)


def _lists(neighbours: Neighbours, values: np.ndarray, dtype: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(neighbours.offsets.astype(np.int32)), pa.array(values, dtype))


def neighbour_table(log: EventLog, cooccurrence: Cooccurrence) -> pa.Table:
    """The rows of ``spec.PRODUCT_NEIGHBOURS`` (product ids, not item indices) of every product with a
    neighbour; their time is ``as_of`` minus 1 µs, the newest instant the neighbours cover."""
    columns: dict[str, pa.Array] = {"product_id": pa.array(log.product_ids, pa.int64())}
    columns[spec.TIMESTAMP] = pa.array(np.full(log.products, cooccurrence.as_of - 1), pa.int64()).cast(
        pa.timestamp("us", tz="UTC"))
    has_any = np.zeros(log.products, dtype=bool)
    for kind in KINDS:
        neighbours = cooccurrence.kind(kind)
        columns[f"{kind}_ids"] = _lists(neighbours, log.product_ids[neighbours.ids], pa.int64())
        columns[f"{kind}_weights"] = _lists(neighbours, neighbours.weights, pa.float64())
        has_any |= np.diff(neighbours.offsets) > 0
    table = pa.Table.from_pydict(columns, schema=spec.PRODUCT_NEIGHBOURS.schema)
    return table.filter(pa.array(has_any))
