"""`bentoml build` of the scoring service: what the bento carries and what its Dockerfile installs.

Built from the repository (freshcart.serving.bento.build_bento) into a temporary BentoML
home, in a child process so the test process's BentoML configuration is left alone. No
Docker needed: the generated env/docker/Dockerfile and env/python/requirements.txt are read.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from freshcart.settings import REPO_ROOT

LOCK = REPO_ROOT / "requirements" / "lock.txt"


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def _build(variant: str, home: Path) -> dict[str, str]:
    code = ("import json; from freshcart.serving.bento import build_bento; "
            f"b = build_bento({variant!r}); print(json.dumps({{'tag': b.tag, 'path': str(b.path)}}))")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600,
                          cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("bentofile", ["bentofile.yaml", "bentofile.gpu.yaml"])
def test_bentofile_pins_are_the_lock_versions(bentofile: str) -> None:
    config = yaml.safe_load((REPO_ROOT / "bentos" / bentofile).read_text())
    declared = _pins(config["python"]["packages"])
    locked = _pins(LOCK.read_text().splitlines())
    assert declared and all(name in locked for name in declared), sorted(set(declared) - set(locked))
    assert {name: locked[name] for name in declared} == declared
    assert not {"apache-airflow", "evidently", "jupyterlab"} & set(declared)  # serving only


def test_bento_carries_the_package_and_installs_the_pinned_serving_packages(tmp_path: Path) -> None:
    built = _build("cpu", tmp_path / "bentoml")
    bento = Path(built["path"])
    assert built["tag"].startswith("freshcart_scoring:")
    for path in ("src/bentos/service.py", "src/freshcart/serving/scoring.py", "src/freshcart/settings.py",
                 "src/feature_repo/freshcart_views.py", "src/feature_repo/feature_store.production.yaml"):
        assert (bento / path).is_file(), path
    assert yaml.safe_load((bento / "bento.yaml").read_text())["service"] == "bentos.service:FreshCartScoring"
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile
    assert "pip install -r $BENTO_PATH/env/python/requirements.txt" in dockerfile
    requirements = _pins((bento / "env" / "python" / "requirements.txt").read_text().splitlines())
    declared = _pins(yaml.safe_load((REPO_ROOT / "bentos" / "bentofile.yaml").read_text())["python"]["packages"])
    assert requirements == declared
    assert "apache-airflow" not in requirements


def test_the_cuda_bento_asks_for_a_gpu_on_a_cuda_image(tmp_path: Path) -> None:
    built = _build("gpu", tmp_path / "bentoml")
    bento = Path(built["path"])
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:12\.8[.\d]*-cudnn-runtime", dockerfile, re.M), dockerfile[:500]
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    assert manifest["service"] == "bentos.service:FreshCartScoringGPU"
    services = {s["name"]: s for s in manifest["services"]}
    assert services["freshcart_scoring_gpu"]["config"]["resources"] == {"gpu": 1}
