"""Point-in-time replay of a holdout period: every purchase and add-to-cart is a query.

The log is walked in event-time order. At each purchase (and, separately, each
add-to-cart) of the period, every recommender is first told the events strictly
before that event's time (``update(log.position(t))``), then asked to score the
catalogue for that shopper at ``t``; the rank of the product bought (carted) and the
top ``k`` shown are recorded. The event itself, and anything at or after ``t``
(other products of the same basket included), is never visible. Each recommender
walks the period on its own, so its fit and replay times are its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import date, datetime, time as day_time, timedelta, timezone

import numpy as np
import pyarrow as pa

from freshcart.recommendation.base import Recommender, TieBreak, rank_of, top_k
from freshcart.recommendation.baselines import ItemKNN, Popularity, SessionKNN, Trending
from freshcart.recommendation.log import CART, PURCHASE, EventLog, load_log, to_micros
from freshcart.recommendation.metrics import QueryResults, summarise
from freshcart.recommendation.oracle import Oracle, read_truth, truth_per_event
from freshcart.settings import Settings

QUERY_KINDS = {"purchase": PURCHASE, "cart": CART}
MIN_TRUTH_COVERAGE = 0.9
"""The oracle joins the replay when the simulator's truth covers at least this share of the views."""
Progress = Callable[[str, int, int], None]
"""Called with (recommender, queries done, queries in all) as the replay walks."""


def query_positions(log: EventLog, start_us: int, end_us: int) -> dict[str, np.ndarray]:
    """Positions of the purchases and of the add-to-carts in ``[start_us, end_us)``, by query kind."""
    window = (log.time >= start_us) & (log.time < end_us)
    return {name: np.flatnonzero(window & (log.kind == kind)) for name, kind in QUERY_KINDS.items()}


def replay_one(log: EventLog, recommender: Recommender, fit_stop: int, queries: np.ndarray, ties: TieBreak,
               k: int = 10, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Ranks of the targets and top ``k`` shown at each query (positions, ascending), fit and replay seconds."""
    started = time.perf_counter()
    recommender.fit(log, fit_stop, ties)
    fitted = time.perf_counter()
    ranks = np.zeros(queries.shape[0], dtype=np.int64)
    shown = np.zeros((queries.shape[0], min(k, log.products)), dtype=np.int64)
    for number, position in enumerate(queries):
        now = int(log.time[position])
        recommender.update(log.position(now))
        scores = recommender.scores(int(log.user[position]), now)
        ranks[number] = rank_of(scores, int(log.item[position]), ties)
        shown[number] = top_k(scores, k, ties)
        if progress is not None and (number + 1) % 500 == 0:
            progress(recommender.name, number + 1, queries.shape[0])
    if progress is not None:
        progress(recommender.name, queries.shape[0], queries.shape[0])
    return ranks, shown, fitted - started, time.perf_counter() - fitted


def replay(log: EventLog, recommenders: Sequence[Recommender], start_us: int, end_us: int, k: int = 10,
           progress: Progress | None = None) -> pa.Table:
    """The metrics table of each recommender on the purchases and add-to-carts of ``[start_us, end_us)``.

    Recommenders are fitted on the events before ``start_us``. One row per recommender
    and query kind; ``fit_seconds`` and ``replay_seconds`` cover both kinds (one walk).
    """
    if end_us <= start_us:
        raise ValueError(f"the replay period is empty: end {end_us} is not after start {start_us}")
    fit_stop = log.position(start_us)
    if fit_stop == 0:
        raise ValueError("no events before the replay period to fit the recommenders on; "
                         "start the period later or load more history")
    ties = TieBreak.by_popularity(log, fit_stop)
    by_kind = query_positions(log, start_us, end_us)
    queries = np.sort(np.concatenate(list(by_kind.values())))
    rows: list[dict[str, object]] = []
    for recommender in recommenders:
        ranks, shown, fit_seconds, replay_seconds = replay_one(log, recommender, fit_stop, queries, ties, k,
                                                               progress)
        for kind, positions in by_kind.items():
            mask = np.isin(queries, positions)
            metrics = summarise(QueryResults(ranks=ranks[mask], shown=shown[mask]), log.products, ties, k)
            rows.append({"recommender": recommender.name, "event_type": kind, "queries": int(mask.sum()),
                         **metrics, "fit_seconds": fit_seconds, "replay_seconds": replay_seconds,
                         "ms_per_query": 1000 * replay_seconds / max(queries.shape[0], 1)})
    table = pa.Table.from_pylist(rows)
    return table.replace_schema_metadata({
        "start_us": str(start_us), "end_us": str(end_us), "k": str(k), "products": str(log.products),
        "history_events": str(fit_stop), "period_events": str(log.position(end_us) - fit_stop)})


def default_recommenders(log: EventLog, truth: np.ndarray | None = None,
                         horizon_hours: float = 24.0) -> list[Recommender]:
    """The baselines, and the oracle when the simulator's truth of the views is given."""
    recommenders: list[Recommender] = [Popularity(), Trending(), ItemKNN(), SessionKNN()]
    if truth is not None:
        recommenders.append(Oracle(truth, horizon_hours))
    return recommenders


def _midnight(day: date) -> datetime:
    return datetime.combine(day, day_time(0), tzinfo=timezone.utc)


def evaluate_recommendations(settings: Settings, start: date, end: date, k: int = 10,
                             progress: Progress | None = None, history_days: int | None = 28) -> pa.Table:
    """Replay the purchases and add-to-carts of ``[start, end)`` (UTC dates) of the offline store.

    Recommenders are fitted on the ``history_days`` before ``start`` (all of it when None):
    global popularity, trending, item-kNN, session-kNN and, when the offline events are the
    simulator's (its truth covers them), the oracle. Returns the metrics table (see :func:`replay`).
    """
    if end <= start:
        raise ValueError(f"end {end.isoformat()} must be after start {start.isoformat()} (end is exclusive)")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    first = _midnight(start - timedelta(days=history_days)) if history_days else None
    log = load_log(settings.offline_events_dir, _midnight(end), first)
    truth_table = read_truth(settings.simulation_dir)
    truth, covered = (None, 0.0)
    if truth_table is not None:
        truth, covered = truth_per_event(log, truth_table)
        if covered < MIN_TRUTH_COVERAGE:
            truth = None
    table = replay(log, default_recommenders(log, truth, settings.horizon_hours), to_micros(_midnight(start)),
                   to_micros(_midnight(end)), k, progress)
    metadata = dict(table.schema.metadata or {})
    metadata[b"truth_coverage"] = f"{covered:.4f}".encode()
    return table.replace_schema_metadata(metadata)
