"""The project's Redis server (production profile's online store), on FRESHCART_BIND_HOST (loopback).

With credentials on, the server requires the password of FRESHCART_REDIS_PASSWORD (generated at its first
start); it is given in a config file of mode 0600, never on the command line."""

from __future__ import annotations

import shutil
from pathlib import Path

from freshcart.services.credentials import provision
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
    settings = provision(settings, ("redis_password",))
    home = settings.data_dir / "redis"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = settings.logs_dir / "redis.log"
    config = home / "redis.conf"
    config.touch(mode=0o600)
    config.chmod(0o600)
    config.write_text(redis_config(settings, home, log))
    pid = spawn(NAME, [binary, str(config)], log, pid_file)
    seconds = wait_for_port(NAME, HOST, settings.redis_port, pid, log, timeout=30.0)
    return f"redis started (pid {pid}) on {HOST}:{settings.redis_port} in {seconds:.1f}s"


def redis_config(settings: Settings, home: Path, log: Path) -> str:
    """redis.conf of the server: persistence, address, and ``requirepass`` when credentials are on."""
    lines = [f"port {settings.redis_port}", f"bind {settings.bind_host}", f'dir "{home}"', "daemonize no",
             "appendonly yes", 'save ""', f'logfile "{log}"', "protected-mode yes"]
    if settings.auth and settings.redis_password is not None:
        lines.append(f'requirepass "{settings.redis_password.get_secret_value()}"')
    return "\n".join(lines) + "\n"


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
