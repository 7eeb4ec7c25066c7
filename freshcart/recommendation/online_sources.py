"""What the scoring service's co-occurrence, session-kNN and quota blend read, one state per worker.

- :class:`OnlineNeighbours`: the ``product_neighbours`` view from the online store (SQLite or
  Redis) through the service's Feast reader (its provider's ``online_read``, like every other
  view), each product kept ``ttl`` seconds (the view changes once a day);
- :class:`ReloadingFile`: the session-kNN index and the quotas, files under
  ``<offline_dir>/recommendation/`` that the ``materialize_features`` DAG writes; looked at every
  ``every`` seconds and read again when they change (the old one serves until the new one is read).

A part that cannot be read makes its source propose nothing (logged), never a failed request.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

from freshcart.features import spec
from freshcart.recommendation.session_index import SessionIndex, load_session_index
from freshcart.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
NEIGHBOUR_TTL_SECONDS = 300.0
RETRY_SECONDS = 60.0


def recommendation_dir(settings: Settings) -> Path:
    return settings.offline_dir / "recommendation"


def session_index_path(settings: Settings) -> Path:
    return recommendation_dir(settings) / "session_index.parquet"


def quotas_path(settings: Settings) -> Path:
    return recommendation_dir(settings) / "candidate_quotas.json"


def read_shares(path: Path) -> dict[str, float]:
    """The per-source shares of a quotas file (written by :func:`freshcart.recommendation.quotas.save_quotas`)."""
    try:
        shares = json.loads(path.read_text())["shares"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a quotas file ({type(exc).__name__}: {exc}); choose the quotas again "
                         "(materialize_features DAG, task choose_candidate_quotas)") from None
    if not isinstance(shares, dict) or not all(isinstance(v, (int, float)) and v >= 0 for v in shares.values()):
        raise ValueError(f"{path}: shares {shares!r} must map source names to non-negative numbers")
    return {str(name): float(value) for name, value in shares.items()}


class ReloadingFile(Generic[T]):
    """The content of ``path`` read by ``load``, read again when the file's mtime changes."""

    def __init__(self, path: Path, load: Callable[[Path], T], every: float) -> None:
        self.path, self.load, self.every = path, load, every
        self.value: T | None = None
        self.mtime: float | None = None
        self.checked = float("-inf")
        self._lock = threading.Lock()

    def current(self) -> T | None:
        now = time.monotonic()
        if now - self.checked < self.every:
            return self.value
        with self._lock:
            if now - self.checked < self.every:
                return self.value
            self.checked = now
            try:
                mtime = self.path.stat().st_mtime
            except OSError:
                return self.value
            if mtime != self.mtime:
                try:
                    self.value, self.mtime = self.load(self.path), mtime
                except ValueError as exc:
                    log.warning("%s", exc)
        return self.value


class OnlineNeighbours:
    """``product_neighbours`` rows of the online store, per product, cached ``ttl`` seconds."""

    def __init__(self, reader: Any, ttl: float = NEIGHBOUR_TTL_SECONDS) -> None:
        self.reader, self.ttl = reader, ttl
        self.view: Any = None
        self.failed_at = float("-inf")
        self.rows: dict[int, tuple[float, dict[str, tuple[list[int], list[float]]]]] = {}
        self._lock = threading.Lock()

    def _feature_view(self) -> Any:
        if self.view is None and time.monotonic() - self.failed_at > RETRY_SECONDS:
            try:
                self.view = self.reader.store.get_feature_view(spec.PRODUCT_NEIGHBOURS.name)
            except Exception as exc:  # noqa: BLE001 - not applied yet: the sources propose nothing
                self.failed_at = time.monotonic()
                log.warning("no co-occurrence candidates: the registry has no view %s (%s); run "
                            "`freshcart features apply`", spec.PRODUCT_NEIGHBOURS.name, type(exc).__name__)
        return self.view

    def _read(self, product_ids: list[int]) -> dict[int, dict[str, tuple[list[int], list[float]]]] | None:
        """The rows of ``product_ids`` (a product without a row: no entry), None when nothing could be read."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.type_map import feast_value_type_to_python_type

        view = self._feature_view()
        if view is None:
            return None
        names = spec.PRODUCT_NEIGHBOURS.feature_names
        keys = [EntityKey(join_keys=["product_id"], entity_values=[Value(int64_val=int(p))]) for p in product_ids]
        try:
            rows = self.reader.provider.online_read(self.reader.config, view, keys, list(names))
        except Exception as exc:  # noqa: BLE001 - the store is down: no neighbours this time
            log.warning("co-occurrence candidates not read: %s: %s", type(exc).__name__, str(exc)[:200])
            return None
        out = {}
        for product, (_, stored) in zip(product_ids, rows):
            values = {n: feast_value_type_to_python_type(stored[n]) if stored and n in stored else None
                      for n in names}
            out[product] = {kind: (list(values[f"{kind}_ids"] or []), list(values[f"{kind}_weights"] or []))
                            for kind in ("co_viewed", "co_bought")}
        return out

    def neighbours(self, kind: str, product_ids: list[int]) -> list[tuple[list[int], list[float]]]:
        now = time.monotonic()
        rows = self.rows
        stale = list(dict.fromkeys(p for p in product_ids if p not in rows or now - rows[p][0] > self.ttl))
        if stale:
            fresh = self._read(stale)
            if fresh is not None:
                with self._lock:
                    for product in stale:
                        rows[product] = (now, fresh.get(product, {}))
        return [rows[p][1].get(kind, ([], [])) if p in rows else ([], []) for p in product_ids]


@dataclass
class OnlineCandidateState:
    neighbours: OnlineNeighbours
    sessions: ReloadingFile[SessionIndex]
    quotas: ReloadingFile[dict[str, float]]


_STATES: "weakref.WeakKeyDictionary[Any, OnlineCandidateState]" = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def online_state(reader: Any, settings: Settings) -> OnlineCandidateState:
    """The worker's state for ``reader`` (the service's online feature reader), made on first use."""
    with _STATES_LOCK:
        state = _STATES.get(reader)
        if state is None:
            every = max(settings.serving_index_seconds, 1.0)
            state = OnlineCandidateState(OnlineNeighbours(reader),
                                         ReloadingFile(session_index_path(settings), load_session_index, every),
                                         ReloadingFile(quotas_path(settings), read_shares, every))
            _STATES[reader] = state
        return state
