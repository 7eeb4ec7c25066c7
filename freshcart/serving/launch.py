"""Starting the BentoML service: the command line, its environment, and a running server for demos and tests.

``freshcart serve`` and ``make serve`` run :func:`bentoml_serve_command` in ``bentos/``
with :func:`serving_env`, so the service reads the same settings (profile, data
dir, ports, key) as the command that started it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from freshcart.settings import REPO_ROOT, Settings

BENTOS_DIR = REPO_ROOT / "bentos"
SERVICES = {"cpu": "service:FreshCartScoring", "gpu": "service:FreshCartScoringGPU"}
SERVING_SETTINGS = (
    "profile", "data_dir", "kafka_bootstrap", "kafka_host", "kafka_port", "redis_port", "redis_url", "postgres_port",
    "postgres_user", "postgres_password", "postgres_url", "mlflow_tracking_uri", "mlflow_artifact_root",
    "registered_model", "horizon_hours", "serving_host", "serving_port", "serving_api_key", "serving_workers",
    "serving_threads", "serving_model_alias", "serving_reload_seconds", "serving_device",
    "serving_product_cache_seconds", "serving_index_seconds", "serving_catalogue_days", "predictions_topic",
    "serving_log_buffer", "serving_access_log", "serving_tracing", "serving_gc_freeze", "auth", "secrets_dir",
    "redis_password", "kafka_serving_password", "mlflow_admin_password",
)
"""Settings the service process must see as the caller has them."""


class ServeError(RuntimeError):
    """The service did not start or did not become ready; the message points at its log."""


def bentoml_serve_command(settings: Settings, host: str | None = None, port: int | None = None,
                          variant: str = "cpu") -> list[str]:
    """argv of ``bentoml serve`` for the service (``variant`` cpu or gpu), run in :data:`BENTOS_DIR`."""
    if variant not in SERVICES:
        raise ValueError(f"variant {variant!r}: use cpu or gpu")
    return [sys.executable, "-m", "bentoml", "serve", SERVICES[variant],
            "--host", host or settings.serving_host, "--port", str(port or settings.serving_port)]


def serving_env(settings: Settings, host: str | None = None, port: int | None = None) -> dict[str, str]:
    """This environment plus the ``FRESHCART_*`` variables that give the service these settings."""
    env = settings.child_env(SERVING_SETTINGS)
    env["FRESHCART_SERVING_HOST"] = host or settings.serving_host
    env["FRESHCART_SERVING_PORT"] = str(port or settings.serving_port)
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    env.setdefault("OMP_NUM_THREADS", "1")  # per-request work is small: threads only wait on each other
    return env


def bentoml_build_command(variant: str = "cpu") -> list[str]:
    """argv of ``bentoml build`` for the CPU or CUDA bento, run in :data:`BENTOS_DIR`."""
    files = {"cpu": "bentofile.yaml", "gpu": "bentofile.gpu.yaml"}
    if variant not in files:
        raise ValueError(f"variant {variant!r}: use cpu or gpu")
    return [sys.executable, "-m", "bentoml", "build", "-f", files[variant], "--output", "tag", "."]


@dataclass
class RunningService:
    """A ``bentoml serve`` child process and where it listens."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_service(settings: Settings, port: int, log_path: Path, host: str = "127.0.0.1",
                  timeout: float = 240.0, variant: str = "cpu") -> RunningService:
    """Run ``bentoml serve`` and wait until /readyz answers 200 (a model loaded, the online store up)."""
    import httpx

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(bentoml_serve_command(settings, host, port, variant), cwd=BENTOS_DIR,
                                   env=serving_env(settings, host, port), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    service = RunningService(process, f"http://{host}:{port}", log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServeError(f"bentoml serve exited with {process.returncode}; see {log_path}:\n{_tail(log_path)}")
        try:
            if httpx.get(f"{service.url}/readyz", timeout=2.0).status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    service.stop()
    raise ServeError(f"the service on {service.url} was not ready after {timeout:.0f} s; see {log_path}:\n"
                     f"{_tail(log_path)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
