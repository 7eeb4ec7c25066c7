"""No secret in the chart's values or in what it renders: every credential a container gets comes from a
Secret (`valueFrom.secretKeyRef`), every password field of the values files is empty."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from freshcart.credentials import SECRET_FIELDS
from tests.integration.test_helm_chart import CHART, PROFILES, WORKLOADS, containers, render

SECRET_ENV = re.compile(r"(?i)(PASSWORD|API_KEY|SECRET|TOKEN|FERNET|JAAS)")
SECRET_KEY = re.compile(r"(?i)^(password|.*Password|apiKey|api_key|secretKey|token|fernetKey|jwtSecret)$")
FRESHCART_SECRETS = {f"FRESHCART_{name.upper()}" for name in SECRET_FIELDS}
REFERENCE = re.compile(r"\$\([A-Z0-9_]+\)")  # Kubernetes' $(VAR): another env var, itself from a Secret
URL_PASSWORD = re.compile(r"://[^:/@\s]+:([^@\s]+)@")


def secret_values(node: Any, path: str = "") -> list[str]:
    """``path=value`` of every non-empty value under a key that names a secret."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if SECRET_KEY.match(str(key)) and isinstance(value, (str, int)) and str(value).strip():
                found.append(f"{here}={value}")
            found += secret_values(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += secret_values(value, f"{path}[{index}]")
    return found


def test_the_values_files_hold_no_secret() -> None:
    files = [CHART / "values.yaml", *sorted((CHART / "ci").glob("*.yaml"))]
    found = {path.name: secret_values(yaml.safe_load(path.read_text())) for path in files}
    assert {name: hits for name, hits in found.items() if hits} == {}
    assert secret_values({"redis": {"password": "x"}}) == ["redis.password=x"]  # the check does find one


@pytest.mark.parametrize("profile", PROFILES)
def test_rendered_containers_take_credentials_from_secrets(profile: str) -> None:
    literal = []
    for doc in (d for d in render(profile) if d["kind"] in WORKLOADS):
        for container in containers(doc):
            for env in container.get("env") or []:
                name, value = env["name"], str(env.get("value", ""))
                where = f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}: {name}"
                if (name in FRESHCART_SECRETS or SECRET_ENV.search(name)) and REFERENCE.sub("", value).strip():
                    literal.append(where)
                literal += [where for password in URL_PASSWORD.findall(value) if REFERENCE.sub("", password)]
    assert literal == []
