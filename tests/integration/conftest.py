"""Integration tests talk to real servers: the broker `make test` starts (`freshcart services up`)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
import redis

from freshcart.kafka_io import admin_client, ensure_acls
from freshcart.services.process import port_open, terminate_all
from freshcart.settings import Settings, load_settings

# Settings of the tests use data dirs of their own, and the servers' secrets where `make test` generated them
# (their child processes inherit it).
os.environ.setdefault("FRESHCART_SECRETS_DIR", str(load_settings().secrets_path))


@pytest.fixture(scope="session")
def settings() -> Settings:
    settings = load_settings()
    if not port_open(settings.kafka_host, settings.kafka_port):
        pytest.fail(
            f"no Kafka broker on {settings.bootstrap_servers}: run `freshcart services up` "
            "(make test does this for you)"
        )
    return settings


@pytest.fixture
def topic(settings: Settings):
    """A fresh topic with the events topic's partitioning and the roles' ACLs on it, deleted afterwards."""
    name = f"freshcart.test.{uuid.uuid4().hex[:10]}"
    admin = admin_client(settings)
    admin.create_topics(
        {name: {"num_partitions": settings.events_partitions, "replication_factor": 1}},
        wait_for_metadata=True,
    )
    if settings.auth:  # every role may use it as its events or prediction topic, as the tests do
        ensure_acls(admin, settings.model_copy(update={"events_topic": name, "predictions_topic": name}))
    admin.close()
    yield name
    # best-effort cleanup with a fresh client: a test may have restarted the broker meanwhile
    try:
        cleanup = admin_client(settings)
        try:
            cleanup.delete_topics([name])
        finally:
            cleanup.close()
    except Exception as exc:  # noqa: BLE001 - a leftover test topic must not fail the test
        print(f"could not delete test topic {name}: {exc}")


REDIS_DB = 11  # the tests' own Redis database, flushed before and after each test


@pytest.fixture
def local(tmp_path: Path) -> Settings:
    return load_settings(profile="local", data_dir=tmp_path)


@pytest.fixture
def production(tmp_path: Path) -> Iterator[Settings]:
    """Production settings on the servers `make test` started, with a fresh registry database and Redis db."""
    base = load_settings()
    for name, port in (("Redis", base.redis_port), ("PostgreSQL", base.postgres_port)):
        if not port_open("127.0.0.1", port):
            pytest.fail(f"no {name} on 127.0.0.1:{port}: run `FRESHCART_PROFILE=production freshcart services up` "
                        "(make test does this for you)")
    database = f"freshcart_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base.postgres_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    password = base.redis_password.get_secret_value() if base.redis_password else None
    client = redis.Redis(host="127.0.0.1", port=base.redis_port, db=REDIS_DB, password=password)
    client.flushdb()
    yield load_settings(profile="production", data_dir=tmp_path, postgres_url=base.postgres_dsn(database),
                        redis_url=f"redis://127.0.0.1:{base.redis_port}/{REDIS_DB}")  # password: FRESHCART_SECRETS_DIR
    client.flushdb()
    client.close()
    with psycopg.connect(base.postgres_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="session")
def served_shop(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A small simulated shop ready to serve (local profile): feature tables, `feast apply`, the feature
    tables materialised online, and two registered models: XGBoost (v1, champion) and the attention model
    (v2, no alias), in an MLflow store of its own."""
    from datetime import datetime, time as clock, timezone

    from freshcart import storage
    from freshcart.features.materialize import materialize
    from freshcart.features.store import apply
    from freshcart.training.promote import promote
    from freshcart.training.train import train_model
    from tests.unit.test_training import build_small_shop

    data_dir = tmp_path_factory.mktemp("served-shop")
    settings, _ = build_small_shop(data_dir, profile="local", xgb_max_rounds=80,
                                   mlflow_tracking_uri=f"sqlite:///{data_dir / 'mlflow.db'}")
    settings = settings.model_copy(update={"din_max_epochs": 1})
    applied = apply(settings)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    days = storage.list_partitions(settings.offline_events_dir)
    materialize(settings, datetime.combine(days[0], clock(), tzinfo=timezone.utc),
                datetime.combine(days[-1], clock(), tzinfo=timezone.utc))
    path = next((settings.data_dir / "training").glob("propensity_*.parquet"))
    first = train_model(settings, "xgboost", training_set=path)
    assert promote(settings).champion_after == first.version
    train_model(settings, "din", training_set=path, set_challenger=False)
    return settings


# Kubernetes tools (scripts/build-tools.sh, run by `make setup`) and a real API server for the chart.
TOOLS_BIN = Path(__file__).resolve().parents[2] / ".tools" / "bin"


def kube_tool(name: str) -> Path:
    """Path of a tool that `make setup` builds into .tools/bin; fails the test when it is missing."""
    path = TOOLS_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make setup` (scripts/build-tools.sh builds it)")
    return path


def _loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_service_account_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization  # lazy: only the chart tests need it
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _wait_ready(url: str, token: str, process: subprocess.Popen, log: Path, timeout_s: float = 120.0) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's own self-signed certificate, on loopback
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"kube-apiserver exited with {process.returncode}; its log: {log}\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"kube-apiserver not ready after {timeout_s:.0f} s; its log: {log}")


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real kube-apiserver on etcd, both on loopback; yields a kubeconfig for helm (no kubelet runs pods)."""
    etcd, apiserver = kube_tool("etcd"), kube_tool("kube-apiserver")
    root = tmp_path_factory.mktemp("kube")
    client, peer, secure = _loopback_port(), _loopback_port(), _loopback_port()
    token = secrets.token_hex(24)
    (root / "tokens.csv").write_text(f"{token},freshcart-admin,freshcart-admin,system:masters\n")
    _write_service_account_key(root / "sa.key")
    etcd_log, apiserver_log = (root / "etcd.log").open("wb"), (root / "kube-apiserver.log").open("wb")
    processes = [subprocess.Popen(
        [str(etcd), "--data-dir", str(root / "etcd"), "--name", "freshcart-test", "--unsafe-no-fsync",
         "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"freshcart-test=http://127.0.0.1:{peer}"],
        stdout=etcd_log, stderr=subprocess.STDOUT)]
    processes.append(subprocess.Popen(
        [str(apiserver), "--etcd-servers", f"http://127.0.0.1:{client}", "--bind-address", "127.0.0.1",
         "--advertise-address", "127.0.0.1", "--secure-port", str(secure), "--cert-dir", str(root / "certs"),
         "--token-auth-file", str(root / "tokens.csv"), "--authorization-mode", "RBAC",
         "--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", str(root / "sa.key"),
         "--service-account-signing-key-file", str(root / "sa.key"), "--service-cluster-ip-range", "10.96.0.0/16",
         "--disable-admission-plugins", "ServiceAccount", "--allow-privileged=true",
         "--endpoint-reconciler-type", "none"],
        stdout=apiserver_log, stderr=subprocess.STDOUT))
    try:
        _wait_ready(f"https://127.0.0.1:{secure}/readyz", token, processes[1], root / "kube-apiserver.log")
        kubeconfig = root / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "freshcart-test",
            "clusters": [{"name": "freshcart-test", "cluster": {
                "server": f"https://127.0.0.1:{secure}", "insecure-skip-tls-verify": True}}],
            "users": [{"name": "freshcart-admin", "user": {"token": token}}],
            "contexts": [{"name": "freshcart-test", "context": {"cluster": "freshcart-test", "user": "freshcart-admin"}}],
        }))
        os.chmod(kubeconfig, 0o600)
        yield kubeconfig
    finally:
        terminate_all(processes)
        etcd_log.close()
        apiserver_log.close()
