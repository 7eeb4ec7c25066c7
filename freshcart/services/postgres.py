"""The project's PostgreSQL server (production profile: Feast registry, MLflow), on FRESHCART_BIND_HOST
(loopback by default).

With credentials on, the cluster is initialised with a password for the role FRESHCART_POSTGRES_USER
(FRESHCART_POSTGRES_PASSWORD, generated at the first start) and SCRAM-SHA-256 on every TCP connection;
the Unix socket (under the data dir, for the server's own tools) stays trust.

PostgreSQL refuses to run as root: when FreshCart runs as root, the server runs
as the ``postgres`` user that the Debian package creates.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from freshcart.services.credentials import provision
from freshcart.services.process import (
    ServiceError, ServiceStatus, ensure_port_free, read_pid, stop_pid,
)
from freshcart.settings import Settings

NAME = "postgres"
HOST = "127.0.0.1"
DATABASES = ("freshcart", "freshcart_mlflow")
SERVER_USER = "postgres"
PASSWORD_MARKER = "scram-sha-256"  # nosec B105 - the name of an authentication method, not a password


def _bin(tool: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise ServiceError(f"postgres: {tool} not found; run `make setup` (Debian package postgresql).")
    return str(found[-1])


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(_as_server_user(argv), capture_output=True, text=True)
    if result.returncode != 0:
        raise ServiceError(f"postgres: {what} failed:\n{result.stdout}{result.stderr}")


def _home(settings: Settings) -> Path:
    return settings.data_dir / "postgres"


def _init(settings: Settings) -> None:
    home = _home(settings)
    data = home / "data"
    if (data / "PG_VERSION").exists():
        return
    (home / "socket").mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", f"{SERVER_USER}:", str(home)], check=True)
        probe = subprocess.run(_as_server_user(["test", "-w", str(home)]))
        if probe.returncode != 0:
            raise ServiceError(
                f"postgres: the {SERVER_USER} user cannot write {home} (a parent folder is not "
                "traversable); set FRESHCART_DATA_DIR to a folder outside /root, e.g. /var/tmp/freshcart."
            )
    argv = [_bin("initdb"), "-D", str(data), "-U", settings.postgres_user, "-E", "UTF8",
            "--auth-local=trust"]
    if settings.postgres_password is not None:
        pwfile = home / "pwfile"
        pwfile.touch(mode=0o600)
        pwfile.write_text(settings.postgres_password.get_secret_value())
        if os.geteuid() == 0:
            subprocess.run(["chown", f"{SERVER_USER}:", str(pwfile)], check=True)
        argv += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
    else:
        argv += ["--auth-host=trust"]
    try:
        _run(argv, "initdb")
    finally:
        (home / "pwfile").unlink(missing_ok=True)
    if settings.postgres_password is not None:  # clients from other hosts too, once FRESHCART_BIND_HOST opens it
        with open(data / "pg_hba.conf", "a", encoding="utf-8") as hba:
            hba.write("host    all    all    all    scram-sha-256\n")
        (home / PASSWORD_MARKER).write_text("initialised with scram-sha-256 passwords\n")


def _postmaster_pid(settings: Settings) -> int | None:
    try:
        return int((_home(settings) / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _create_databases(settings: Settings) -> list[str]:
    import psycopg

    created = []
    with psycopg.connect(settings.postgres_dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in DATABASES:
            if name not in existing:
                conn.execute(f'CREATE DATABASE "{name}"')
                created.append(name)
    return created


def start(settings: Settings) -> str:
    pid_file = settings.run_dir / "postgres.pid"
    pid = read_pid(pid_file)
    if pid is not None:
        return f"postgres already running (pid {pid}) on {HOST}:{settings.postgres_port}"
    ensure_port_free(NAME, HOST, settings.postgres_port, "FRESHCART_POSTGRES_PORT")
    settings = provision(settings, ("postgres_password",))
    _init(settings)
    home = _home(settings)
    trust = settings.auth and not (home / PASSWORD_MARKER).exists()
    log = settings.logs_dir / "postgres.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    server_log = home / "server.log"
    options = f"-p {settings.postgres_port} -k {home / 'socket'} -c listen_addresses={settings.bind_host}"
    _run([_bin("pg_ctl"), "-D", str(home / "data"), "-l", str(server_log), "-o", options, "-w",
          "-t", "60", "start"], f"starting the server (see {server_log})")
    pid = _postmaster_pid(settings)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid}\n")
    if not log.exists():
        log.symlink_to(server_log)
    created = _create_databases(settings)
    extra = f"; created databases {', '.join(created)}" if created else ""
    if trust:
        extra += (f"; warning: {home / 'data'} was initialised without passwords (trust on TCP): remove "
                  f"{home} to start again with one")
    return f"postgres started (pid {pid}) on {HOST}:{settings.postgres_port}{extra}"


def stop(settings: Settings) -> str | None:
    pid_file = settings.run_dir / "postgres.pid"
    pid = read_pid(pid_file)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return None
    try:
        _run([_bin("pg_ctl"), "-D", str(_home(settings) / "data"), "-m", "fast", "-w", "stop"], "stop")
    except ServiceError:
        stop_pid(pid)
    return f"postgres stopped (pid {pid})"


def status(settings: Settings) -> ServiceStatus:
    pid = read_pid(settings.run_dir / "postgres.pid")
    return ServiceStatus(NAME, pid is not None, pid, f"{HOST}:{settings.postgres_port}",
                         settings.logs_dir / "postgres.log")
