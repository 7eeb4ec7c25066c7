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
    source_of = {name: i for i, name in enumerate(lists.names)}
    query, products, position, source, ranks = [], [], [], [], []
    for number, (proposals, exclude) in enumerate(zip(lists.proposals, lists.excluded)):
        blended = blend(list(zip(lists.names, proposals)), limit, exclude, quotas, tag=False)
        rank_of = []
        for proposed in proposals:
            kept = [p for p in proposed if p not in exclude]
            rank_of.append({p: r for r, p in reversed(list(enumerate(kept)))})
        for place, (product, names) in enumerate(blended.items()):
            query.append(number)
            products.append(product)
            position.append(place)
            source.append(source_of[names[0]])
            ranks.append([float(table.get(product, UNRANKED)) for table in rank_of])
    query_arr = np.asarray(query, dtype=np.int64)
    product_arr = np.asarray(products, dtype=np.int64)
    targets = np.asarray(lists.targets, dtype=np.int64)
    users = log.user_ids[log.user[lists.positions]]
    times = log.time[lists.positions]
    return CandidateTable(
        names=list(lists.names), query=query_arr, user_id=users[query_arr], product_id=product_arr,
        time_us=times[query_arr], position=np.asarray(position, dtype=np.int64),
        source=np.asarray(source, dtype=np.int64),
        rank_in=np.asarray(ranks, dtype=np.float32).reshape(-1, len(lists.names)),
        label=(product_arr == targets[query_arr]).astype(np.int8), targets=targets,
        kinds=log.kind[lists.positions])


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
