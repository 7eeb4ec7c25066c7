"""`make mlflow-ui`: the MLflow tracking UI for the profile's tracking store.

    .venv/bin/python -m freshcart.training.ui [--port 5000]

local profile: `mlflow ui` on loopback. production profile with credentials on (the default): the
tracking server with its basic-auth app (`mlflow server --app-name basic-auth`): every request needs
the user ``admin`` and FRESHCART_MLFLOW_ADMIN_PASSWORD (generated at the first start into the secrets
dir); no permission for anyone else. The store's URL and the password go in the environment and a
config file of mode 0600, never on the command line.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from freshcart.credentials import MLFLOW_ADMIN_USER, write_secret
from freshcart.settings import Settings, load_settings
from freshcart.training.registry import artifact_root


def auth_config(settings: Settings) -> str:
    """basic_auth.ini of the tracking server: users in SQLite under the data dir, no default permission."""
    users = settings.data_dir / "mlflow" / "basic_auth.db"
    return "\n".join(["[mlflow]", "default_permission = NO_PERMISSIONS", f"database_uri = sqlite:///{users}",
                      f"admin_username = {MLFLOW_ADMIN_USER}",
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth", ""])


def _csrf_key(settings: Settings) -> str:
    """The Flask secret of the server's CSRF protection: generated once, kept with the other secrets."""
    path = settings.secrets_path / "mlflow_flask_secret_key"
    if not path.is_file():
        write_secret(path, secrets.token_urlsafe(32))
    return path.read_text(encoding="utf-8").strip()


def server_command(settings: Settings, port: int, host: str | None = None) -> tuple[list[str], dict[str, str]]:
    """argv and environment of the UI: `mlflow server --app-name basic-auth` when the profile is production
    and credentials are on (the admin's password is generated if missing), `mlflow ui` otherwise."""
    from freshcart.services.credentials import provision

    mlflow = str(Path(sys.executable).parent / "mlflow")
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    address = ["--host", host or settings.bind_host, "--port", str(port), "--workers", "1"]
    env = dict(os.environ)
    if settings.profile != "production" or not settings.auth:
        return [mlflow, "ui", "--backend-store-uri", uri, "--default-artifact-root",
                artifact_root(settings).resolve().as_uri(), *address], env
    settings = provision(settings, ("mlflow_admin_password",))
    config = settings.data_dir / "mlflow" / "basic_auth.ini"
    write_secret(config, auth_config(settings))
    env.update({"MLFLOW_BACKEND_STORE_URI": uri, "MLFLOW_AUTH_CONFIG_PATH": str(config),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": _csrf_key(settings),
                "MLFLOW_AUTH_ADMIN_PASSWORD": settings.mlflow_admin_password.get_secret_value()})  # type: ignore[union-attr]
    return [mlflow, "server", "--app-name", "basic-auth", "--default-artifact-root",
            artifact_root(settings).resolve().as_uri(), *address], env


def main(argv: list[str] | None = None) -> int:
    """Replace this process with the MLflow UI (or tracking server), pointed at the settings' tracking URI."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000), on FRESHCART_BIND_HOST")
    args = parser.parse_args(argv)
    settings = load_settings()
    command, env = server_command(settings, args.port)
    basic = "basic-auth" in command
    if not basic:
        from freshcart.services.credentials import exposure_warning

        warning = exposure_warning("the MLflow UI", settings.bind_host, False)
        if warning:
            print(warning, file=sys.stderr, flush=True)
    who = (f"; user {MLFLOW_ADMIN_USER}, password in {settings.secrets_path / 'mlflow_admin_password'}"
           if basic else "")
    print(f"MLflow {'tracking server' if basic else 'UI'} on http://{settings.bind_host}:{args.port} "
          f"({settings.profile} profile{who})", flush=True)
    os.execve(command[0], command, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
