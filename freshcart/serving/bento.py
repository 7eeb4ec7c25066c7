"""Building the bento: ``bentos/bentofile.yaml`` with the repository root as the build context.

The service module is ``bentos/service.py``; built from the root, the bento carries it
together with the ``freshcart`` package and the Feast repository (``feature_repo/``),
which the service imports and reads. The bento records the service as
``bentos.service:FreshCartScoring`` (``FreshCartScoringGPU`` for the CUDA variant).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from freshcart.settings import REPO_ROOT

BENTOFILES = {"cpu": "bentofile.yaml", "gpu": "bentofile.gpu.yaml"}
SERVICES = {"cpu": "bentos.service:FreshCartScoring", "gpu": "bentos.service:FreshCartScoringGPU"}


@dataclass(frozen=True)
class BuiltBento:
    tag: str
    path: Path

    @property
    def dockerfile(self) -> Path:
        return self.path / "env" / "docker" / "Dockerfile"

    @property
    def requirements(self) -> Path:
        return self.path / "env" / "python" / "requirements.txt"


def build_bento(variant: str = "cpu", bentoml_home: Path | None = None) -> BuiltBento:
    """Build the CPU or CUDA bento into the BentoML store (``BENTOML_HOME``, or ``bentoml_home``)."""
    if variant not in BENTOFILES:
        raise ValueError(f"variant {variant!r}: use cpu or gpu")
    if bentoml_home is not None:
        os.environ["BENTOML_HOME"] = str(bentoml_home)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    import bentoml

    config = yaml.safe_load((REPO_ROOT / "bentos" / BENTOFILES[variant]).read_text())
    config["service"] = SERVICES[variant]  # the same service, imported from the repository root
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="freshcart-bento-") as tmp:
        bentofile = Path(tmp) / "bentofile.yaml"
        bentofile.write_text(yaml.safe_dump(config, sort_keys=False))
        os.chdir(REPO_ROOT)  # BentoML only reads files below the working directory
        try:
            bento = bentoml.bentos.build_bentofile(bentofile=str(bentofile), build_ctx=str(REPO_ROOT))
        finally:
            os.chdir(previous)
    return BuiltBento(str(bento.tag), Path(bento.path))
