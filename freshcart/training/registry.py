"""MLflow tracking and the model registry: where runs go, the registered model and its aliases.

Local profile: tracking and registry in SQLite under ``<data_dir>/mlflow``;
production: in the PostgreSQL database ``freshcart_mlflow``. Artifacts (models,
plots) go to ``FRESHCART_MLFLOW_ARTIFACT_ROOT`` (default ``<data_dir>/mlflow/artifacts``).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from freshcart.credentials import export_mlflow_credentials
from freshcart.settings import REPO_ROOT, Settings

CHAMPION, CHALLENGER = "champion", "challenger"
ENVIRONMENT_PACKAGES = ("mlflow", "xgboost", "torch", "numpy", "pandas", "pyarrow", "scikit-learn", "feast")
log = logging.getLogger("freshcart.training")


class RegistryError(RuntimeError):
    """The registry lacks what an operation needs; the message says what and what to do."""


def artifact_root(settings: Settings) -> Path:
    """Folder of the experiment's artifacts."""
    return settings.mlflow_artifact_root or settings.data_dir / "mlflow" / "artifacts"


def connect(settings: Settings) -> MlflowClient:
    """Point MLflow at the profile's tracking store and experiment; returns a client for the registry."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    export_mlflow_credentials(uri, settings.mlflow_admin_password.get_secret_value()
                              if settings.mlflow_admin_password else None)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is None:
        root = artifact_root(settings)
        root.mkdir(parents=True, exist_ok=True)
        client.create_experiment(settings.mlflow_experiment, artifact_location=root.resolve().as_uri())
    mlflow.set_experiment(settings.mlflow_experiment)
    return client


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version holding ``alias``, or None when no version holds it (or the model does not exist)."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def register_version(client: MlflowClient, name: str, logged: Any) -> ModelVersion:
    """A new version of the registered model ``name`` from a logged model (``log_model``'s result).

    The registered model is created on first use; two trainings registering at once both succeed.
    """
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    return client.create_model_version(name, source=logged.model_uri, run_id=logged.run_id,
                                       model_id=logged.model_id, await_creation_for=60)


def set_version_tags(client: MlflowClient, version: ModelVersion, tags: dict[str, Any]) -> None:
    """Tag a model version (values as strings, JSON for containers)."""
    for key, value in tags.items():
        text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        client.set_model_version_tag(version.name, version.version, key, text)


def git_commit() -> str:
    """The checkout's commit (with '+dirty' for local changes), or 'unknown' outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_tags(device: str) -> dict[str, str]:
    """Python, platform, CPU count, device, package versions and the git commit of this run."""
    tags = {"env.python": sys.version.split()[0], "env.platform": platform.platform(),
            "env.cpu_count": str(os.cpu_count()), "env.device": device, "env.git_commit": git_commit()}
    for package in ENVIRONMENT_PACKAGES:
        try:
            tags[f"env.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return tags


def pip_requirements() -> list[str]:
    """Pinned requirements of the registered model's environment (the packages that load and run it)."""
    pins = []
    for package in ("mlflow", "xgboost", "torch", "numpy", "pandas", "pyarrow", "scikit-learn"):
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return pins
