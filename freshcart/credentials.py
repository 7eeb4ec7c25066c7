"""Credentials of the servers FreshCart runs: generated at a server's first start, kept one file per
secret under ``<data_dir>/secrets`` (mode 0600), or taken from the environment when given.

The settings fields named in :data:`SECRET_FIELDS` are filled from these files by
:func:`freshcart.settings.load_settings` when the environment leaves them unset; a server's
``start`` calls :func:`ensure_secrets` first, so a missing one is generated before anyone needs it.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

SECRET_FIELDS = (
    "redis_password", "postgres_password", "kafka_admin_password", "kafka_producer_password",
    "kafka_stream_password", "kafka_serving_password", "kafka_monitoring_password", "serving_api_key",
    "mlflow_admin_password",
)
"""Settings fields that hold a server's secret; each one's file under the secrets dir has the field's name."""

KAFKA_ROLES = {
    "admin": "freshcart-admin",
    "producer": "freshcart-producer",
    "stream": "freshcart-stream",
    "serving": "freshcart-serving",
    "monitoring": "freshcart-monitoring",
}
"""Kafka SASL/SCRAM principals, one per role: admin (the broker itself, topics and ACLs), producer of
events, stream processor, scoring service (prediction log) and monitoring (prediction ingest, lag, DLQ)."""


MLFLOW_ADMIN_USER = "admin"
"""The admin user of the MLflow tracking server's basic-auth app."""


class CredentialError(RuntimeError):
    """A secret file cannot be read or written; the message names the file and what to do."""


def read_secrets(secrets_dir: Path) -> dict[str, str]:
    """The secrets stored under ``secrets_dir`` (field name -> value); absent files are left out."""
    found: dict[str, str] = {}
    for name in SECRET_FIELDS:
        path = secrets_dir / name
        try:
            value = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise CredentialError(f"cannot read the secret {path} ({exc}); check its owner and mode 0600") from None
        if value:
            found[name] = value
    return found


def ensure_secrets(secrets_dir: Path, names: Iterable[str], given: dict[str, str | None]) -> dict[str, str]:
    """The values of ``names``: ``given`` (from the environment) when set, else the stored file, else a new
    random one written with mode 0600. A given value is stored too, so that later processes find it."""
    unknown = sorted(set(names) - set(SECRET_FIELDS))
    if unknown:
        raise ValueError(f"unknown secret(s) {unknown}; known: {', '.join(SECRET_FIELDS)}")
    stored = read_secrets(secrets_dir) if secrets_dir.is_dir() else {}
    values: dict[str, str] = {}
    for name in names:
        value = given.get(name) or stored.get(name) or secrets.token_urlsafe(32)
        if stored.get(name) != value:
            write_secret(secrets_dir / name, value)
        values[name] = value
    return values


def write_secret(path: Path, value: str) -> None:
    """Write one secret, readable by its owner only (folder 0700, file 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, value.encode("utf-8"))
    finally:
        os.close(descriptor)


def export_mlflow_credentials(tracking_uri: str, password: str | None) -> None:
    """Let MLflow's HTTP client log in to a tracking server with basic auth (it reads
    MLFLOW_TRACKING_USERNAME/PASSWORD at each request); a user already in the environment is kept."""
    if password and tracking_uri.startswith(("http://", "https://")) and "MLFLOW_TRACKING_USERNAME" not in os.environ:
        os.environ["MLFLOW_TRACKING_USERNAME"] = MLFLOW_ADMIN_USER
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; a name or 0.0.0.0 opens the server to the network."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
