"""The session-kNN index: recent sessions' products, and for each product its most recent sessions.

Session-kNN (Jannach & Ludewig 2017) needs, for the products of the shopper's current
session, the past sessions that hold them. That is not a product-keyed feature (a
session is a set, and its neighbours depend on the whole current set), so it is a small
index per worker instead: the last ``max_sessions`` sessions of ``days`` before ``as_of``,
each as its distinct products, and per product its ``sessions_per_item`` most recent
sessions. :func:`build_session_index` makes it from an :class:`EventLog` (the DAG task, from
the offline events; the replay, at each refresh instant from the events strictly before
it); :meth:`SessionIndex.neighbours` scores the products of similar sessions for a set of
products (the current session comes from the online ``user_session`` features, fresh from
the stream). The index is saved as one Parquet file that the scoring service reloads when
it changes.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from freshcart.recommendation.log import EventLog

DAY_US = 86_400 * 1_000_000
FILE_SCHEMA = pa.schema([pa.field("last_event_us", pa.int64()), pa.field("product_ids", pa.list_(pa.int64()))])


@dataclass(frozen=True)
class SessionIndex:
    """Sessions (oldest first) as lists of product ids, and the inverted index product -> sessions."""

    as_of: int
    offsets: np.ndarray
    """Session ``s`` holds ``products[offsets[s]:offsets[s + 1]]``."""
    products: np.ndarray
    last_event_us: np.ndarray
    keys: np.ndarray
    """The indexed product ids, ascending; product ``keys[j]`` is in sessions ``sessions[item_offsets[j]:...]``."""
    item_offsets: np.ndarray
    sessions: np.ndarray
    """Per product, its most recent sessions first."""

    @property
    def size(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @classmethod
    def of(cls, as_of: int, offsets: np.ndarray, products: np.ndarray, last_event_us: np.ndarray,
           sessions_per_item: int = 100) -> "SessionIndex":
        """The index over sessions given oldest first (``products[offsets[s]:offsets[s + 1]]`` distinct)."""
        owner = np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets))
        order = np.lexsort((-owner, products))  # by product, newest session first
        keys, first, counts = np.unique(products[order], return_index=True, return_counts=True)
        rank = np.arange(order.shape[0]) - np.repeat(first, counts)
        kept = order[rank < sessions_per_item]
        item_offsets = np.zeros(keys.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.minimum(counts, sessions_per_item), out=item_offsets[1:])
        return cls(as_of=as_of, offsets=offsets, products=products, last_event_us=last_event_us, keys=keys,
                   item_offsets=item_offsets, sessions=owner[kept])

    def neighbours(self, items: list[int], limit: int, neighbours: int = 100, sample: int = 1000) -> list[int]:
        """Up to ``limit`` products of the sessions most similar to ``items`` (not ``items``), best first.

        The most recent ``sample`` sessions holding any of ``items`` are scored by the cosine of
        their product sets with ``items``; the ``neighbours`` most similar vote with their similarity
        for each of their products. Ties: the lower product id.
        """
        wanted = np.unique(np.asarray(items, dtype=np.int64))
        if limit <= 0 or self.keys.shape[0] == 0 or wanted.shape[0] == 0:
            return []
        at = np.minimum(np.searchsorted(self.keys, wanted), self.keys.shape[0] - 1)
        known = at[self.keys[at] == wanted]
        if known.shape[0] == 0:
            return []
        found = np.concatenate([self.sessions[self.item_offsets[j]:self.item_offsets[j + 1]] for j in known])
        candidates = np.unique(found)[::-1][:sample]  # session numbers grow with recency
        sizes = self.offsets[candidates + 1] - self.offsets[candidates]
        owner = np.repeat(np.arange(candidates.shape[0]), sizes)
        index = self.offsets[candidates][owner] + np.arange(owner.shape[0]) - (np.cumsum(sizes) - sizes)[owner]
        product = self.products[index]
        overlap = np.bincount(owner, weights=np.isin(product, wanted), minlength=candidates.shape[0])
        similarity = overlap / np.sqrt(np.maximum(sizes, 1) * wanted.shape[0])
        chosen = np.argsort(-similarity, kind="stable")[:neighbours]
        weight = np.zeros(candidates.shape[0])
        weight[chosen] = similarity[chosen]
        keep = ~np.isin(product, wanted) & (weight[owner] > 0)
        ids, inverse = np.unique(product[keep], return_inverse=True)
        scores = np.bincount(inverse, weights=weight[owner][keep], minlength=ids.shape[0])
        return ids[np.lexsort((ids, -scores))][:limit].tolist()

    def save(self, path: Path) -> Path:
        """Write the sessions to ``path`` (replaced atomically: a reader sees the old or the new file)."""
        lists = pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)), pa.array(self.products, pa.int64()))
        table = pa.Table.from_arrays([pa.array(self.last_event_us, pa.int64()), lists], schema=FILE_SCHEMA)
        table = table.replace_schema_metadata({"as_of_us": str(self.as_of)})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{uuid.uuid4().hex}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
        return path


def load_session_index(path: Path, sessions_per_item: int = 100) -> SessionIndex:
    """The index saved at ``path`` by :meth:`SessionIndex.save`."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"{path}: not a session index ({exc}); rebuild it with the materialize_features DAG "
                         "(task build_cooccurrence)") from None
    if table.schema.remove_metadata() != FILE_SCHEMA:
        raise ValueError(f"{path}: columns {table.schema.names}, expected {FILE_SCHEMA.names}; rebuild it")
    lists = table["product_ids"].combine_chunks()
    as_of = int((table.schema.metadata or {}).get(b"as_of_us", b"0"))
    return SessionIndex.of(as_of, lists.offsets.to_numpy().astype(np.int64) - int(lists.offsets[0].as_py()),
                           lists.flatten().to_numpy().astype(np.int64),
                           table["last_event_us"].to_numpy(), sessions_per_item)


def build_session_index(log: EventLog, as_of: int, days: int = 2, max_sessions: int = 200_000,
                        sessions_per_item: int = 100) -> SessionIndex:
    """The last ``max_sessions`` sessions with events in ``[as_of - days, as_of)``, from those events only."""
    start, stop = log.position(as_of - days * DAY_US), log.position(as_of)
    positions = np.arange(start, stop)
    session, item = log.session[positions], log.item[positions]
    pairs, first = np.unique(session * np.int64(log.products) + item, return_index=True)
    pair_session, pair_item, first_at = pairs // log.products, pairs % log.products, positions[first]
    ids, owner = np.unique(pair_session, return_inverse=True)
    last = np.full(ids.shape[0], np.iinfo(np.int64).min)
    np.maximum.at(last, np.searchsorted(ids, session), log.time[positions])
    recent = np.argsort(last, kind="stable")[-max_sessions:]  # oldest first
    number = np.full(ids.shape[0], -1)
    number[recent] = np.arange(recent.shape[0])
    keep = number[owner] >= 0
    order = np.lexsort((first_at[keep], number[owner][keep]))  # by session, products in the order first seen
    products = log.product_ids[pair_item[keep][order]].astype(np.int64)
    offsets = np.zeros(recent.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(number[owner][keep], minlength=recent.shape[0]), out=offsets[1:])
    return SessionIndex.of(as_of, offsets, products, last[recent], sessions_per_item)
