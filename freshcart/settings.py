"""FreshCart settings: one typed object, read from the environment, validated at load.

Every field can be set with an environment variable ``FRESHCART_<FIELD>`` (upper
case), e.g. ``FRESHCART_PROFILE=production`` or ``FRESHCART_KAFKA_PORT=29092``.
Nothing is read at import time: call :func:`load_settings`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from freshcart.credentials import KAFKA_ROLES, SECRET_FIELDS, CredentialError, read_secrets
from freshcart.settings_fields import (
    REPO_ROOT, CoreFields, EventFields, KafkaFields, MonitoringFields, SecurityFields, ServerFields, ServingFields,
    StreamFields, TrainingFields,
)

ENV_PREFIX = "FRESHCART_"
__all__ = ["REPO_ROOT", "ConfigError", "Settings", "load_settings", "with_stored_secrets"]


class ConfigError(ValueError):
    """A setting has a bad value; the message names the variable and the value."""


class Settings(EventFields, MonitoringFields, ServingFields, TrainingFields,
               ServerFields, StreamFields, KafkaFields, SecurityFields, CoreFields, BaseSettings):
    """The effective configuration of one FreshCart process (its fields: :mod:`freshcart.settings_fields`)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, frozen=True
    )

    @model_validator(mode="before")
    @classmethod
    def _serving_host_follows_bind_host(cls, data: Any) -> Any:
        if isinstance(data, dict) and "serving_host" not in data and data.get("bind_host"):
            data = {**data, "serving_host": data["bind_host"]}
        return data

    # Derived values -------------------------------------------------------------
    @property
    def secrets_path(self) -> Path:
        """The folder of the generated secrets."""
        return self.secrets_dir or self.data_dir / "secrets"

    def kafka_credentials(self, role: str) -> tuple[str, str] | None:
        """(principal, password) of a Kafka role, or None when credentials are off."""
        if not self.auth:
            return None
        if role not in KAFKA_ROLES:
            raise ConfigError(f"unknown Kafka role {role!r}; known: {', '.join(KAFKA_ROLES)}")
        secret = getattr(self, f"kafka_{role}_password")
        if secret is None:
            raise ConfigError(
                f"FRESHCART_KAFKA_{role.upper()}_PASSWORD is not set and {self.secrets_path / f'kafka_{role}_password'} "
                "does not exist: start the broker (`freshcart services up`), point FRESHCART_SECRETS_DIR at its "
                "secrets, or set FRESHCART_AUTH=false for a broker without credentials."
            )
        return KAFKA_ROLES[role], secret.get_secret_value()

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"{self.kafka_host}:{self.kafka_port}"

    @property
    def online_redis_url(self) -> str:
        """The online store's Redis URL, with the password (when set) unless the URL carries its own."""
        url = self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"
        scheme, sep, rest = url.partition("://")
        if self.redis_password is None or not sep or "@" in rest:
            return url
        return f"{scheme}://:{quote(self.redis_password.get_secret_value(), safe='')}@{rest}"

    def postgres_dsn(self, database: str = "freshcart") -> str:
        """A PostgreSQL URL (with the secret, if any) for one of the project's databases."""
        if self.postgres_url is not None and database == "freshcart":
            return self.postgres_url.get_secret_value()
        password = f":{self.postgres_password.get_secret_value()}" if self.postgres_password else ""
        return f"postgresql://{self.postgres_user}{password}@127.0.0.1:{self.postgres_port}/{database}"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        if self.profile == "production":
            return self.postgres_dsn("freshcart_mlflow").replace("postgresql://", "postgresql+psycopg://", 1)
        return f"sqlite:///{self.data_dir / 'mlflow' / 'mlflow.db'}"

    @property
    def simulation_dir(self) -> Path:
        """Simulator output: events by event date, and the true purchase probabilities in ``_truth``."""
        return self.data_dir / "simulation"

    @property
    def landing_dir(self) -> Path:
        """Raw records as they arrived, ``arrival_date=YYYY-MM-DD/*.jsonl|*.parquet``."""
        return self.data_dir / "landing"

    @property
    def offline_dir(self) -> Path:
        """The offline store: validated events and feature tables."""
        return self.data_dir / "offline"

    @property
    def offline_events_dir(self) -> Path:
        """Canonical events by event date (``event_date=YYYY-MM-DD/data.parquet``)."""
        return self.offline_dir / "events"

    @property
    def feature_tables_dir(self) -> Path:
        """Batch feature rows, one folder per feature view, partitioned by event date."""
        return self.offline_dir / "features"

    @property
    def feature_repo_dir(self) -> Path:
        """The Feast repository (``feature_repo/`` of the checkout)."""
        return REPO_ROOT / "feature_repo"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def child_env(self, names: Iterable[str]) -> dict[str, str]:
        """This process's environment plus the ``FRESHCART_*`` variables that give a child process
        these settings' values of ``names`` (unset ones are left out)."""
        env = dict(os.environ)
        for name in names:
            value = getattr(self, name)
            if value is not None:
                value = value.get_secret_value() if isinstance(value, SecretStr) else value
                env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
        return env

    def masked(self) -> dict[str, Any]:
        """Effective settings for display, secrets masked (``**********``)."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            shown[name] = "**********" if isinstance(value, SecretStr) else value
        shown["bootstrap_servers"] = self.bootstrap_servers
        shown["online_redis_url"] = _mask_url(self.online_redis_url)
        shown["postgres_dsn"] = _mask_url(self.postgres_dsn())
        shown["tracking_uri"] = _mask_url(self.tracking_uri)
        return shown


def _mask_url(url: str) -> str:
    """Hide the password part of ``scheme://user:password@host``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":**********"
    elif creds:
        creds = "**********"
    return f"{scheme}://{creds}@{host}"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings; a bad value raises :class:`ConfigError` naming the variable."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "?"
            value = error.get("input")
            problems.append(
                f"{ENV_PREFIX}{field.upper()}={value!r}: {error['msg']}"
                if error["type"] != "extra_forbidden"
                else f"{field}: unknown setting (known: {', '.join(Settings.model_fields)})"
            )
        raise ConfigError("invalid FreshCart settings:\n  " + "\n  ".join(problems)) from None
    return with_stored_secrets(settings)


def with_stored_secrets(settings: Settings) -> Settings:
    """``settings`` with every unset secret taken from its file under the secrets dir (credentials on)."""
    if not settings.auth or not settings.secrets_path.is_dir():
        return settings
    try:
        stored = read_secrets(settings.secrets_path)
    except CredentialError as exc:
        raise ConfigError(str(exc)) from None
    missing = {name: SecretStr(value) for name, value in stored.items()
               if name in SECRET_FIELDS and getattr(settings, name) is None}
    return settings.model_copy(update=missing) if missing else settings
