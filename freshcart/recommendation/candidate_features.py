"""The blend's candidates of a replay as rows a model can score: point-in-time features and source ranks.

Each query of a replay (a purchase or add-to-cart by a shopper at ``t``) has the candidate list the
service's blend makes from its sources' proposals (:func:`~freshcart.recommendation.candidate_replay.propose_all`,
the quotas of :mod:`~freshcart.recommendation.quotas`). :func:`blend_candidates` flattens every list
into one row per (query, candidate): the shopper, the product, the time, the candidate's position in
the blend, the source that added it, its rank in every source's proposals, and the label (the
product bought or carted). :func:`candidate_examples` gives each row the candidate's category and
price as the product's latest event strictly before ``t`` shows them, and :func:`candidate_matrix`
joins the feature rows strictly before ``t`` with the training sets' own as-of join
(:func:`~freshcart.features.training_set.join_features`) and builds the propensity model's input
with :func:`~freshcart.training.data.tabular_matrix`: one vectorised pass over all queries at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshcart.features.training_set import asof_indices, join_features
from freshcart.recommendation.candidate_replay import CandidateLists
from freshcart.recommendation.log import EventLog
from freshcart.serving.candidates import blend
from freshcart.training.data import tabular_matrix

UNRANKED = -1.0
"""``rank_in`` of a candidate a source did not propose (trees split it off from the ranks 0, 1, ...)."""
PRICE_COLUMNS = ("product_id", "event_time", "category_id", "price")


@dataclass
class CandidateTable:
    """One row per (query, candidate), queries in the order of the lists, candidates in blend order."""

    names: list[str]
    """The sources, in blend order."""
    query: np.ndarray
    """Index of each row's query in the candidate lists."""
    user_id: np.ndarray
    product_id: np.ndarray
    time_us: np.ndarray
    """The query's time (microseconds); the row's features are those strictly before it."""
    position: np.ndarray
    """0-based position of the candidate in the blend."""
    source: np.ndarray
    """Index (into ``names``) of the source that added the candidate."""
    rank_in: np.ndarray
    """0-based rank of the candidate in each source's proposals (columns: ``names``), UNRANKED if absent."""
    label: np.ndarray
    """1 for the product bought or carted at the query, else 0."""
    targets: np.ndarray
    """The product bought or carted at each query (one per query)."""
    kinds: np.ndarray
    """Event type code (``log.kind``) of each query."""

    @property
    def queries(self) -> int:
        return int(self.targets.shape[0])

    @property
    def offsets(self) -> np.ndarray:
        """Row offsets of each query: its rows are ``offsets[q]:offsets[q + 1]``."""
        out = np.zeros(self.queries + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.query, minlength=self.queries), out=out[1:])
        return out


def blend_candidates(log: EventLog, lists: CandidateLists, quotas: dict[str, int] | None,
                     limit: int = 100) -> CandidateTable:
    """The blend of ``limit`` candidates of every query of ``lists`` (with ``quotas``), as rows."""
    if len(lists) == 0:
        raise ValueError("no queries in the candidate lists: the replayed period has no purchases or carts")
    query, products, source, ranks = [], [], [], []
    for number, (proposals, exclude) in enumerate(zip(lists.proposals, lists.excluded)):
        blended = blend(list(zip(lists.names, proposals)), limit, exclude, quotas, tag=False)
        ids, added_by, rank_in = list_sources(lists.names, proposals, exclude, blended)
        query.append(np.full(ids.shape[0], number, dtype=np.int64))
        products.append(ids)
        source.append(added_by)
        ranks.append(rank_in)
    query_arr = _cat(query, np.int64)
    product_arr = _cat(products, np.int64)
    targets = np.asarray(lists.targets, dtype=np.int64)
    users = log.user_ids[log.user[lists.positions]]
    times = log.time[lists.positions]
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(np.bincount(query_arr, minlength=len(lists)), out=offsets[1:])
    return CandidateTable(
        names=list(lists.names), query=query_arr, user_id=users[query_arr], product_id=product_arr,
        time_us=times[query_arr], position=np.arange(query_arr.shape[0], dtype=np.int64) - offsets[query_arr],
        source=_cat(source, np.int64),
        rank_in=np.concatenate(ranks).astype(np.float32) if ranks else np.empty((0, len(lists.names)), np.float32),
        label=(product_arr == targets[query_arr]).astype(np.int8), targets=targets,
        kinds=log.kind[lists.positions])


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype=dtype)


def list_sources(names: list[str], proposals: list[list[int]], exclude: set[int],
                 blended: dict[int, list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One blended candidate list's source features, the same in the replay and in ``/recommend``.

    ``proposals``: each source's (of ``names``, in blend order) product ids, best first, as it proposed
    them; ``blended``: :func:`~freshcart.serving.candidates.blend`'s product -> sources, in blend order.
    Returns the products in blend order, the index in ``names`` of the source that added each, and each
    one's 0-based rank in every source's proposals once the ``exclude``d products are left out
    (``UNRANKED`` where a source did not propose it; columns: ``names``).
    """
    source_of = {name: i for i, name in enumerate(names)}
    rank_of = []
    for proposed in proposals:
        kept = [p for p in proposed if p not in exclude]
        rank_of.append({p: r for r, p in reversed(list(enumerate(kept)))})
    products = np.fromiter(blended, dtype=np.int64, count=len(blended))
    added_by = np.fromiter((source_of[found[0]] for found in blended.values()), dtype=np.int64, count=len(blended))
    ranks = np.array([[table.get(product, UNRANKED) for table in rank_of] for product in blended],
                     dtype=np.float32).reshape(len(blended), len(names))
    return products, added_by, ranks


def request_table(names: list[str], proposals: list[list[int]], exclude: set[int], blended: dict[int, list[str]],
                  user_id: int, time_us: int) -> CandidateTable:
    """The candidates of one recommendation request as a one-query table (label unknown: 0)."""
    products, added_by, ranks = list_sources(names, proposals, exclude, blended)
    n = products.shape[0]
    return CandidateTable(
        names=list(names), query=np.zeros(n, dtype=np.int64), user_id=np.full(n, user_id, dtype=np.int64),
        product_id=products, time_us=np.full(n, time_us, dtype=np.int64), position=np.arange(n, dtype=np.int64),
        source=added_by, rank_in=ranks, label=np.zeros(n, dtype=np.int8), targets=np.asarray([-1], dtype=np.int64),
        kinds=np.asarray([-1], dtype=np.int8))


def candidate_examples(table: CandidateTable, events: pa.Table) -> pa.Table:
    """The rows as training-set examples: ``event_time`` the query's time, the candidate's ``category_id``
    and ``price`` those of the product's latest event strictly before it (null if it had none).

    ``events``: canonical events (at least ``product_id``, ``event_time``, ``category_id``, ``price``)
    covering the time before the queries.
    """
    missing = [c for c in PRICE_COLUMNS if c not in events.column_names]
    if missing:
        raise ValueError(f"events lack the column(s) {', '.join(missing)}; pass canonical events (freshcart.schema)")
    events = events.select(list(PRICE_COLUMNS))
    event_us = pc.cast(events["event_time"], pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
    # "<= t - 1 µs": the latest event strictly before the query (an event at t itself is not seen).
    index = asof_indices([events["product_id"].to_numpy()], event_us, [table.product_id], table.time_us - 1,
                         np.iinfo(np.int64).max // 4)
    taken = events.take(pa.array(index, mask=index < 0))
    return pa.table({
        "event_id": pa.array([f"q{q}" for q in table.query.tolist()]),
        "event_time": pa.array(table.time_us, pa.timestamp("us", tz="UTC")),
        "user_id": pa.array(table.user_id, pa.int64()),
        "product_id": pa.array(table.product_id, pa.int64()),
        "category_id": pc.cast(taken["category_id"], pa.int64()),
        "price": pc.cast(taken["price"], pa.float64()),
        "label": pa.array(table.label, pa.int64()),
    })


def candidate_rows(table: CandidateTable, events: pa.Table, views: dict[str, pa.Table]) -> pa.Table:
    """The rows with every feature as of strictly before the query (the training sets' join)."""
    return join_features(candidate_examples(table, events), views)


def candidate_matrix(table: CandidateTable, events: pa.Table, views: dict[str, pa.Table]
                     ) -> tuple[np.ndarray, list[str]]:
    """The propensity model's input of every row (:func:`tabular_matrix`) and its column names."""
    return tabular_matrix(candidate_rows(table, events, views))


def source_columns(names: list[str]) -> list[str]:
    """Names of the candidate-source features :func:`source_matrix` adds."""
    return ["candidate_position", "candidate_source", "candidate_sources",
            *(f"candidate_rank_{name}" for name in names)]


def source_matrix(table: CandidateTable) -> np.ndarray:
    """Position in the blend, the adding source, how many sources proposed it, the rank in each source."""
    proposed = (table.rank_in >= 0).sum(axis=1)
    return np.column_stack([table.position.astype(np.float32), table.source.astype(np.float32),
                            proposed.astype(np.float32), table.rank_in]).astype(np.float32)
