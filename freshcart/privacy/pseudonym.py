"""Pseudonymised shoppers: a keyed hash maps a source's user id to the user id FreshCart stores.

With ``FRESHCART_PSEUDONYMISE=true`` every edge that takes user ids in (``ingest-file``,
the landing zone writers, the Kafka producer helper, the scoring service's requests)
replaces each raw id by ``HMAC-SHA-256(key, decimal text of the id)``, its first 8 bytes
read big-endian with the top bit cleared: a positive int64 (0 becomes 1). The same raw id
always gives the same pseudonym for one key; without the key the raw id cannot be
recovered or tested for.

The key is ``FRESHCART_ID_KEY``. When it is not set, one is generated at first use
(32 random bytes, hex) into ``<data_dir>/secrets/id_key`` with mode 0600, created
exclusively so that processes racing to create it end up with the same key, and
every later process sharing the data dir reads it. Processes that do not share the
data dir (a scoring container, another host) must be given the same key in
``FRESHCART_ID_KEY``; losing the key makes every stored pseudonym unreachable from a
raw id (erasure by raw id, serving the same shopper), so keep a copy with the other secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshcart.settings import Settings

log = logging.getLogger(__name__)
KEY_FILE = Path("secrets") / "id_key"
MIN_KEY_CHARS = 16
_POSITIVE = (1 << 63) - 1
_INT64_MIN = -(1 << 63)


class PseudonymKeyError(ValueError):
    """The pseudonymisation key is unusable; the message names the setting or the file."""


def as_user_id(raw: Any) -> int | None:
    """The 64-bit integer a raw id stands for (an int, or its decimal text), None when it is no valid id.

    Only valid ids are mapped: an invalid one stays as it is, so a record that validation would reject
    is still rejected after mapping."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, np.integer)):
        value = int(raw)
    elif isinstance(raw, (str, bytes)):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        text = text.strip()
        body = text[1:] if text[:1] == "-" else text
        if not (body.isascii() and body.isdigit()) or len(body) > 19:
            return None
        value = int(text)
    else:
        return None
    return value if _INT64_MIN <= value <= _POSITIVE else None


class Pseudonymiser:
    """Raw user ids -> pseudonyms under one key (a small cache makes repeated ids cheap)."""

    def __init__(self, key: bytes, cache_size: int = 1 << 20) -> None:
        if len(key) < MIN_KEY_CHARS:
            raise PseudonymKeyError(f"the pseudonymisation key has {len(key)} bytes; give at least {MIN_KEY_CHARS}")
        self._key = key
        self._cache: dict[int, int] = {}
        self._cache_size = cache_size

    def user_id(self, raw: int) -> int:
        """The pseudonym of one raw id (a 64-bit integer)."""
        found = self._cache.get(raw)
        if found is None:
            digest = hmac.new(self._key, str(int(raw)).encode(), hashlib.sha256).digest()
            found = int.from_bytes(digest[:8], "big") & _POSITIVE or 1
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[raw] = found
        return found

    def maybe(self, raw: Any) -> Any:
        """The pseudonym of ``raw`` when it is a valid id (int or decimal text), else ``raw`` unchanged."""
        value = as_user_id(raw)
        return raw if value is None else self.user_id(value)

    def user_ids(self, column: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The pseudonyms of a column of raw ids (int64 or text; nulls stay null), as int64.

        Each distinct id is hashed once."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        distinct = pc.unique(column)
        mapped = pa.array([None if value is None else self.user_id(value) for value in distinct.to_pylist()],
                          pa.int64())
        return pc.take(mapped, pc.index_in(column, value_set=distinct))

    def table(self, table: pa.Table, column: str = "user_id") -> pa.Table:
        """``table`` with ``column`` replaced by its pseudonyms: an integer column as int64; a text column
        (a file's raw cells) as text, where a cell is a valid id (other cells are left as they are)."""
        if column not in table.column_names:
            return table
        values = table[column]
        if pa.types.is_integer(values.type):
            mapped: pa.Array = self.user_ids(pc.cast(values, pa.int64()))
        else:
            text = pc.cast(values, pa.string()).combine_chunks()
            distinct = pc.unique(text)
            replaced = [None if v is None else str(self.maybe(v)) for v in distinct.to_pylist()]
            mapped = pc.take(pa.array(replaced, pa.string()), pc.index_in(text, value_set=distinct))
        return table.set_column(table.column_names.index(column), column, mapped)

    def record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of one record with ``user_id`` replaced (a blank or absent one is left as it is)."""
        row = dict(record)
        if "user_id" in row:
            row["user_id"] = self.maybe(row["user_id"])
        return row

    def message(self, key: bytes | None, value: bytes) -> tuple[bytes | None, bytes]:
        """One Kafka event message (key: the user id; value: its JSON) with the user id replaced.

        A value that is not a JSON object with a user id cannot be mapped; its key is mapped and the value
        is sent as it is (the stream processor dead-letters it)."""
        if key is not None:
            key = str(self.maybe(key.decode("utf-8", "replace"))).encode()
        try:
            record = json.loads(value)
        except (ValueError, UnicodeDecodeError):
            return key, value
        if not isinstance(record, dict) or as_user_id(record.get("user_id")) is None:
            return key, value
        mapped = self.record(record)
        return key, json.dumps(mapped, separators=(",", ":"), ensure_ascii=False).encode()

    def messages(self, messages: Iterable[tuple[bytes | None, bytes]]) -> Iterable[tuple[bytes | None, bytes]]:
        for key, value in messages:
            yield self.message(key, value)


def key_path(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE


def load_key(settings: Settings, create: bool = True) -> bytes:
    """``FRESHCART_ID_KEY``, else the key file of the data dir (generated on first use when ``create``)."""
    if settings.id_key is not None:
        key = settings.id_key.get_secret_value().encode()
        if len(key) < MIN_KEY_CHARS:
            raise PseudonymKeyError(f"FRESHCART_ID_KEY has {len(key)} characters; give at least {MIN_KEY_CHARS} "
                                    f"(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        return key
    path = key_path(settings)
    if not path.exists():
        if not create:
            raise PseudonymKeyError(f"no pseudonymisation key: FRESHCART_ID_KEY is unset and {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
            log.warning("generated the pseudonymisation key %s (mode 0600); every process that maps shopper ids "
                        "must share it: set FRESHCART_ID_KEY to its content where the data dir is not shared", path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PseudonymKeyError(f"{path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")
    key = path.read_text().strip().encode()
    if len(key) < MIN_KEY_CHARS:
        raise PseudonymKeyError(f"{path} holds {len(key)} characters; give at least {MIN_KEY_CHARS} or delete it "
                                "to generate a new key (which changes every pseudonym)")
    return key


def pseudonymiser_for(settings: Settings) -> Pseudonymiser | None:
    """The settings' pseudonymiser, or None when ``FRESHCART_PSEUDONYMISE`` is off."""
    if not settings.pseudonymise:
        return None
    return Pseudonymiser(load_key(settings))
