"""Co-occurrence neighbours kept fresh by the stream: the incremental form of
:func:`freshcart.recommendation.cooccurrence.build_cooccurrence`, split as the stream is partitioned.

- User stage (a session's events all reach the partition of its user, :mod:`freshcart.stream.session_pairs`):
  :class:`~freshcart.stream.session_pairs.SessionPairs` turns each accepted event into changes of its
  session's *contributions* (:func:`~freshcart.stream.session_pairs.session_contributions`: the batch's
  rules applied to one session). An event at the end of its session only adds contributions; one that
  arrives out of order, within the allowed lateness, recomputes the session without and with it and sends
  the difference (removals included).
- Product stage: :class:`NeighbourState` sums the contributions, weighted ``2 ** ((t - ref) / half_life)``
  against one fixed instant ``ref`` (the weights' ratios never change with time, so the cosine scores
  are the batch's at any ``as_of``), per day of the contribution, so that days older than the window
  drop out. A pair contribution goes to the partition of the row's product; a normaliser (a product's
  weighted sessions, or buying sessions) goes to every partition, since a row's scores divide by its
  neighbours' normalisers too.

When rows are written: with each micro-batch, the rows of the products whose pairs or own normaliser
changed (the session's products), with the other partitions' normalisers as of the last checkpoint;
at each checkpoint, after those normalisers are applied (vectorised), also the rows whose neighbours'
normalisers changed (a bounded number per checkpoint, the rest at the next; all at shutdown; all once
after a restore, as what was written before is not known). So the rows are exact once those are written;
until then a session's products are fresh and their weights may lag by what other products gained.

Exact means: a product's row equals ``build_cooccurrence`` over the same events with ``as_of`` the midnight
after the latest day the partition has seen (up to float rounding). Two limits: a session is taken to be
one user's (the batch groups by the session string alone), and a session that straddles the window's
first midnight is counted whole until that day drops out (the batch counts only its part in the window).
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from freshcart.recommendation.cooccurrence import DAY_US, CooccurrenceConfig

SEEN, VIEWED, BOUGHT, BOUGHT_PAIR = 1, 2, 3, 4
"""Contribution codes: a product's first view in a session (normaliser of co_viewed, and of the viewed
side of co_bought); two products first viewed within ``window`` of each other; a product's first cart
or purchase in a session (normaliser of the bought side); b carted or bought after a was viewed."""
NORMS = (SEEN, BOUGHT)
FOREIGN = 10
"""Added to the code of a normaliser delta sent to a partition that does not keep the product's row."""


Sum = list  # [total weight, {day: [weight, contributions]}]: a running total and the days it is made of


def _sum() -> Sum:
    return [0.0, {}]


def _add(total: Sum, day: int, weight: float, count: int) -> None:
    """Add ``count`` contributions of ``day`` weighing ``weight`` together (negative: taken back)."""
    days = total[1]
    cell = days.get(day)
    if cell is None:
        if count:
            days[day] = [weight, count]
            total[0] += weight
        return
    cell[0] += weight
    cell[1] += count
    if cell[1] == 0:  # every contribution of the day taken back: exactly nothing, not a rounding residue
        del days[day]
        total[0] = math.fsum(c[0] for c in days.values())
    else:
        total[0] += weight


def _expire(total: Sum, floor: int) -> bool:
    """Drop the days before ``floor``; whether any was dropped."""
    old = [d for d in total[1] if d < floor]
    for d in old:
        del total[1][d]
    if old:
        total[0] = math.fsum(c[0] for c in total[1].values())
    return bool(old)


@dataclass
class NeighbourItem:
    """One product's share of the product stage's neighbour state (its changelog record): its normalisers,
    and where the product's row is kept, its pairs (neighbour -> :data:`Sum`)."""

    seen: Sum = field(default_factory=_sum)
    bought: Sum = field(default_factory=_sum)
    viewed_with: dict[int, Sum] = field(default_factory=dict)
    bought_after: dict[int, Sum] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.seen[1] or self.bought[1] or self.viewed_with or self.bought_after)


class NeighbourState:
    """Product stage: the neighbours of the products of one partition (see the module)."""

    def __init__(self, config: CooccurrenceConfig = CooccurrenceConfig()) -> None:
        self.config = config
        self.items: dict[int, NeighbourItem] = {}
        self.reference_us: int | None = None  # the weights' fixed instant: the first contribution's midnight
        self.day: int | None = None  # the latest day of a contribution applied
        self.latest_us = 0
        self.reverse: dict[int, dict[int, set[int]]] = {VIEWED: {}, BOUGHT_PAIR: {}}  # b -> rows listing b
        self.dirty: set[int] = set()  # rows whose pairs or own normaliser changed (the session's products)
        self.norm_changed: dict[int, set[int]] = {SEEN: set(), BOUGHT: set()}
        self.changed: set[int] = set()  # items changed since the last changelog records
        self.emptied: set[int] = set()  # rows that lost their last pair (their empty row is written once)
        self.stale: set[int] = set()  # rows whose neighbours' normalisers changed, not rewritten yet
        self.deferred: list[np.ndarray] = []  # other partitions' products' normaliser deltas, not applied yet
        self._unit = config.half_life_hours * 3600e6

    def defer(self, rows: np.ndarray) -> None:
        """Normaliser deltas of products whose rows are kept by other partitions (``(n, 5)`` int64, ops
        ``FOREIGN`` + code): they only divide this partition's scores of their pairs, which are rewritten at
        checkpoints (:meth:`take_stale`), so they are applied then, many at once."""
        if rows.shape[0]:
            self.deferred.append(rows)

    def apply_deferred(self) -> None:
        """Apply the deferred normaliser deltas, summed per (kind, product, day)."""
        if not self.deferred:
            return
        rows = np.concatenate(self.deferred)
        self.deferred = []
        sign = np.sign(rows[:, 1])
        code, product, t_us = np.abs(rows[:, 1]) - FOREIGN, rows[:, 2], rows[:, 4]
        day = t_us // DAY_US
        if self.reference_us is None:
            self.reference_us = int(day.min()) * DAY_US
        if self.day is None or int(day.max()) > self.day:
            self._advance(int(day.max()))
        self.latest_us = max(self.latest_us, int(t_us.max()))
        weight = sign * np.exp2(np.clip((t_us - self.reference_us) / self._unit, -1000.0, 1000.0))
        keep = day > self.day - self.config.days  # type: ignore[operator]
        cells, inverse = np.unique(np.stack([code, product, day], axis=1)[keep], axis=0, return_inverse=True)
        weights = np.bincount(inverse.ravel(), weights=weight[keep], minlength=cells.shape[0])
        counts = np.bincount(inverse.ravel(), weights=sign[keep], minlength=cells.shape[0])
        items = self.items
        for (kind, a, d), w, n in zip(cells.tolist(), weights.tolist(), counts.tolist()):
            item = items.get(a)
            if item is None:
                item = items[a] = NeighbourItem()
            self.changed.add(a)
            _add(item.seen if kind == SEEN else item.bought, d, w, int(n))
            self.norm_changed[kind].add(a)

    def apply(self, op: int, a: int, b: int, t_us: int) -> None:
        """One delta from the user stage (:class:`freshcart.stream.session_pairs.SessionPairs`)."""
        self.apply_rows([(0, op, a, b, t_us)], 0)

    def apply_rows(self, rows: Iterable[Sequence[int]], start: int) -> int:
        """Deltas as forwarded, ``(source offset, op, a, b, t_us)``; those with a source offset below ``start``
        are skipped (already applied); how many were."""
        skipped, last_t, weight = 0, None, 0.0
        items, changed, dirty = self.items, self.changed, self.dirty
        seen_changed, bought_changed = self.norm_changed[SEEN], self.norm_changed[BOUGHT]
        for src_offset, op, a, b, t_us in rows:
            if src_offset < start:
                skipped += 1
                continue
            if t_us != last_t:
                last_t = t_us
                day = t_us // DAY_US
                if self.day is None or day > self.day:
                    if self.reference_us is None:
                        self.reference_us = day * DAY_US
                    self._advance(day)
                expired = day <= self.day - self.config.days  # type: ignore[operator]
                if t_us > self.latest_us:
                    self.latest_us = t_us
                weight = math.exp2(min(1000.0, max(-1000.0, (t_us - self.reference_us) / self._unit)))
            if expired:
                continue  # older than the window (``as_of`` the midnight after ``self.day``)
            item = items.get(a)
            if item is None:
                item = items[a] = NeighbourItem()
            changed.add(a)
            code, sign = (op, 1) if op > 0 else (-op, -1)
            if code == SEEN:
                _add(item.seen, day, sign * weight, sign)
                seen_changed.add(a)
                if item.viewed_with or item.bought_after:
                    dirty.add(a)
                continue
            if code == BOUGHT:
                _add(item.bought, day, sign * weight, sign)
                bought_changed.add(a)
                continue
            pairs = item.viewed_with if code == VIEWED else item.bought_after
            total = pairs.get(b)
            if total is None:
                total = pairs[b] = _sum()
                self.reverse[code].setdefault(b, set()).add(a)
            _add(total, day, sign * weight, sign)
            if not total[1]:
                self._drop_pair(code, a, b)
            dirty.add(a)
        return skipped

    def _drop_pair(self, code: int, a: int, b: int) -> None:
        item = self.items[a]
        del (item.viewed_with if code == VIEWED else item.bought_after)[b]
        rows = self.reverse[code].get(b)
        if rows is not None:
            rows.discard(a)
            if not rows:
                del self.reverse[code][b]
        if not (item.viewed_with or item.bought_after):
            self.emptied.add(a)

    def _advance(self, day: int) -> None:
        """The partition reached ``day``: contributions of the days before the window drop out."""
        previous, self.day = self.day, day
        if previous is None:
            return
        floor = day - self.config.days + 1
        for product, item in list(self.items.items()):
            touched = False
            for code, total in ((SEEN, item.seen), (BOUGHT, item.bought)):
                if _expire(total, floor):
                    self.norm_changed[code].add(product)
                    touched = True
            for code, pairs in ((VIEWED, item.viewed_with), (BOUGHT_PAIR, item.bought_after)):
                for b, total in list(pairs.items()):
                    if _expire(total, floor):
                        touched = True
                        self.dirty.add(product)
                        if not total[1]:
                            self._drop_pair(code, product, b)
            if touched:
                self.changed.add(product)
                if item.viewed_with or item.bought_after:
                    self.dirty.add(product)

    def take_dirty(self) -> set[int]:
        """The rows to write now: those whose own pairs or normaliser changed; clears the set."""
        rows, self.dirty = self.dirty | self.emptied, set()
        self.emptied = set()
        return rows

    def take_stale(self, limit: int | None = None) -> set[int]:
        """Rows whose neighbours' normalisers changed (written at checkpoints: a popular product's new session
        changes many rows a little), at most ``limit`` of them; the rest wait for the next call."""
        self.apply_deferred()
        for code, pair_code in ((SEEN, VIEWED), (BOUGHT, BOUGHT_PAIR)):
            reverse = self.reverse[pair_code]
            for b in self.norm_changed[code]:
                self.stale.update(reverse.get(b, ()))
            self.norm_changed[code] = set()
        if limit is None or len(self.stale) <= limit:
            rows, self.stale = self.stale, set()
            return rows
        rows = set(itertools.islice(self.stale, limit))
        self.stale -= rows
        return rows

    def row(self, product: int) -> dict[str, object]:
        """The product's ``product_neighbours`` values: each kind's ``top_n`` best, ties to the lower id."""
        values: dict[str, object] = {}
        items, sqrt, empty = self.items, math.sqrt, NeighbourItem()
        item = items.get(product) or empty
        own = item.seen[0]
        for kind, pairs, bought in (("co_viewed", item.viewed_with, False), ("co_bought", item.bought_after, True)):
            scored = [(-total[0] / sqrt(max(own * ((items.get(b) or empty).bought if bought
                                                   else (items.get(b) or empty).seen)[0], 1e-300)), b)
                      for b, total in pairs.items()]
            best = heapq.nsmallest(self.config.top_n, scored)
            values[f"{kind}_ids"] = [b for _, b in best]
            values[f"{kind}_weights"] = [-score for score, _ in best]
        return values

    def take_changes(self) -> dict[int, NeighbourItem]:
        """The items changed since the last call (an empty item stands for a deleted one)."""
        self.apply_deferred()
        changes = {p: self.items.get(p) or NeighbourItem() for p in self.changed}
        for p in [p for p in self.changed if p in self.items and self.items[p].empty()]:
            del self.items[p]
        self.changed = set()
        return changes

    def restore(self, items: dict[int, NeighbourItem], reference_us: int | None, day: int | None) -> None:
        """Take back the items of a checkpoint (later parts replace earlier ones) and rebuild the index."""
        for product, item in items.items():
            if item.empty():
                self.items.pop(product, None)
            else:
                self.items[product] = item
        self.reference_us, self.day = reference_us, day
        self.reverse = {VIEWED: {}, BOUGHT_PAIR: {}}
        self.stale = {p for p, item in self.items.items() if item.viewed_with or item.bought_after}  # as they were
        for product, item in self.items.items():  # written is not known: every row is rewritten once
            for b in item.viewed_with:
                self.reverse[VIEWED].setdefault(b, set()).add(product)
            for b in item.bought_after:
                self.reverse[BOUGHT_PAIR].setdefault(b, set()).add(product)
