"""Sessions and ids for sources that have none: a 30-minute inactivity gap per user,
and a deterministic event id from a hash of the source row."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class Sessionizer:
    """Assigns session ids by an inactivity gap, streaming: state carries across chunks.

    A user's session continues while consecutive events are at most ``gap_seconds``
    apart. The id is ``{prefix}-{user_id}-{session start, Unix seconds}``, so a
    re-run over the same rows yields the same ids. Memory grows with the number of
    users, not of rows. Rows of one user are expected in time order across chunks
    (a row earlier than the user's last seen event joins the current session).
    """

    def __init__(self, gap_seconds: int, prefix: str) -> None:
        self.gap_us = int(gap_seconds) * 1_000_000
        self.prefix = prefix
        self._last: dict[int, tuple[int, int]] = {}  # user -> (last event us, session start us)

    def assign(self, user_ids: np.ndarray, times_us: np.ndarray) -> pa.Array:
        """Session ids for rows given as parallel arrays of user ids and event times (µs)."""
        n = len(user_ids)
        if n == 0:
            return pa.array([], pa.string())
        order = np.lexsort((times_us, user_ids))
        users, times = user_ids[order], times_us[order]
        first_of_user = np.ones(n, dtype=bool)
        first_of_user[1:] = users[1:] != users[:-1]
        new = first_of_user.copy()
        new[1:] |= (times[1:] - times[:-1]) > self.gap_us
        start = np.where(new, times, -1)
        for i in np.flatnonzero(first_of_user):
            state = self._last.get(int(users[i]))
            if state is not None and times[i] - state[0] <= self.gap_us:
                new[i] = False
                start[i] = state[1]
        # Forward-fill each session's start over its rows (every user's first row has one).
        filled = np.where(start >= 0, np.arange(n), 0)
        np.maximum.accumulate(filled, out=filled)
        start = start[filled]
        last_of_user = np.ones(n, dtype=bool)
        last_of_user[:-1] = users[:-1] != users[1:]
        for i in np.flatnonzero(last_of_user):
            user = int(users[i])
            previous = self._last.get(user)
            last_seen = max(int(times[i]), previous[0]) if previous else int(times[i])
            self._last[user] = (last_seen, int(start[i]))
        ids = pc.binary_join_element_wise(
            self.prefix,
            pc.cast(pa.array(users), pa.string()),
            pc.cast(pa.array(start // 1_000_000), pa.string()),
            "-",
        )
        restore = np.empty(n, dtype=np.int64)
        restore[order] = np.arange(n)
        return ids.take(pa.array(restore))


def row_hash_ids(columns: list[pa.Array], salt: str) -> pa.Array:
    """Deterministic event ids: 24 hex chars of BLAKE2b over the row's source text."""
    text = [pc.fill_null(pc.cast(column, pa.string()), "") for column in columns]
    joined = pc.binary_join_element_wise(pa.scalar(salt), *text, "\x1f")
    return pa.array(
        [hashlib.blake2b(value.encode(), digest_size=12).hexdigest() for value in joined.to_pylist()],
        pa.string(),
    )
