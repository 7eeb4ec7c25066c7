"""The Feast feature store of a FreshCart profile: its config, its environment, `feast` runs.

``feature_repo/`` holds one ``feature_store.yaml`` per profile (``feature_store.yaml`` for
local, ``feature_store.production.yaml`` for production). Their paths and addresses are
``${VAR}`` references that Feast expands from the environment; :func:`feast_env` computes
those variables from FreshCart's settings, so ``freshcart features env`` can export them
for a shell that runs plain ``feast``, and :func:`feature_store` / :func:`run_feast` use
them directly. The feature definitions call :func:`repo_settings` when Feast imports them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import yaml

from freshcart.features.spec import ViewSpec
from freshcart.settings import Settings, load_settings

PROJECT = "freshcart"
YAML_FILES: dict[str, str] = {"local": "feature_store.yaml", "production": "feature_store.production.yaml"}
FEAST_YAML_ENV = "FEAST_FS_YAML_FILE_PATH"  # Feast's own variable: which feature_store.yaml to read
REDIS_ENV = "FRESHCART_FEAST_REDIS"  # production: Feast's Redis connection string (host:port,db=N)
REGISTRY_ENV = "FRESHCART_FEAST_REGISTRY_URL"  # production: SQLAlchemy URL of the SQL registry
_VAR = re.compile(r"\$(\w+|\{[^}]*\})")


class FeatureStoreError(RuntimeError):
    """The Feast repository cannot be used as configured; the message says what to do."""


def feast_dir(settings: Settings) -> Path:
    """Where the local profile keeps Feast's registry and SQLite online store (see feature_store.yaml)."""
    return settings.data_dir / "feast"


def yaml_path(settings: Settings) -> Path:
    """The ``feature_store.yaml`` of the settings' profile."""
    return settings.feature_repo_dir / YAML_FILES[settings.profile]


def redis_connection_string(url: str) -> str:
    """Feast's Redis connection string (``host:port,db=N[,password=...]``) for a ``redis://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise FeatureStoreError(f"FRESHCART_REDIS_URL={url!r}: expected redis://[:password@]host:port/db")
    options = [f"{parts.hostname}:{parts.port or 6379}", f"db={parts.path.strip('/') or 0}"]
    if parts.password:
        options.append(f"password={unquote(parts.password)}")
    if parts.scheme == "rediss":
        options.append("ssl=true")
    return ",".join(options)


def registry_url(settings: Settings) -> str:
    """SQLAlchemy URL of the production SQL registry (psycopg 3 driver)."""
    dsn = settings.postgres_dsn("freshcart")
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", dsn, count=1)


def feast_env(settings: Settings) -> dict[str, str]:
    """The variables the profile's ``feature_store.yaml`` and the definitions read (secrets included)."""
    env = {
        "FRESHCART_PROFILE": settings.profile,
        "FRESHCART_DATA_DIR": str(settings.data_dir.resolve()),
        FEAST_YAML_ENV: str(yaml_path(settings)),
    }
    if settings.profile == "production":
        env[REDIS_ENV] = redis_connection_string(settings.online_redis_url)
        env[REGISTRY_ENV] = registry_url(settings)
    return env


def _expand(text: str, variables: Mapping[str, str]) -> str:
    """``os.path.expandvars`` over ``variables``: ``$NAME`` and ``${NAME}``; unknown names stay."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).strip("{}")
        return variables.get(name, match.group(0))

    return _VAR.sub(replace, text)


def _strings(value: Any) -> list[str]:
    """Every string in a parsed YAML document."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def load_repo_config(settings: Settings) -> Any:
    """The profile's ``feature_store.yaml`` as Feast's ``RepoConfig``, expanded with :func:`feast_env`."""
    from feast.repo_config import FeastConfigError, RepoConfig
    from pydantic import ValidationError

    path = yaml_path(settings)
    raw = yaml.safe_load(_expand(path.read_text(), {**os.environ, **feast_env(settings)}))
    left = sorted({m.group(1).strip("{}") for value in _strings(raw) for m in _VAR.finditer(value)})
    if left:
        raise FeatureStoreError(f"{path}: no value for {', '.join('$' + n for n in left)}")
    try:
        config = RepoConfig(**raw)
    except ValidationError as exc:
        raise FeastConfigError(exc, path) from None
    config.repo_path = settings.feature_repo_dir
    return config


def feature_store(settings: Settings) -> Any:
    """A ``feast.FeatureStore`` for the settings' profile; applies nothing (local: makes ``data/feast/``)."""
    from feast import FeatureStore

    if settings.profile == "local":
        feast_dir(settings).mkdir(parents=True, exist_ok=True)  # Feast creates the registry file, not its folders
    return FeatureStore(repo_path=str(settings.feature_repo_dir), config=load_repo_config(settings))


def feast_command(settings: Settings, *args: str) -> list[str]:
    """argv of the Feast CLI on the profile's repository, e.g. ``feast_command(s, "apply")``."""
    return [sys.executable, "-m", "feast.cli.cli", "--chdir", str(settings.feature_repo_dir),
            "--feature-store-yaml", str(yaml_path(settings)), *args]


def run_feast(settings: Settings, *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the Feast CLI (``plan``, ``apply``, ...) for the profile, in its own process.

    A child process keeps Feast's ``chdir`` and its imports of the repository modules out of
    the caller; the output is Feast's own (captured when ``capture``).
    """
    env = {**os.environ, **feast_env(settings)}
    return subprocess.run(feast_command(settings, *args), env=env, text=True, capture_output=capture,
                          cwd=settings.feature_repo_dir)


def apply(settings: Settings) -> subprocess.CompletedProcess[str]:
    """``feast apply`` for the profile (registry, online tables); output captured."""
    return run_feast(settings, "apply", capture=True)


def repo_settings() -> Settings:
    """Settings for the feature definitions, checked against the YAML that Feast is reading.

    Called when Feast imports ``feature_repo/``: stops with a message saying what to export
    when the YAML's variables are not set, or when FRESHCART_PROFILE names another profile.
    """
    settings = load_settings()
    expected = feast_env(settings)
    missing = [name for name in expected if name not in (FEAST_YAML_ENV, "FRESHCART_PROFILE")
               and name not in os.environ]
    hint = 'run `eval "$(freshcart features env)"` first, or use `freshcart features plan|apply`'
    in_use = _yaml_in_use()
    if in_use is not None and in_use.name != YAML_FILES[settings.profile]:
        raise SystemExit(f"feature_repo: FRESHCART_PROFILE={settings.profile} but feast reads {in_use.name}; "
                         f"use `feast -f {YAML_FILES[settings.profile]} ...` or {hint}")
    if missing:
        raise SystemExit(f"feature_repo: {', '.join(missing)} not set ({YAML_FILES[settings.profile]} reads "
                         f"{'them' if len(missing) > 1 else 'it'}, FRESHCART_PROFILE={settings.profile}); {hint}")
    if settings.profile == "local":
        feast_dir(settings).mkdir(parents=True, exist_ok=True)  # Feast creates the registry file, not its folders
    return settings


def _yaml_in_use() -> Path | None:
    """The YAML file of the running ``feast`` command, when Feast's CLI imports the repository."""
    try:
        import click
    except ImportError:  # pragma: no cover - click comes with feast
        return None
    ctx = click.get_current_context(silent=True)
    found = ctx.find_root().obj.get("FS_YAML_FILE") if ctx and isinstance(ctx.find_root().obj, dict) else None
    return Path(found) if found else None


def feast_dtype(dtype: pa.DataType) -> Any:
    """The Feast type of an Arrow type used by the feature specs."""
    from feast import types as ft

    scalars = {pa.int64(): ft.Int64, pa.int32(): ft.Int32, pa.float64(): ft.Float64,
               pa.float32(): ft.Float32, pa.string(): ft.String, pa.bool_(): ft.Bool}
    if dtype in scalars:
        return scalars[dtype]
    if pa.types.is_timestamp(dtype):
        return ft.UnixTimestamp
    if pa.types.is_list(dtype) and dtype.value_type in scalars:
        return ft.Array(scalars[dtype.value_type])
    raise FeatureStoreError(f"no Feast type for Arrow type {dtype}; extend freshcart.features.store.feast_dtype")


def feast_fields(view: ViewSpec, *, descriptions: bool = True) -> list[Any]:
    """Feast ``Field``s of a view: its keys (Int64), then its features (with their descriptions).

    On-demand views need ``descriptions=False``: Feast compares their declared fields with
    the fields it infers by running the function, and inferred fields have no description.
    """
    from feast import Field
    from feast.types import Int64

    fields = [Field(name=key, dtype=Int64, description=f"join key {key}") for key in view.keys]
    fields += [Field(name=f.name, dtype=feast_dtype(f.dtype), description=f.description if descriptions else "")
               for f in view.features]
    return fields
