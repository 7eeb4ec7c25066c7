"""The candidate tasks of the ``materialize_features`` DAG: co-occurrence online, quotas chosen by replay.

- :func:`build_neighbour_tables`: the co-occurrence of the offline events before ``end``
  (:func:`~freshcart.recommendation.cooccurrence.build_cooccurrence`) as rows of the view
  ``product_neighbours`` in the offline feature tables (the partition of ``end``'s previous day,
  replaced), materialised into the profile's online store; and the session-kNN index file.
- :func:`choose_quotas`: the replay of the service's sources over the purchases and add-to-carts of
  the ``days`` before ``end``; the quota search; the file the service reads and an MLflow run.

Both are idempotent for an ``end``: the same events give the same files and rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from freshcart.features import spec
from freshcart.features.materialize import MaterializeError, materialize
from freshcart.features.tables import write_feature_tables
from freshcart.recommendation.candidate_replay import propose_all
from freshcart.recommendation.cooccurrence import CooccurrenceConfig, build_cooccurrence, neighbour_table
from freshcart.recommendation.log import load_log, to_micros
from freshcart.recommendation.online_sources import quotas_path, session_index_path
from freshcart.recommendation.quotas import contributions, log_quotas, save_quotas, search_quotas
from freshcart.recommendation.replay import query_positions
from freshcart.recommendation.session_index import build_session_index
from freshcart.settings import Settings

MAX_QUOTA_QUERIES = 3000
"""The quota search replays at most this many queries (evenly spread over the period)."""


@dataclass
class NeighbourReport:
    as_of: datetime
    events: int
    products: int
    rows: int
    co_viewed_pairs: int
    co_bought_pairs: int
    sessions: int
    table_dir: Path
    session_index: Path
    online_rows: int = 0
    seconds: float = 0.0


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def build_neighbour_tables(settings: Settings, end: datetime, config: CooccurrenceConfig = CooccurrenceConfig(),
                           online: bool = True, store: Any = None) -> NeighbourReport:
    """Co-occurrence and the session index from the offline events strictly before ``end`` (see the module)."""
    started = time.perf_counter()
    log = load_log(settings.offline_events_dir, end, end - timedelta(days=config.days))
    as_of = to_micros(end)
    cooccurrence = build_cooccurrence(log, as_of, config)
    table = neighbour_table(log, cooccurrence)
    last_day = (end - timedelta(microseconds=1)).date()
    write_feature_tables(settings.feature_tables_dir, {spec.PRODUCT_NEIGHBOURS.name: table}, last_day,
                         last_day + timedelta(days=1))
    sessions = build_session_index(log, as_of)
    index_path = sessions.save(session_index_path(settings))
    report = NeighbourReport(end, log.size, log.products, table.num_rows, int(cooccurrence.co_viewed.ids.shape[0]),
                             int(cooccurrence.co_bought.ids.shape[0]), sessions.size,
                             settings.feature_tables_dir / spec.PRODUCT_NEIGHBOURS.name, index_path)
    if online and table.num_rows:
        try:
            materialized = materialize(settings, _midnight(last_day), end, [spec.PRODUCT_NEIGHBOURS.name],
                                       store=store)
        except MaterializeError as exc:
            raise MaterializeError(f"{exc} (the view {spec.PRODUCT_NEIGHBOURS.name} is new: run "
                                   "`freshcart features apply` once)") from None
        report.online_rows = materialized.entity_rows
    report.seconds = time.perf_counter() - started
    return report


def choose_quotas(settings: Settings, end: datetime, days: int = 1, limit: int = 100, unit: int = 5,
                  log_run: bool = True) -> dict[str, Any]:
    """Replay the sources over ``[end - days, end)``, search the quotas, write the file (and an MLflow run)."""
    start = end - timedelta(days=days)
    history = CooccurrenceConfig().days + 31  # the neighbours' and the top categories' look-back
    log = load_log(settings.offline_events_dir, end, start - timedelta(days=history))
    queries = np.sort(np.concatenate(list(query_positions(log, to_micros(start), to_micros(end)).values())))
    if queries.shape[0] == 0:  # the file in use stays: nothing to learn quotas from
        return {"skipped": f"no purchases or add-to-carts in [{start.isoformat()}, {end.isoformat()})",
                "path": str(quotas_path(settings))}
    if queries.shape[0] > MAX_QUOTA_QUERIES:
        queries = queries[np.linspace(0, queries.shape[0] - 1, MAX_QUOTA_QUERIES).astype(np.int64)]
    lists = propose_all(log, queries, limit)
    search = search_quotas(lists, limit, unit)
    path = save_quotas(quotas_path(settings), search, trained_on=[start.isoformat(), end.isoformat()],
                       contributions=contributions(lists, search.quotas, limit))
    summary: dict[str, Any] = {"quotas": search.quotas, "recall": search.recall, "even_recall": search.even_recall,
                               "queries": search.queries, "path": str(path)}
    if log_run:
        summary["run_id"] = log_quotas(settings, search, path, trained_on=f"{start.isoformat()}/{end.isoformat()}")
    return summary

