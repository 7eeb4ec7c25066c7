"""`make mlflow-ui`: the MLflow tracking UI for the profile's tracking store, on loopback only.

    .venv/bin/python -m freshcart.training.ui [--port 5000]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from freshcart.settings import load_settings
from freshcart.training.registry import artifact_root


def main(argv: list[str] | None = None) -> int:
    """Replace this process with `mlflow ui` on 127.0.0.1, pointed at the settings' tracking URI."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default 5000)")
    args = parser.parse_args(argv)
    settings = load_settings()
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow = str(Path(sys.executable).parent / "mlflow")
    command = [mlflow, "ui", "--backend-store-uri", uri, "--default-artifact-root",
               artifact_root(settings).resolve().as_uri(), "--host", "127.0.0.1", "--port", str(args.port),
               "--workers", "1"]
    print(f"MLflow UI on http://127.0.0.1:{args.port} ({settings.profile} profile)", flush=True)
    os.execv(mlflow, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
