"""The Feast feature store of a FreshCart profile: its config, its environment, `feast` runs.

``feature_repo/`` holds the YAML files Feast reads: ``feature_store.yaml`` (local profile,
paths relative to the repository: the checkout's ``data/``, FreshCart's default data dir, so
a plain ``feast`` call works with no environment), ``feature_store.data_dir.yaml`` (local
profile, data in ``$FRESHCART_DATA_DIR``) and ``feature_store.production.yaml``. Their
``${VAR}`` references are expanded by Feast from the environment; :func:`feast_env` computes
those variables (and which YAML to read) from FreshCart's settings, so ``freshcart features
env`` can export them for a shell that runs plain ``feast``, and :func:`feature_store` /
:func:`run_feast` use them directly. The feature definitions call :func:`repo_settings` when
Feast imports them, which stops when the YAML in use and FreshCart's settings disagree.
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
DATA_DIR_YAML = "feature_store.data_dir.yaml"  # local profile, data in $FRESHCART_DATA_DIR instead of data/
DATA_DIR_ENV = "FRESHCART_DATA_DIR"
FEAST_YAML_ENV = "FEAST_FS_YAML_FILE_PATH"  # Feast's own variable: which feature_store.yaml to read
REDIS_ENV = "FRESHCART_FEAST_REDIS"  # production: Feast's Redis connection string (host:port,db=N)
REGISTRY_ENV = "FRESHCART_FEAST_REGISTRY_URL"  # production: SQLAlchemy URL of the SQL registry
_VAR = re.compile(r"\$(\w+|\{[^}]*\})")


class FeatureStoreError(RuntimeError):
    """The Feast repository cannot be used as configured; the message says what to do."""


def feast_dir(settings: Settings) -> Path:
    """Where the local profile keeps Feast's registry and SQLite online store (see feature_store*.yaml)."""
    return settings.data_dir / "feast"


def yaml_path(settings: Settings) -> Path:
    """The YAML file Feast reads for the settings: the profile's, or for the local profile with
    another data dir than the one ``feature_store.yaml`` names, ``feature_store.data_dir.yaml``."""
    default = settings.feature_repo_dir / YAML_FILES[settings.profile]
    if settings.profile == "local" and not _keeps_store_in(default, settings.feature_repo_dir, {},
                                                           feast_dir(settings)):
        return settings.feature_repo_dir / DATA_DIR_YAML
    return default


def _store_paths(path: Path, repo_dir: Path, variables: Mapping[str, str]) -> dict[str, Path]:
    """Where a local YAML keeps the file registry and the SQLite online store, as Feast resolves
    them: ``${VAR}`` expanded from ``variables``, relative paths against the repository folder."""
    raw = yaml.safe_load(_expand(path.read_text(), variables)) or {}
    registry = raw.get("registry")
    online = raw.get("online_store") or {}
    found = {"registry": registry.get("path") if isinstance(registry, dict) else registry,
             "online_store": online.get("path") if isinstance(online, dict) else None}
    return {name: (repo_dir / value).resolve() for name, value in found.items()
            if isinstance(value, str) and "://" not in value and not _VAR.search(value)}


def _keeps_store_in(path: Path, repo_dir: Path, variables: Mapping[str, str], folder: Path) -> bool:
    """Whether the YAML at ``path`` keeps the registry and the online store in ``folder``."""
    paths = _store_paths(path, repo_dir, variables)
    return set(paths) == {"registry", "online_store"} and all(p.parent == folder.resolve() for p in paths.values())


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
    """The variables the YAML of :func:`yaml_path` and the definitions read, that YAML included (secrets too)."""
    env = {
        "FRESHCART_PROFILE": settings.profile,
        DATA_DIR_ENV: str(settings.data_dir.resolve()),
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


def _references(document: Any) -> set[str]:
    """Names of the ``$VAR`` / ``${VAR}`` references in the values of a parsed YAML document."""
    return {m.group(1).strip("{}") for value in _strings(document) for m in _VAR.finditer(value)}


def load_repo_config(settings: Settings) -> Any:
    """The YAML of :func:`yaml_path` as Feast's ``RepoConfig``, expanded with :func:`feast_env` (relative
    paths stay relative: Feast resolves them against ``repo_path``, the repository folder)."""
    from feast.repo_config import FeastConfigError, RepoConfig
    from pydantic import ValidationError

    path = yaml_path(settings)
    raw = yaml.safe_load(_expand(path.read_text(), {**os.environ, **feast_env(settings)}))
    left = sorted(_references(raw))
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

    Called when Feast imports ``feature_repo/``. With no environment the local profile's
    ``feature_store.yaml`` and the settings both name the checkout's ``data/``. Stops with a
    message saying what to do when the YAML in use belongs to another profile, reads a
    variable that is not set, or keeps the registry elsewhere than FRESHCART_DATA_DIR says.
    """
    settings = load_settings()
    path, repo_dir = _yaml_in_use() or (yaml_path(settings), settings.feature_repo_dir)
    hint = 'run `eval "$(freshcart features env)"` first, or use `freshcart features plan|apply`'
    yaml_profile = "production" if path.name == YAML_FILES["production"] else "local"
    if yaml_profile != settings.profile:
        raise SystemExit(f"feature_repo: FRESHCART_PROFILE={settings.profile} but feast reads {path.name}; "
                         f"use `feast -f {yaml_path(settings).name} ...` or {hint}")
    missing = sorted(_references(yaml.safe_load(path.read_text())) - set(os.environ))
    if missing:
        raise SystemExit(f"feature_repo: {', '.join(missing)} not set ({path.name} reads "
                         f"{'them' if len(missing) > 1 else 'it'}, FRESHCART_PROFILE={settings.profile}); {hint}")
    if settings.profile == "local":
        folder = feast_dir(settings)
        if not _keeps_store_in(path, repo_dir, os.environ, folder):
            stores = sorted({str(p.parent) for p in _store_paths(path, repo_dir, os.environ).values()})
            given = os.environ.get(DATA_DIR_ENV)
            source = f"{DATA_DIR_ENV}={given}" if given else f"{DATA_DIR_ENV} not set"
            raise SystemExit(
                f"feature_repo: {path.name} keeps Feast's registry and online store in "
                f"{', '.join(stores) or 'no local file'}, but FreshCart's data dir is {settings.data_dir} "
                f"({source}), whose stores are in {folder}; {hint} (for another data dir it selects "
                f"{DATA_DIR_YAML}), or unset {DATA_DIR_ENV} to use the checkout's data/"
            )
        folder.mkdir(parents=True, exist_ok=True)  # Feast creates the registry file, not its folders
    return settings


def _yaml_in_use() -> tuple[Path, Path] | None:
    """The YAML file and the repository folder of the running ``feast`` command, when Feast's CLI
    imports the repository (Feast's click context holds both)."""
    try:
        import click
    except ImportError:  # pragma: no cover - click comes with feast
        return None
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx else None
    if not isinstance(obj, dict) or not obj.get("FS_YAML_FILE"):
        return None
    repo_dir = Path(obj.get("CHDIR") or Path.cwd())
    found = Path(obj["FS_YAML_FILE"])
    return (found if found.is_absolute() else repo_dir / found), repo_dir


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
