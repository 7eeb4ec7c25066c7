"""`freshcart privacy forget`: one shopper's data out of every store, and an audit record of it.

:func:`forget_shopper` removes, for one FreshCart user id (the pseudonym when
``FRESHCART_PSEUDONYMISE`` is on: :func:`resolve_user` maps the shop's raw id first):

- events, rejects, feature rows, training sets, prediction records, feedback labels and monitoring
  reference rows in the data dir's files (:mod:`freshcart.privacy.files`);
- the shopper's entity rows in the online store of the profile (:mod:`freshcart.privacy.online`);
- the stream processor's state of the shopper, local caches and changelog (:mod:`freshcart.privacy.stream_state`).

It then appends an audit record (who, when, which id, what was removed, counts) to
``<data_dir>/privacy/erasures.jsonl`` (mode 0600). Trained models are not retrained and
registered model versions are kept: a model learnt from the shopper's rows stays as it is until
the next training run, which no longer sees them. Kafka topics that are not compacted (events,
events by product, dead letters, predictions) cannot drop single records; they keep the shopper's
records until their retention deletes them.
"""

from __future__ import annotations

import getpass
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from freshcart.privacy.files import forget_in_files
from freshcart.privacy.online import forget_online
from freshcart.privacy.pseudonym import pseudonymiser_for
from freshcart.privacy.stream_state import StreamErasure, check_stopped, forget_stream_state
from freshcart.settings import Settings

AUDIT_FILE = Path("privacy") / "erasures.jsonl"
KEPT = ("trained models and registered model versions (not retrained)",
        "records in the Kafka topics events, events by product, dead letters and predictions, until their retention "
        "deletes them")


@dataclass
class Erasure:
    """What one erasure removed."""

    user_id: int  # FreshCart's id of the shopper (the pseudonym when pseudonymisation is on)
    pseudonymised: bool
    requested_by: str
    at: str
    files: Counter[str] = field(default_factory=Counter)  # rows per folder of the data dir
    online: Counter[str] = field(default_factory=Counter)  # entity keys per feature view
    stream: StreamErasure | None = None
    stream_skipped: bool = False
    kept: tuple[str, ...] = KEPT

    @property
    def total(self) -> int:
        stream = 0 if self.stream is None else sum(self.stream.cache_keys.values()) + self.stream.tombstones
        return sum(self.files.values()) + sum(self.online.values()) + stream

    def record(self) -> dict[str, Any]:
        """The audit record (JSON-ready)."""
        stream = None if self.stream is None else {
            "cache_keys": dict(self.stream.cache_keys), "tombstones": self.stream.tombstones,
            "changelog_partitions": list(self.stream.changelog_partitions)}
        return {"user_id": self.user_id, "pseudonymised": self.pseudonymised, "requested_by": self.requested_by,
                "at": self.at, "files": dict(self.files), "online": dict(self.online), "stream": stream,
                "stream_skipped": self.stream_skipped, "kept": list(self.kept), "models_retrained": False,
                "total": self.total}


def resolve_user(settings: Settings, user: int, is_pseudonym: bool = False) -> int:
    """FreshCart's id of a shopper the shop names by ``user``: its pseudonym when pseudonymisation is on
    (unless ``is_pseudonym``), else ``user`` itself."""
    mapper = None if is_pseudonym else pseudonymiser_for(settings)
    return user if mapper is None else mapper.user_id(user)


def audit_path(settings: Settings) -> Path:
    return settings.data_dir / AUDIT_FILE


def write_audit(settings: Settings, erasure: Erasure) -> Path:
    """Append the erasure's record to the audit file (created with mode 0600)."""
    path = audit_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(json.dumps(erasure.record(), sort_keys=True, default=str) + "\n")
    return path


def forget_shopper(settings: Settings, user_id: int, requested_by: str | None = None,
                   stream: bool = True) -> Erasure:
    """Remove FreshCart user ``user_id`` from every store (see the module docstring) and audit it.

    With ``stream`` the stream processor must be stopped (:class:`~freshcart.privacy.stream_state.StreamRunning`
    otherwise), and it is checked before anything is removed."""
    erasure = Erasure(user_id=user_id, pseudonymised=settings.pseudonymise,
                      requested_by=requested_by or getpass.getuser(),
                      at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if stream:
        check_stopped(settings)
    erasure.files = forget_in_files(settings, user_id)
    erasure.online = forget_online(settings, user_id)
    if stream:
        erasure.stream = forget_stream_state(settings, user_id)
    else:
        erasure.stream_skipped = True
    write_audit(settings, erasure)
    return erasure
