"""Vectorised window primitives over events sorted by (group, time, event_id).

All functions take positions in one sort order: ``gid`` (non-decreasing group
number), ``t_s`` (whole Unix seconds, non-decreasing inside a group) and a
per-position lower time bound ``lo_s``. The value at position ``i`` covers the
group's positions ``j <= i`` with ``t_s[j] >= lo_s[i]``: the state right after
the event at ``i``. Tile bounds are whole seconds, so comparing floored
seconds is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY = 86_400


@dataclass
class Order:
    """A sort of the events by some key columns, then by global (time, event_id) rank."""

    perm: np.ndarray  # event index at each position
    gid: np.ndarray  # group number at each position
    group_start: np.ndarray  # first position of the position's group

    @classmethod
    def by(cls, keys: list[np.ndarray], rank: np.ndarray) -> "Order":
        perm = np.lexsort((rank, *reversed(keys)))
        n = len(perm)
        new = np.ones(n, dtype=bool)
        if n:
            sorted_keys = [k[perm] for k in keys]
            new[1:] = np.logical_or.reduce([k[1:] != k[:-1] for k in sorted_keys]) if keys else False
        gid = np.cumsum(new) - 1
        positions = np.arange(n)
        group_start = np.maximum.accumulate(np.where(new, positions, 0)) if n else positions
        return cls(perm=perm, gid=gid, group_start=group_start)

    @property
    def inverse(self) -> np.ndarray:
        """Position of each event in this order."""
        inv = np.empty_like(self.perm)
        inv[self.perm] = np.arange(len(self.perm))
        return inv

    def last_of_run(self, t_us: np.ndarray) -> np.ndarray:
        """True where the next position has another group or another time (one row per key and time)."""
        n = len(self.perm)
        last = np.ones(n, dtype=bool)
        if n > 1:
            last[:-1] = (self.gid[1:] != self.gid[:-1]) | (t_us[1:] != t_us[:-1])
        return last


def tile_floor(t_s: np.ndarray, tile_seconds: int) -> np.ndarray:
    return (t_s // tile_seconds) * tile_seconds


def window_lower_bound(t_s: np.ndarray, tile_seconds: int, tiles: int) -> np.ndarray:
    """Start of the tiled window ending at each time: the current tile and ``tiles - 1`` before it."""
    return tile_floor(t_s, tile_seconds) - (tiles - 1) * tile_seconds


def first_in_window(order: Order, t_s: np.ndarray, lo_s: np.ndarray) -> np.ndarray:
    """For each position, the first position of its group with ``t_s >= lo_s``."""
    if len(t_s) == 0:
        return np.zeros(0, dtype=np.int64)
    t0 = int(t_s.min())
    span = int(t_s.max()) - t0 + 2
    if (int(order.gid[-1]) + 1) * span >= 2**62:
        raise OverflowError("too many keys over too long a time span for one batch; use a shorter interval")
    composite = order.gid * span + (t_s - t0)
    target = order.gid * span + np.maximum(lo_s - t0, 0)
    return np.searchsorted(composite, target, side="left")


def window_sum(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over positions ``first[i] .. i`` (values in position order).

    Floats accumulate in extended precision, so differences of large prefix
    sums keep the precision of a direct sum.
    """
    if values.dtype.kind == "f":
        cum = np.concatenate([[0.0], np.cumsum(values.astype(np.longdouble))])
        return (cum[1:] - cum[first]).astype(np.float64)
    cum = np.concatenate([[0], np.cumsum(values.astype(np.int64))])
    return cum[1:] - cum[first]


def previous_time_of_same(order: Order, items: np.ndarray, t_s: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """For each position, the time of the previous position in its group with the same item (or -2**62)."""
    n = len(items)
    prev = np.full(n, -(2**62), dtype=np.int64)
    if n < 2:
        return prev
    sub = np.lexsort((rank[order.perm], items, order.gid))  # positions grouped by (group, item), in time order
    same = (order.gid[sub][1:] == order.gid[sub][:-1]) & (items[sub][1:] == items[sub][:-1])
    prev[sub[1:][same]] = t_s[sub[:-1][same]]
    return prev


def window_distinct(order: Order, items: np.ndarray, t_s: np.ndarray, lo_s: np.ndarray,
                    rank: np.ndarray) -> np.ndarray:
    """Distinct ``items`` over the group's positions ``j <= i`` with ``t_s[j] >= lo_s[i]``.

    An item counts once, at its first occurrence inside the window: a position
    with ``t >= lo`` whose previous same item is before ``lo``. One pass per
    distinct lower bound (tile bounds are few: one a day for day tiles).
    """
    prev = previous_time_of_same(order, items, t_s, rank)
    out = np.zeros(len(items), dtype=np.int64)
    for lo in np.unique(lo_s):
        rows = np.flatnonzero(lo_s == lo)
        first_seen = ((t_s >= lo) & (prev < lo)).astype(np.int64)
        cum = np.concatenate([[0], np.cumsum(first_seen)])
        out[rows] = cum[rows + 1] - cum[order.group_start[rows]]
    return out


def last_valid_index(order: Order, valid: np.ndarray) -> np.ndarray:
    """For each position, the latest position ``<= i`` in its group where ``valid`` (or -1)."""
    idx = np.maximum.accumulate(np.where(valid, np.arange(len(valid)), -1)) if len(valid) else np.zeros(0, int)
    return np.where(idx >= order.group_start, idx, -1)
