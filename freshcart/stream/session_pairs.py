"""The user stage of the stream's co-occurrence neighbours (the product stage that sums what it sends is
:class:`freshcart.stream.neighbours.NeighbourState`; that module describes both).

A session's events all reach the partition of its user: :class:`SessionPairs` turns each accepted event
into changes of its session's *contributions* (:func:`session_contributions`: the batch's rules of
:func:`freshcart.recommendation.cooccurrence.build_cooccurrence` applied to one session). An event at the
end of its session only adds contributions; one that arrives out of order, within the allowed lateness,
recomputes the session without and with it and sends the difference (removals included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from freshcart.recommendation.cooccurrence import CooccurrenceConfig
from freshcart.stream.neighbours import BOUGHT, BOUGHT_PAIR, SEEN, VIEWED

BUY_TYPES = ("cart", "purchase")
Stamp = tuple[int, str]
NO_STAMP: Stamp = (-(2**62), "")
SessionEvent = tuple[int, str, int, str]  # (t_us, event_id, product_id, event_type), as FeatureState keeps them
Delta = tuple[int, int, int, int]  # (+code or -code, product a, product b (0 for a normaliser), t_us)


def session_contributions(events: Iterable[SessionEvent], window: int) -> dict[tuple[int, int, int], int]:
    """Every contribution of one session's events (in (time, event id) order): ``(code, a, b) -> t_us``.

    The rules of ``build_cooccurrence``: each product's first view pairs with the session's previous
    ``window`` first-viewed products (at the later view's time); each cart or purchase of b pairs the up to
    ``window`` products first viewed before it (a != b) with b, once per (a, b), at the first such buy.
    """
    out: dict[tuple[int, int, int], int] = {}
    summary = _Session()
    for event in events:
        summary.add(event, window, out)
    return out


@dataclass
class _Session:
    """What the next event at the end of a session needs: its first-viewed products, in order, and buys."""

    latest: Stamp = NO_STAMP
    firsts: list[int] = field(default_factory=list)
    first_set: set[int] = field(default_factory=set)
    bought: set[int] = field(default_factory=set)
    bought_pairs: set[tuple[int, int]] = field(default_factory=set)

    def add(self, event: SessionEvent, window: int, out: dict[tuple[int, int, int], int]) -> None:
        """Take one event later than every event so far; its new contributions go to ``out``."""
        t_us, event_id, product, event_type = event
        self.latest = (t_us, event_id)
        if event_type == "view":
            if product in self.first_set:
                return
            out[(SEEN, product, 0)] = t_us
            for other in self.firsts[-window:]:
                out[(VIEWED, product, other)] = t_us
            self.firsts.append(product)
            self.first_set.add(product)
        elif event_type in BUY_TYPES:
            if product not in self.bought:
                self.bought.add(product)
                out[(BOUGHT, product, 0)] = t_us
            for other in self.firsts[-window:]:
                if other != product and (other, product) not in self.bought_pairs:
                    self.bought_pairs.add((other, product))
                    out[(BOUGHT_PAIR, other, product)] = t_us


def _deltas(sign: int, contributions: dict[tuple[int, int, int], int]) -> list[Delta]:
    """Contributions as product-stage deltas: a co-view counts for both products' rows."""
    rows: list[Delta] = []
    for (code, a, b), t_us in contributions.items():
        rows.append((sign * code, a, b, t_us))
        if code == VIEWED:
            rows.append((sign * code, b, a, t_us))
    return rows


class SessionPairs:
    """User stage: the contribution changes of each accepted event, from its session's events.

    The sessions' events are the feature state's (``FeatureState.users[u].sessions``, checkpointed with
    it); this keeps only a summary per session, rebuilt from them whenever it is missing (after a
    restore, or once pruned), so replays give the same deltas.
    """

    def __init__(self, config: CooccurrenceConfig) -> None:
        self.window = config.window
        self.sessions: dict[tuple[int, str], _Session] = {}

    def update(self, user_id: int, session: str, events: list[SessionEvent], stamp: Stamp) -> list[Delta]:
        """The deltas of the event ``stamp``, already inserted in its session's sorted ``events``."""
        key = (user_id, session)
        summary = self.sessions.get(key)
        last = events[-1]
        if (last[0], last[1]) == stamp:  # at the end of its session: only new contributions
            previous = (events[-2][0], events[-2][1]) if len(events) > 1 else NO_STAMP
            if summary is None or summary.latest != previous:
                summary = self._rebuild(key, events[:-1])
            out: dict[tuple[int, int, int], int] = {}
            summary.add(last, self.window, out)
            return _deltas(1, out)
        old = session_contributions((e for e in events if (e[0], e[1]) != stamp), self.window)
        new = session_contributions(events, self.window)
        self._rebuild(key, events)
        removed = {k: t for k, t in old.items() if new.get(k) != t}
        added = {k: t for k, t in new.items() if old.get(k) != t}
        return _deltas(-1, removed) + _deltas(1, added)

    def _rebuild(self, key: tuple[int, str], events: list[SessionEvent]) -> _Session:
        summary = self.sessions[key] = _Session()
        scratch: dict[tuple[int, int, int], int] = {}
        for event in events:
            summary.add(event, self.window, scratch)
        return summary

    def prune(self, floor_us: int) -> None:
        """Forget summaries of sessions with nothing since ``floor_us`` (they are rebuilt if needed)."""
        for key in [k for k, s in self.sessions.items() if s.latest[0] < floor_us]:
            del self.sessions[key]
