"""`freshcart services` end to end, production profile: Kafka, Redis and PostgreSQL as real
processes in a throw-away data directory on their own ports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
import redis

from freshcart.services.process import pid_alive, port_open

PORTS = {"FRESHCART_KAFKA_PORT": 29092, "FRESHCART_KAFKA_CONTROLLER_PORT": 29093,
         "FRESHCART_REDIS_PORT": 26379, "FRESHCART_POSTGRES_PORT": 25432}
FRESHCART = [sys.executable, "-m", "freshcart"]


@pytest.fixture
def env():
    # PostgreSQL runs as the postgres user, which must reach the data dir: not under /root or pytest's 0700 tmp.
    data_dir = Path(tempfile.mkdtemp(prefix="freshcart-it-", dir="/var/tmp"))
    data_dir.chmod(0o755)
    environment = {**{k: v for k, v in os.environ.items() if k != "FRESHCART_SECRETS_DIR"},
                   "FRESHCART_PROFILE": "production", "FRESHCART_DATA_DIR": str(data_dir),
                   **{k: str(v) for k, v in PORTS.items()}}
    yield environment
    subprocess.run([*FRESHCART, "services", "down"], env=environment, capture_output=True)
    shutil.rmtree(data_dir, ignore_errors=True)


def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*FRESHCART, *args], env=env, capture_output=True, text=True, timeout=180)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def _pids(data_dir: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (data_dir / "run").glob("*.pid")}


def test_up_status_down_production(env):
    data_dir = Path(env["FRESHCART_DATA_DIR"])
    out = run(env, "services", "up").stdout
    assert "kafka started" in out and "redis started" in out and "postgres started" in out
    assert "freshcart.events" in out and "freshcart_mlflow" in out
    pids = _pids(data_dir)
    assert set(pids) == {"kafka", "redis", "postgres"} and all(pid_alive(p) for p in pids.values())

    status = run(env, "services", "status").stdout
    for name, pid in pids.items():
        assert name in status and str(pid) in status
    assert "29092" in status and "26379" in status and "25432" in status

    secrets = data_dir / "secrets"  # generated at the first start, owner-only
    assert secrets.stat().st_mode & 0o777 == 0o700
    assert {p.name for p in secrets.iterdir()} >= {"redis_password", "postgres_password", "kafka_admin_password"}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in secrets.iterdir())
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=26379).ping()
    assert redis.Redis(port=26379, password=(secrets / "redis_password").read_text()).ping()
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect("postgresql://freshcart@127.0.0.1:25432/postgres", connect_timeout=10)
    password = (secrets / "postgres_password").read_text()
    with psycopg.connect(f"postgresql://freshcart:{password}@127.0.0.1:25432/postgres") as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert {"freshcart", "freshcart_mlflow"} <= names
    assert (data_dir / "logs" / "kafka.log").stat().st_size > 0
    assert (data_dir / "logs" / "redis.log").exists()

    again = run(env, "services", "up").stdout  # harmless
    assert again.count("already running") == 3
    assert _pids(data_dir) == pids

    down = run(env, "services", "down").stdout
    assert down.count("stopped") == 3
    assert not any(pid_alive(p) for p in pids.values())
    assert not any(port_open("127.0.0.1", port) for port in PORTS.values())
    leftover = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True).stdout
    assert leftover.strip() == ""


def test_taken_port_and_missing_jars_are_clear_errors(env):
    env = {**env, "FRESHCART_PROFILE": "local"}
    run(env, "services", "up")
    other = tempfile.mkdtemp(prefix="freshcart-it-", dir="/var/tmp")
    try:
        clash = run({**env, "FRESHCART_DATA_DIR": other}, "services", "up", check=False)
        assert clash.returncode == 1
        assert "port 127.0.0.1:29092 is already taken" in clash.stderr.replace("\n", " ")
        assert "FRESHCART_KAFKA_PORT" in clash.stderr.replace("\n", " ")
    finally:
        shutil.rmtree(other, ignore_errors=True)
    run(env, "services", "down")
    missing = run({**env, "FRESHCART_KAFKA_JARS_DIR": "/nonexistent/jars"}, "services", "up", check=False)
    assert missing.returncode == 1
    assert "make setup" in missing.stderr
