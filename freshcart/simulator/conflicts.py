"""Keep the ground truth exact: one live episode per (user, product) within the horizon.

A view's label is "the same user buys the same product within H after it".
Purchases only come from the episode the view belongs to, and always within H
of that episode's first view, so the truth is exact as long as two episodes of
one (user, product) pair never come closer than H: a later episode B must start
after the earlier episode A's last view plus H (then A's purchase, if any, lies
before B, and B's lies beyond every view of A plus H).

:func:`find_conflicts` flags today's episodes that break the rule against every
episode of the pair seen so far (today's and those carried from earlier days);
the day generator resamples their products a few times, checking only the
resampled ones (:func:`conflicts_against`), and drops what remains.
Within one pair the check is a cumulative maximum of ``last + H`` over the pair's
earlier episodes; the ordering only decides which one is flagged, never whether
a conflict is missed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MS_US = 1_000


@dataclass(frozen=True)
class EpisodeWindow:
    """Episodes of earlier days that can still conflict (pair key, first view, last view + H in ms)."""

    key: np.ndarray
    first_ms: np.ndarray
    reach_ms: np.ndarray

    @classmethod
    def empty(cls) -> "EpisodeWindow":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))


def pair_keys(user: np.ndarray, product: np.ndarray, n_products: int) -> np.ndarray:
    """One int64 per (user index, product index) pair."""
    return user.astype(np.int64) * n_products + product.astype(np.int64)


def to_window_ms(
    first_us: np.ndarray, last_us: np.ndarray, horizon_us: int
) -> tuple[np.ndarray, np.ndarray]:
    """First view rounded down and last view + H rounded up, in ms (conservative both ways)."""
    return first_us // MS_US, -((-(last_us + horizon_us)) // MS_US)


def _order(key: np.ndarray, carried: np.ndarray, first_ms: np.ndarray) -> np.ndarray:
    """Rows grouped by pair, carried episodes first, then by first view (minute precision)."""
    minutes = (first_ms - first_ms.min()) // 60_000 if first_ms.size else first_ms
    if key.size and key.max() < 2**41 and minutes.max() < 2**21:
        today = np.where(carried, 0, 1).astype(np.int64)
        packed = (key << np.int64(22)) | (today << np.int64(21)) | minutes
        return np.argsort(packed, kind="stable")
    return np.lexsort((first_ms, ~carried, key))


def find_conflicts(
    key: np.ndarray, first_ms: np.ndarray, reach_ms: np.ndarray, earlier: EpisodeWindow
) -> tuple[np.ndarray, EpisodeWindow]:
    """Which of today's episodes start before an earlier episode of the same pair has expired.

    Also returns the episodes that stand (``earlier`` and today's unflagged ones)
    sorted by pair key, the reference for :func:`conflicts_against`.
    """
    n_earlier = earlier.key.shape[0]
    all_key = np.concatenate([earlier.key, key])
    all_first = np.concatenate([earlier.first_ms, first_ms])
    all_reach = np.concatenate([earlier.reach_ms, reach_ms])
    if all_key.size == 0:
        return np.zeros(0, dtype=bool), EpisodeWindow.empty()
    carried = np.arange(all_key.shape[0]) < n_earlier
    order = _order(all_key, carried, all_first)
    sorted_key = all_key[order]
    sorted_first, sorted_reach = all_first[order], all_reach[order]
    new_pair = np.ones(sorted_key.shape[0], dtype=bool)
    new_pair[1:] = sorted_key[1:] != sorted_key[:-1]
    group = np.cumsum(new_pair) - 1
    base = min(int(all_first.min()), int(all_reach.min()))
    span = max(int(all_first.max()), int(all_reach.max())) - base + 1
    if group[-1] * span >= 2**62:
        raise OverflowError("too many episodes in one conflict window; lower events_per_day or horizon")
    # Cumulative max of reach within each pair: offsetting each pair by group * span keeps
    # earlier pairs below later ones, so one running maximum serves all pairs.
    running = np.maximum.accumulate(group * span + (sorted_reach - base))
    previous = np.empty_like(running)
    previous[0] = -1
    previous[1:] = running[:-1] - group[1:] * span
    conflict_sorted = ~new_pair & (previous >= sorted_first - base)
    conflict = np.empty(all_key.shape[0], dtype=bool)
    conflict[order] = conflict_sorted
    stand = ~conflict_sorted
    reference = EpisodeWindow(sorted_key[stand], sorted_first[stand], sorted_reach[stand])
    return conflict[n_earlier:], reference


def conflicts_against(
    key: np.ndarray, first_ms: np.ndarray, reach_ms: np.ndarray, reference: EpisodeWindow
) -> np.ndarray:
    """Which episodes overlap (same pair, closer than the horizon) an episode of ``reference``.

    ``reference`` must be sorted by key; a pair has only a few episodes in it, so
    the loop runs over the few positions within a pair, not over episodes.
    """
    low = np.searchsorted(reference.key, key, side="left")
    width = np.searchsorted(reference.key, key, side="right") - low
    clash = np.zeros(key.shape[0], dtype=bool)
    for offset in range(int(width.max(initial=0))):
        rows = np.flatnonzero(width > offset)
        other = low[rows] + offset
        clash[rows] |= (first_ms[rows] <= reference.reach_ms[other]) & (
            reference.first_ms[other] <= reach_ms[rows]
        )
    return clash


def merge_sorted(
    reference: EpisodeWindow, key: np.ndarray, first_ms: np.ndarray, reach_ms: np.ndarray
) -> EpisodeWindow:
    """``reference`` with more episodes added, still sorted by key."""
    all_key = np.concatenate([reference.key, key])
    order = np.argsort(all_key, kind="stable")
    return EpisodeWindow(
        all_key[order],
        np.concatenate([reference.first_ms, first_ms])[order],
        np.concatenate([reference.reach_ms, reach_ms])[order],
    )


def advance_window(standing: list[EpisodeWindow], next_start_ms: int) -> EpisodeWindow:
    """The standing episodes that can still conflict with sessions from ``next_start_ms`` on."""
    key = np.concatenate([w.key for w in standing])
    first_ms = np.concatenate([w.first_ms for w in standing])
    reach_ms = np.concatenate([w.reach_ms for w in standing])
    live = reach_ms >= next_start_ms
    return EpisodeWindow(key[live], first_ms[live], reach_ms[live])
