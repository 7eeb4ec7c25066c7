"""The stream's co-occurrence neighbours equal the batch recomputation: a hand-built log, simulated traffic
partitioned as the stream partitions it (in order, out of order within the lateness, delta messages sent
twice), days dropping out of the window, and a checkpoint round trip."""

from __future__ import annotations

import itertools
import random
from array import array
from datetime import datetime, timezone

import pytest

from freshcart.recommendation.cooccurrence import CooccurrenceConfig
from freshcart.schema import Event, TimeBounds, validate_record
from freshcart.settings import load_settings
from freshcart.simulator import SimulationConfig, iter_records
from freshcart.stream.changelog import ChangelogState, encode_changes
from freshcart.stream.neighbours import NeighbourState
from freshcart.stream.processor import NEIGHBOUR_VIEW, ProductTask, TaskState, UserTask, encode_deltas, route_deltas
from freshcart.stream.session_pairs import SessionPairs, session_contributions
from freshcart.stream.verify import batch_neighbours, neighbour_mismatches

T0 = datetime(2025, 1, 6, tzinfo=timezone.utc)
SECOND = 1_000_000
T0_US = int(T0.timestamp()) * SECOND
PARTITIONS = 3
LATENESS_US = 600 * SECOND

# s1: 1, 2 and buys 2; s2: 1, 3, 2; s3: 4 carted (the hand-built log of the batch's own test)
HAND_ROWS = [(1, "view", 1, "s1"), (2, "view", 2, "s1"), (3, "purchase", 2, "s1"),
             (4, "view", 1, "s2"), (5, "view", 3, "s2"), (6, "view", 2, "s2"),
             (7, "view", 4, "s3"), (8, "cart", 4, "s3")]


def assert_same_neighbours(got: dict[int, dict], expected: dict[int, dict], top_n: int) -> None:
    assert neighbour_mismatches(got, expected, top_n) == []


class TwoStages:
    """User tasks and product tasks wired as the consumer wires them (deltas routed, normalisers to all)."""

    def __init__(self, config: CooccurrenceConfig = CooccurrenceConfig()) -> None:
        self.users = {p: UserTask(p, LATENESS_US, config) for p in range(PARTITIONS)}
        self.products = {q: ProductTask(q, config) for q in range(PARTITIONS)}
        self.offsets = {p: 0 for p in range(PARTITIONS)}
        self.product_offsets = {q: 0 for q in range(PARTITIONS)}
        self.rows: dict[int, dict] = {}
        self.removals = 0  # deltas taking a contribution back (an event earlier than its session's latest)

    def forward(self, events: list[Event], bounds: TimeBounds) -> dict[int, list[bytes]]:
        """Apply events to the user tasks; the delta messages for each product partition."""
        deltas = {p: [array("q") for _ in range(PARTITIONS)] for p in range(PARTITIONS)}
        for event in events:
            p = event.user_id % PARTITIONS
            outcome = self.users[p].apply(self.offsets[p], event.to_json(), 0, bounds)
            assert outcome.rejection is None, outcome.rejection
            self.removals += sum(1 for op, *_ in outcome.deltas if op < 0)
            route_deltas(deltas[p], self.offsets[p], outcome.deltas)
            self.offsets[p] += 1
        messages: dict[int, list[bytes]] = {}
        for p, targets in deltas.items():
            for q, rows in enumerate(targets):
                if rows:
                    messages.setdefault(q, []).append(encode_deltas(p, rows))
        return messages

    def send(self, events: list[Event], bounds: TimeBounds, twice: bool = False) -> None:
        for q, values in self.forward(events, bounds).items():
            for value in values * (2 if twice else 1):  # a replay re-sends what it forwarded
                self.products[q].apply(self.product_offsets[q], value)
                self.product_offsets[q] += 1
        self.collect(checkpoint=True)

    def collect(self, checkpoint: bool) -> None:
        for task in self.products.values():
            for key in task.neighbour_keys(checkpoint):
                row = task.rows_of(key)[0]
                assert row.view == NEIGHBOUR_VIEW
                self.rows[row.key[0]] = row.values


def hand_events() -> list[Event]:
    bounds = TimeBounds.around(T0, load_settings().event_time_floor, 86_400)
    return [validate_record({"event_id": f"e{n:04d}", "event_time": T0_US / SECOND + t, "event_type": kind,
                             "product_id": product, "category_id": 10, "category_code": None, "brand": None,
                             "price": 1.0, "user_id": n % 2 + 1 if session == "s3" else int(session[1]),
                             "user_session": session}, bounds)
            for n, (t, kind, product, session) in enumerate(HAND_ROWS)]


@pytest.fixture(scope="module")
def simulated() -> list[Event]:
    config = SimulationConfig(seed=7, users=200, products=120, categories=6, days=3, events_per_day=3_000)
    bounds = TimeBounds.around(config.end, load_settings().event_time_floor, 86_400)
    return [validate_record(r, bounds) for r in itertools.islice(iter_records(config), 8_000)]


def bounds_for(events: list[Event]) -> TimeBounds:
    return TimeBounds.around(max(e.event_time for e in events), load_settings().event_time_floor, 3_600)


def test_session_contributions_follow_the_batch_rules() -> None:
    events = [(1, "a", 1, "view"), (2, "b", 2, "view"), (3, "c", 1, "view"), (4, "d", 2, "cart"),
              (5, "e", 3, "view"), (6, "f", 2, "purchase")]
    got = session_contributions(events, window=1)
    # 2 pairs with 1 only (window 1); 3 with 2 only; the second view of 1 adds nothing; the cart of 2
    # follows 2 itself (window 1): no pair; the purchase of 2 follows 3 -> (3, 2) at the purchase
    assert got == {(1, 1, 0): 1, (1, 2, 0): 2, (2, 2, 1): 2, (3, 2, 0): 4, (1, 3, 0): 5, (2, 3, 2): 5,
                   (4, 3, 2): 6}


def test_hand_built_log_gives_the_known_neighbours_through_both_stages() -> None:
    events = hand_events()
    stages = TwoStages()
    stages.send(events, bounds_for(events))
    expected = batch_neighbours(events)
    # the batch's known answer (tests/unit/test_recommendation_candidates.py): 1-2 cosine 1, 1-3 and 2-3 0.707
    assert [round(w, 3) for w in expected[1]["co_viewed_weights"]] == [1.0, 0.707]
    assert expected[1]["co_bought_ids"] == [2]
    assert_same_neighbours(stages.rows, expected, CooccurrenceConfig().top_n)


def test_partitioned_stream_equals_the_batch_recomputation(simulated: list[Event]) -> None:
    stages = TwoStages()
    half = len(simulated) // 2
    stages.send(simulated[:half], bounds_for(simulated))
    assert_same_neighbours(stages.rows, batch_neighbours(simulated[:half]), CooccurrenceConfig().top_n)
    stages.send(simulated[half:], bounds_for(simulated), twice=True)
    assert_same_neighbours(stages.rows, batch_neighbours(simulated), CooccurrenceConfig().top_n)


def test_out_of_order_events_within_the_lateness_give_the_same_neighbours(simulated: list[Event]) -> None:
    rng = random.Random(3)
    jitter = {e.event_id: rng.uniform(0, 300) for e in simulated}  # half the allowed lateness, at most
    shuffled = sorted(simulated, key=lambda e: e.event_time.timestamp() + jitter[e.event_id])
    assert shuffled != simulated
    stages = TwoStages(CooccurrenceConfig(window=3, top_n=5))
    for lo in range(0, len(shuffled), 500):
        stages.send(shuffled[lo:lo + 500], bounds_for(simulated))
    assert stages.removals > 0
    assert_same_neighbours(stages.rows, batch_neighbours(simulated, CooccurrenceConfig(window=3, top_n=5)), 5)


def test_days_before_the_window_drop_out(simulated: list[Event]) -> None:
    days_of: dict[str, set] = {}
    for e in simulated:
        days_of.setdefault(e.user_session, set()).add(e.event_time.date())
    events = [e for e in simulated if len(days_of[e.user_session]) == 1]  # the batch cuts a session at midnight
    days = sorted({e.event_time.date() for e in events})
    assert len(days) >= 2
    config = CooccurrenceConfig(days=1)
    stages = TwoStages(config)
    for day in days:
        stages.send([e for e in events if e.event_time.date() == day], bounds_for(events))
    expected = batch_neighbours(events, config)
    assert expected != batch_neighbours(events)  # the window matters for these events
    assert_same_neighbours(stages.rows, expected, config.top_n)


def test_checkpoint_records_restore_the_neighbour_state(simulated: list[Event]) -> None:
    stages = TwoStages()
    stages.send(simulated[:3000], bounds_for(simulated))
    task = stages.products[0]
    state = ChangelogState()
    for offset, (key, value) in enumerate(encode_changes(task.snapshot(), task.meta, 0)):
        state.add(offset, key, value)
    restored = ProductTask(0)
    restored.restore([state.part], state.meta or TaskState())
    assert restored.meta.applied_deltas == task.meta.applied_deltas
    products = sorted(p for p, item in task.neighbours.items.items() if item.viewed_with)
    assert products and all(p % PARTITIONS == 0 for p in products)
    assert [restored.neighbours.row(p) for p in products] == [task.neighbours.row(p) for p in products]
    before = [task.neighbours.row(p) for p in products]
    # the next deltas give the restored task what they give the task that never stopped
    for value in stages.forward(simulated[3000:4000], bounds_for(simulated))[0]:
        task.apply(stages.product_offsets[0], value)
        restored.apply(stages.product_offsets[0], value)
        stages.product_offsets[0] += 1
    assert [task.neighbours.row(p) for p in products] != before
    assert restored.neighbour_keys(True) >= task.neighbour_keys(True)  # a restored task rewrites every row once
    assert [restored.neighbours.row(p) for p in task.neighbours.items] == \
        [task.neighbours.row(p) for p in task.neighbours.items]


def test_stale_rows_are_written_a_bounded_number_at_a_time(simulated: list[Event]) -> None:
    stages = TwoStages()
    stages.send(simulated[:2000], bounds_for(simulated))
    task = stages.products[0]
    for value in stages.forward(simulated[2000:3000], bounds_for(simulated))[0]:
        task.apply(stages.product_offsets[0], value)
    task.neighbours.take_dirty()
    first = task.neighbour_keys(checkpoint=True, stale_limit=5)
    rest = task.neighbour_keys(checkpoint=True)
    assert len(first) == 5 and len(rest) > 5 and not first & rest
    assert task.neighbour_keys(checkpoint=True) == set()


def test_mismatches_name_what_differs() -> None:
    row = {"co_viewed_ids": [2, 3, 4], "co_viewed_weights": [0.5, 0.5, 0.25], "co_bought_ids": [],
           "co_bought_weights": []}
    swapped = {**row, "co_viewed_ids": [3, 2, 4]}  # an order within equal weights
    assert neighbour_mismatches({1: swapped}, {1: row}, top_n=20) == []
    wrong = {**row, "co_viewed_ids": [2, 4, 3]}
    assert neighbour_mismatches({1: wrong}, {1: row}, top_n=20) == [
        "product 1 co_viewed: ids [2, 4, 3], expected [2, 3, 4]"]
    lighter = {**row, "co_viewed_weights": [0.5, 0.5, 0.2]}
    assert neighbour_mismatches({1: lighter}, {1: row}, top_n=20)[0].startswith("product 1 co_viewed: weights")
    assert neighbour_mismatches({}, {1: row}, top_n=20) == ["product 1: no row, expected one"]
    assert neighbour_mismatches({1: row, 5: row}, {1: row}, top_n=20) == ["product 5: a row, expected none"]


def test_a_neighbour_state_without_contributions_has_empty_lists() -> None:
    state = NeighbourState()
    assert state.row(5) == {"co_viewed_ids": [], "co_viewed_weights": [], "co_bought_ids": [],
                            "co_bought_weights": []}
    pairs = SessionPairs(CooccurrenceConfig())
    assert pairs.update(1, "s", [(1, "a", 9, "view")], (1, "a")) == [(1, 9, 0, 1)]


def test_a_user_stage_without_neighbours_sends_no_deltas() -> None:
    events = hand_events()
    bounds = bounds_for(events)
    on, off = UserTask(0, LATENESS_US), UserTask(0, LATENESS_US, neighbours=False)
    sent = {True: 0, False: 0}
    for offset, event in enumerate(events):
        for task in (on, off):
            outcome = task.apply(offset, event.to_json(), 0, bounds)
            assert outcome.rejection is None and outcome.forwarded is not None
            sent[task.neighbours] += len(outcome.deltas)
    assert sent[True] > 0 and sent[False] == 0
    assert load_settings().stream_neighbours is False  # off unless FRESHCART_STREAM_NEIGHBOURS=true
