"""The Feast repository (feature_repo/) in the local profile: apply, plan, serve, and schema errors Feast must catch.

No servers: the local profile keeps its registry and SQLite online store in a temporary
data dir, or in the data/ of a temporary copy of the checkout when plain `feast` runs with
no environment. `feast` runs as a child process, as a user would run it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import click
import pyarrow as pa
import pytest
import yaml
from feast.types import Array, Float64, Int64

from typer.testing import CliRunner

from freshcart.cli import app
from freshcart.features import spec
from freshcart.features.store import (
    FEAST_YAML_ENV, FeatureStoreError, feast_dtype, feast_env, feature_store, load_repo_config,
    redis_connection_string, repo_settings, run_feast, yaml_path,
)
from freshcart.settings import REPO_ROOT, Settings, load_settings

FEATURE_REPO = REPO_ROOT / "feature_repo"


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A local-profile data dir where `freshcart features apply` (feast apply) has run once."""
    settings = load_settings(profile="local", data_dir=tmp_path_factory.mktemp("feast-local"))
    done = run_feast(settings, "apply", capture=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Created feature view user_activity" in done.stdout
    return settings


def projections(store: Any, service: str) -> dict[str, list[str]]:
    """Feature names per view of a feature service."""
    return {p.name: [f.name for f in p.features] for p in store.get_feature_service(service).feature_view_projections}


def test_apply_registers_the_spec(applied: Settings) -> None:
    store = feature_store(applied)
    views = {fv.name: fv for fv in store.list_feature_views()}
    assert set(views) == set(spec.VIEWS) | set(spec.CANDIDATE_VIEWS)
    for name, view in spec.CANDIDATE_VIEWS.items():  # batch rows only, no push source
        fv = views[name]
        assert [f.name for f in fv.features] == view.feature_names
        assert [f.dtype for f in fv.features] == [feast_dtype(f.dtype) for f in view.features]
        assert fv.batch_source.path == str(applied.feature_tables_dir / name) and fv.stream_source is None
    assert views["product_neighbours"].features[1].dtype == Array(Float64)
    for name, view in spec.VIEWS.items():
        fv = views[name]
        assert [f.name for f in fv.features] == view.feature_names
        assert [f.dtype for f in fv.features] == [feast_dtype(f.dtype) for f in view.features]
        assert [f.description for f in fv.features] == [f.description for f in view.features]
        assert sorted(c.name for c in fv.entity_columns) == sorted(view.keys)
        assert fv.ttl == spec.LOOKBACK and fv.description == view.description
        assert fv.batch_source.path == str(applied.feature_tables_dir / name)
        assert fv.stream_source.name == f"{name}_push" and fv.stream_source.description
    assert views["user_session"].features[-1].dtype == Array(Int64)
    assert sorted(views["user_category"].entities) == ["category", "user"]
    odfv = store.get_on_demand_feature_view("propensity_on_demand")
    assert [f.name for f in odfv.features] == spec.ON_DEMAND.feature_names
    assert {f.name for f in odfv.source_request_sources["propensity_request"].schema} == set(spec.REQUEST_FIELDS)
    xgb = projections(store, "propensity_xgboost")
    assert "top_categories_30d" not in xgb["user_activity"] and "last_event_ts" in xgb["user_activity"]
    assert xgb["user_session"] == ["session_events", "session_products", "session_carts"]
    assert xgb["propensity_on_demand"] == spec.ON_DEMAND.feature_names
    assert len(xgb["product_activity"]) == len(spec.PRODUCT_ACTIVITY.features)
    seq = projections(store, "propensity_sequence")
    assert {"recent_product_ids", "recent_category_ids"} <= set(seq["user_session"])
    for service in store.list_feature_services():
        assert service.description
    for entity in store.list_entities():
        assert entity.description


def test_plan_after_apply_changes_nothing(applied: Settings) -> None:
    done = run_feast(applied, "plan", capture=True)
    assert done.returncode == 0, done.stderr
    assert "No changes to registry" in done.stdout and "No changes to infrastructure" in done.stdout


BROKEN = {  # a definition that contradicts the schema, and the message Feast gives
    "key dtype mismatch": (
        "from feast import FeatureView, Field\nfrom feast.types import Int64, String\n"
        "from freshcart_sources import user, user_activity_push\n"
        "broken = FeatureView(name='broken', entities=[user], source=user_activity_push,\n"
        "    schema=[Field(name='user_id', dtype=String), Field(name='views_1h', dtype=Int64)])\n",
        "Entity user has type ValueType.INT64, which does not match the inferred type String",
    ),
    "on-demand dtype mismatch": (
        "from feast import Field\nfrom feast.on_demand_feature_view import on_demand_feature_view\n"
        "from feast.types import String\nimport pandas as pd\n"
        "from freshcart_views import propensity_request, user_activity\n"
        "@on_demand_feature_view(sources=[user_activity, propensity_request],\n"
        "    schema=[Field(name='price_ratio', dtype=String)], mode='pandas')\n"
        "def broken(inputs: pd.DataFrame) -> pd.DataFrame:\n"
        "    return pd.DataFrame({'price_ratio': inputs['request_price'] / 2.0})\n",
        "Explicitly specified features [Field(\n    name='price_ratio',\n    dtype=<PrimitiveFeastType.STRING",
    ),
}


def test_feast_plan_catches_broken_definitions(tmp_path: Path) -> None:
    """`feast plan` of each broken copy of the repository (run in parallel) fails with Feast's message."""
    runs = {}
    for number, (case, (source, _)) in enumerate(sorted(BROKEN.items())):
        repo = tmp_path / f"repo{number}"
        shutil.copytree(Path(__file__).resolve().parents[2] / "feature_repo", repo,
                        ignore=shutil.ignore_patterns("__pycache__", "*.md"))
        (repo / "broken_definition.py").write_text(source)
        settings = load_settings(profile="local", data_dir=tmp_path / f"data{number}")
        runs[case] = subprocess.Popen(
            [sys.executable, "-m", "feast.cli.cli", "--chdir", str(repo), "--feature-store-yaml",
             str(repo / yaml_path(settings).name), "plan"],
            env={**os.environ, **feast_env(settings)}, cwd=repo, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for case, run in runs.items():
        output, _ = run.communicate(timeout=300)
        assert run.returncode != 0, f"{case}: feast plan accepted it:\n{output}"
        assert BROKEN[case][1] in output, f"{case}:\n{output}"


def _without_freshcart_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("FRESHCART_", "FEAST_")):
            monkeypatch.delenv(name)


def _feast_reads(yaml_file: Path) -> click.Context:
    """The click context of a `feast` command run in feature_repo/ on ``yaml_file`` (what the definitions see)."""
    return click.Context(click.Command("plan"), obj={"CHDIR": FEATURE_REPO, "FS_YAML_FILE": yaml_file})


def test_without_environment_the_yaml_names_the_checkouts_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_freshcart_environment(monkeypatch)
    settings = load_settings()
    assert settings.profile == "local" and settings.data_dir == REPO_ROOT / "data"
    assert yaml_path(settings) == FEATURE_REPO / "feature_store.yaml"
    assert feast_env(settings)[FEAST_YAML_ENV] == str(FEATURE_REPO / "feature_store.yaml")
    config = load_repo_config(settings)
    assert config.repo_path == FEATURE_REPO and config.registry.path == "../data/feast/registry.db"
    assert (FEATURE_REPO / config.registry.path).resolve() == REPO_ROOT / "data" / "feast" / "registry.db"
    assert (FEATURE_REPO / config.online_store.path).resolve() == REPO_ROOT / "data" / "feast" / "online_store.db"


def test_with_a_data_dir_the_definitions_and_the_yaml_follow_it(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    _without_freshcart_environment(monkeypatch)
    monkeypatch.setenv("FRESHCART_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert yaml_path(settings) == FEATURE_REPO / "feature_store.data_dir.yaml"
    config = load_repo_config(settings)
    assert config.registry.path == f"{tmp_path}/feast/registry.db"
    assert config.online_store.path == f"{tmp_path}/feast/online_store.db"
    monkeypatch.setenv(FEAST_YAML_ENV, feast_env(settings)[FEAST_YAML_ENV])  # as `freshcart features env` exports
    with _feast_reads(FEATURE_REPO / "feature_store.data_dir.yaml"):
        assert repo_settings().data_dir == tmp_path and (tmp_path / "feast").is_dir()


def test_definitions_stop_when_the_yaml_and_the_data_dir_disagree(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    _without_freshcart_environment(monkeypatch)
    monkeypatch.setenv("FRESHCART_DATA_DIR", str(tmp_path))
    with _feast_reads(FEATURE_REPO / "feature_store.yaml"), pytest.raises(SystemExit) as stopped:
        repo_settings()  # plain `feast` reads feature_store.yaml (data/), FreshCart was told another data dir
    message = str(stopped.value)
    assert (f"feature_store.yaml keeps Feast's registry and online store in {REPO_ROOT / 'data' / 'feast'}, but "
            f"FreshCart's data dir is {tmp_path} (FRESHCART_DATA_DIR={tmp_path})") in message
    assert 'eval "$(freshcart features env)"' in message and "feature_store.data_dir.yaml" in message
    assert not (tmp_path / "feast").exists()
    monkeypatch.delenv("FRESHCART_DATA_DIR")
    with _feast_reads(FEATURE_REPO / "feature_store.data_dir.yaml"), \
            pytest.raises(SystemExit, match=r"FRESHCART_DATA_DIR not set \(feature_store.data_dir.yaml reads it"):
        repo_settings()
    with _feast_reads(FEATURE_REPO / "feature_store.production.yaml"), \
            pytest.raises(SystemExit, match="FRESHCART_PROFILE=local but feast reads feature_store.production.yaml"):
        repo_settings()
    monkeypatch.setenv("FRESHCART_PROFILE", "production")
    with _feast_reads(FEATURE_REPO / "feature_store.production.yaml"), pytest.raises(
            SystemExit, match=r"FRESHCART_FEAST_REDIS, FRESHCART_FEAST_REGISTRY_URL not set \(feature_store.production"):
        repo_settings()


def test_the_local_yamls_differ_only_in_where_the_stores_are() -> None:
    default, data_dir = (yaml.safe_load((FEATURE_REPO / name).read_text())
                         for name in ("feature_store.yaml", "feature_store.data_dir.yaml"))
    assert default["registry"].pop("path") == "../data/feast/registry.db"
    assert data_dir["registry"].pop("path") == "${FRESHCART_DATA_DIR}/feast/registry.db"
    assert default["online_store"].pop("path") == "../data/feast/online_store.db"
    assert data_dir["online_store"].pop("path") == "${FRESHCART_DATA_DIR}/feast/online_store.db"
    assert default == data_dir


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_plain_feast_in_a_checkout_needs_no_environment(tmp_path: Path) -> None:
    """`cd feature_repo && feast apply && feast serve` in a fresh checkout, with no FRESHCART_* or FEAST_* variable.

    The checkout is a copy (pyproject.toml, the package, feature_repo/), so its data/ is a
    temporary folder; PYTHONPATH makes Python import the copy's package.
    """
    checkout = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("freshcart", "feature_repo"):
        shutil.copytree(REPO_ROOT / name, checkout / name, ignore=ignore)
    shutil.copy(REPO_ROOT / "pyproject.toml", checkout)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRESHCART_", "FEAST_"))}
    env["PYTHONPATH"] = str(checkout)
    feast = str(Path(sys.executable).with_name("feast"))
    repo = checkout / "feature_repo"

    applied = subprocess.run([feast, "apply"], cwd=repo, env=env, text=True, capture_output=True, timeout=300)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Created feature view user_activity" in applied.stdout
    data = checkout / "data"
    assert (data / "feast" / "registry.db").is_file() and (data / "feast" / "online_store.db").is_file()
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))  # reads feature_store.yaml as `feast` does
    views = {fv.name: fv for fv in store.list_feature_views()}
    assert set(views) == set(spec.VIEWS) | set(spec.CANDIDATE_VIEWS)
    assert all(fv.batch_source.path == str(data / "offline" / "features" / name) for name, fv in views.items())
    assert not (REPO_ROOT / "feature_repo" / "data").exists()

    port = _free_port()
    server = subprocess.Popen([feast, "serve", "--host", "127.0.0.1", "--port", str(port)], cwd=repo, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        answer = _online_features(port, server)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert answer["metadata"]["feature_names"] == ["user_id", "views_1h"], output
    assert answer["results"][1]["statuses"] == ["NOT_FOUND"]  # applied, nothing materialised yet


def _online_features(port: int, server: subprocess.Popen[str], timeout: float = 120.0) -> dict[str, Any]:
    """The answer of `feast serve` to one online-features request, once it listens."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/get-online-features", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"features": ["user_activity:views_1h"], "entities": {"user_id": [1]}}).encode())
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_repo_config_comes_from_the_settings(tmp_path: Path) -> None:
    checkout = load_repo_config(load_settings(profile="local", data_dir=REPO_ROOT / "data"))
    assert checkout.registry.path == "../data/feast/registry.db" and checkout.repo_path == FEATURE_REPO
    local = load_repo_config(load_settings(profile="local", data_dir=tmp_path))
    assert local.registry.path == f"{tmp_path}/feast/registry.db"
    assert local.online_store.type == "sqlite" and local.online_store.path == f"{tmp_path}/feast/online_store.db"
    assert local.offline_store.type == "file" and local.entity_key_serialization_version == 3
    prod = load_repo_config(load_settings(profile="production", data_dir=tmp_path, redis_port=26379,
                                          postgres_port=25432, postgres_password="s3cret"))
    assert prod.registry.registry_type == "sql"
    assert prod.registry.path == "postgresql+psycopg://freshcart:s3cret@127.0.0.1:25432/freshcart"
    assert prod.online_store.type == "redis" and prod.online_store.connection_string == "127.0.0.1:26379,db=0"
    assert redis_connection_string("redis://:p%40ss@cache:6380/3") == "cache:6380,db=3,password=p@ss"
    with pytest.raises(FeatureStoreError, match="expected redis://"):
        redis_connection_string("http://cache:6379")


def test_arrow_types_map_to_feast_types() -> None:
    assert feast_dtype(pa.int64()) == Int64 and feast_dtype(pa.float64()) == Float64
    assert feast_dtype(pa.list_(pa.int64())) == Array(Int64)
    with pytest.raises(FeatureStoreError, match="no Feast type for Arrow type"):
        feast_dtype(pa.dictionary(pa.int8(), pa.string()))


def test_cli_features_commands(applied: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["features", "--help"])
    for command in ("plan", "apply", "env", "materialize", "online", "build", "training-set"):
        assert command in listed.output
    monkeypatch.setenv("FRESHCART_PROFILE", "local")
    monkeypatch.setenv("FRESHCART_DATA_DIR", str(applied.data_dir))
    exports = runner.invoke(app, ["features", "env"])
    assert exports.exit_code == 0 and f"export FRESHCART_DATA_DIR={applied.data_dir}\n" in exports.output
    assert f"export FEAST_FS_YAML_FILE_PATH={FEATURE_REPO / 'feature_store.data_dir.yaml'}\n" in exports.output
    neither = runner.invoke(app, ["features", "materialize"])
    assert neither.exit_code == 2 and "give either --start [--end] or --incremental [--end]" in neither.output
    no_tables = runner.invoke(app, ["features", "materialize", "--start", "2026-10-05"])
    assert no_tables.exit_code == 1, no_tables.output
    assert ("no feature tables for [2026-10-05T00:00:00+00:00, 2026-10-06T00:00:00+00:00)" in no_tables.output
            and "run `freshcart features build --start 2026-10-05 --end 2026-10-06` first" in no_tables.output)
    monkeypatch.setenv("FRESHCART_DATA_DIR", str(tmp_path))
    not_applied = runner.invoke(app, ["features", "materialize", "--incremental", "--end", "2026-10-05"])
    assert not_applied.exit_code == 1 and "run `freshcart features apply` first" in not_applied.output
