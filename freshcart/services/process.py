"""Background server processes: pid files, port checks, start, wait and stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class ServiceError(RuntimeError):
    """A service cannot be started or stopped; the message says what to do."""


@dataclass
class ServiceStatus:
    """One line of `freshcart services status`."""

    name: str
    running: bool
    pid: int | None
    address: str
    log: Path
    note: str = ""


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child is not alive
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file`` if that process still runs."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def ensure_port_free(name: str, host: str, port: int, setting: str) -> None:
    if port_open(host, port):
        raise ServiceError(
            f"{name}: port {host}:{port} is already taken by another process. "
            f"Stop that process (`ss -ltnp 'sport = :{port}'` shows it) or choose another port "
            f"with {setting}=<port>."
        )


def spawn(name: str, argv: list[str], log: Path, pid_file: Path, env: dict[str, str] | None = None,
          user: str | None = None) -> int:
    """Start ``argv`` in its own session with output to ``log``; record its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **(env or {})},
            )
        except FileNotFoundError as exc:
            raise ServiceError(f"{name}: cannot run {argv[0]!r} ({exc}); run `make setup`.") from None
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def wait_for_port(name: str, host: str, port: int, pid: int, log: Path, timeout: float) -> float:
    """Wait until host:port accepts connections; seconds waited. Fails fast if the process dies."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if port_open(host, port):
            return time.monotonic() - started
        if not pid_alive(pid):
            tail = _tail(log)
            raise ServiceError(f"{name} exited during start-up; last lines of {log}:\n{tail}")
        time.sleep(0.05)
    raise ServiceError(f"{name} did not accept connections on {host}:{port} within {timeout:.0f}s; see {log}")


def stop_pid(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                _reap(pid)
                return
            time.sleep(0.05)
    raise ServiceError(f"process {pid} did not stop")


def terminate_all(processes: list[subprocess.Popen], timeout: float = 20.0) -> None:
    """Stop child processes, the last started first: SIGTERM, then SIGKILL what is still there after ``timeout``."""
    for process in reversed(processes):
        if process.poll() is not None:
            continue
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
