"""The project's Redis server (production profile's online store), on loopback."""

from __future__ import annotations

import shutil

from freshcart.services.process import (
    ServiceError, ServiceStatus, ensure_port_free, read_pid, spawn, stop_pid, wait_for_port,
)
from freshcart.settings import Settings

NAME = "redis"
HOST = "127.0.0.1"


def start(settings: Settings) -> str:
    pid_file = settings.run_dir / "redis.pid"
    pid = read_pid(pid_file)
    if pid is not None:
        return f"redis already running (pid {pid}) on {HOST}:{settings.redis_port}"
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis: redis-server is not installed; run `make setup` (Debian package redis-server).")
    ensure_port_free(NAME, HOST, settings.redis_port, "FRESHCART_REDIS_PORT")
    home = settings.data_dir / "redis"
    home.mkdir(parents=True, exist_ok=True)
    log = settings.logs_dir / "redis.log"
    argv = [
        binary, "--port", str(settings.redis_port), "--bind", HOST, "--dir", str(home),
        "--daemonize", "no", "--appendonly", "yes", "--save", "", "--logfile", str(log),
        "--protected-mode", "yes",
    ]
    pid = spawn(NAME, argv, log, pid_file)
    seconds = wait_for_port(NAME, HOST, settings.redis_port, pid, log, timeout=30.0)
    return f"redis started (pid {pid}) on {HOST}:{settings.redis_port} in {seconds:.1f}s"


def stop(settings: Settings) -> str | None:
    pid_file = settings.run_dir / "redis.pid"
    pid = read_pid(pid_file)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return None
    stop_pid(pid)
    return f"redis stopped (pid {pid})"


def status(settings: Settings) -> ServiceStatus:
    pid = read_pid(settings.run_dir / "redis.pid")
    return ServiceStatus(NAME, pid is not None, pid, f"{HOST}:{settings.redis_port}",
                         settings.logs_dir / "redis.log")
