"""The Helm chart helm/freshcart: lint, render, kubeconform, kube-score, helm-unittest, the
Dockerfile, and install / upgrade / uninstall against a real kube-apiserver (no kubelet: the
objects must be accepted, no pod runs)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import kube_tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "freshcart"
SCHEMAS = REPO / ".tools" / "schemas"
PROFILES = ["default", *sorted(path.stem for path in (CHART / "ci").glob("*-values.yaml"))]
WORKLOADS = {"Deployment", "StatefulSet", "Job"}

# kube-score findings the chart keeps, each with its reason (helm/README.md lists them too).
KUBE_SCORE_IGNORED_TESTS = {
    "container-image-pull-policy": "images are pinned to version tags; images.<name>.pullPolicy sets Always if wanted",
    "pod-networkpolicy": "egress stays open: external Kafka, Redis, PostgreSQL and MLflow have addresses the chart "
                         "cannot know; ingress is closed per component with networkPolicies.enabled",
}
KUBE_SCORE_KEPT = {
    ("scoring", "writable root filesystem"): "BentoML writes its runtime files under the bento home in the image",
    ("scoring", "low user ID"): "the bentoml user (1034) of the images `bentoml containerize` builds",
    ("scoring", "low group ID"): "the bentoml group (1034) of the images `bentoml containerize` builds",
    ("kafka", "low user ID"): "the appuser (1000) that owns /opt/kafka in the apache/kafka image",
    ("kafka", "low group ID"): "the appuser group (1000) of the apache/kafka image",
    ("postgresql", "low user ID"): "the postgres user (70) of the postgres alpine image",
    ("postgresql", "low group ID"): "the postgres group (70) of the postgres alpine image",
    ("mlflow", "update strategy"): "one pod owns the ReadWriteOnce artifacts volume: Recreate",
    ("mlflow", "few replicas"): "one pod owns the ReadWriteOnce artifacts volume",
    ("evidently", "update strategy"): "one pod owns the ReadWriteOnce workspace volume: Recreate",
    ("evidently", "few replicas"): "one pod owns the ReadWriteOnce workspace volume",
}


def run(*args: str | Path, check: bool = True, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = None
    if kubeconfig is not None:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(kubeconfig.parent), "KUBECONFIG": str(kubeconfig),
               "HELM_CACHE_HOME": str(kubeconfig.parent / "helm-cache"),
               "HELM_CONFIG_HOME": str(kubeconfig.parent / "helm-config"),
               "HELM_DATA_HOME": str(kubeconfig.parent / "helm-data")}
    result = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, timeout=300, env=env)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def profile_args(profile: str) -> list[str | Path]:
    return [] if profile == "default" else ["-f", CHART / "ci" / f"{profile}.yaml"]


def render(profile: str, *extra: str) -> list[dict[str, Any]]:
    out = run(kube_tool("helm"), "template", "fc", CHART, *profile_args(profile), *extra).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


@pytest.mark.parametrize("profile", PROFILES)
def test_lint_strict_and_render(profile: str) -> None:
    run(kube_tool("helm"), "lint", "--strict", CHART, *profile_args(profile))
    kinds = {doc["kind"] for doc in render(profile)}
    assert {"Deployment", "ConfigMap", "Service"} <= kinds
    if profile == "minimal-values":  # Kafka, Redis and PostgreSQL are external there
        assert "StatefulSet" not in kinds


def test_values_that_must_fail_to_render_do_fail() -> None:
    helm = kube_tool("helm")
    cases = {
        ("--set", "streamProcessor.replicas=5"): "streamProcessor.replicas is 5 but kafka.topics.events.partitions "
                                                 "is 4",
        ("--set", "kafka.auth.enabled=false"): "the chart's own Kafka always runs SASL/SCRAM-SHA-512 with ACLs",
        ("--set", "freshcart.settings.auth=false"): "FRESHCART_AUTH follows kafka.auth.enabled",
        ("--set", "kafka.enabled=false,kafka.external.bootstrapServers=k:9092"): "kafka.auth.existingSecret is "
                                                                                 "required",
        ("--set", "kafka.replica=3"): "additional properties 'replica' not allowed",
        ("--set", "kafka.enabled=false"): "kafka.external.bootstrapServers is required when kafka.enabled is false",
        ("--set", "scoring.gpu.count=0"): "/scoring/gpu/count",
    }
    for args, message in cases.items():
        result = run(helm, "template", "fc", CHART, *args, check=False)
        assert result.returncode != 0, f"{args} rendered"
        assert message in result.stderr, result.stderr


@pytest.fixture(scope="module")
def kubeconform_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """kubeconform over every rendered profile in one run (it compiles the schemas once)."""
    root = tmp_path_factory.mktemp("kubeconform")
    for profile in PROFILES:
        (root / f"{profile}.yaml").write_text(
            run(kube_tool("helm"), "template", "fc", CHART, *profile_args(profile)).stdout)
    results: dict[str, list[dict[str, Any]]] = {profile: [] for profile in PROFILES}
    for resource in kubeconform(*sorted(root.glob("*.yaml")))["resources"]:
        results[Path(resource["filename"]).stem].append(resource)
    return results


@pytest.mark.parametrize("profile", PROFILES)
def test_kubeconform_strict(profile: str, kubeconform_results: dict[str, list[dict[str, Any]]]) -> None:
    resources = kubeconform_results[profile]
    assert resources, f"kubeconform saw no object of {profile}"
    bad = [resource for resource in resources if resource["status"] != "statusValid"]
    assert not bad, bad


def kubeconform(*manifests: Path) -> dict[str, Any]:
    location = f"{SCHEMAS}/{{{{.ResourceKind}}}}{{{{.KindSuffix}}}}.json"
    out = run(kube_tool("kubeconform"), "-strict", "-summary", "-verbose", "-output", "json",
              "-schema-location", location, *manifests, check=False).stdout
    return json.loads(out)


def test_kubeconform_rejects_an_unknown_field(tmp_path: Path) -> None:
    docs = [doc for doc in render("default", "--show-only", "templates/stream-processor.yaml")
            if doc["kind"] == "Deployment"]
    docs[0]["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"tcpSocket": {"port": 9108}}
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    assert kubeconform(manifest)["summary"]["invalid"] == 1


def test_kube_score_findings_are_fixed_or_listed(tmp_path: Path) -> None:
    manifest = tmp_path / "full.yaml"
    manifest.write_text(run(kube_tool("helm"), "template", "fc", CHART, *profile_args("full-values")).stdout)
    out = run(kube_tool("kube-score"), "score", "--output-format", "ci", "--ignore-container-cpu-limit",
              "--ignore-test", ",".join(KUBE_SCORE_IGNORED_TESTS), manifest, check=False).stdout
    findings = [line for line in out.splitlines() if line.startswith(("[CRITICAL]", "[WARNING]"))]
    assert len(out.splitlines()) > 100  # kube-score did score the objects
    unlisted = [line for line in findings
                if not any(f"fc-freshcart-{component} " in line and text in line
                           for component, text in KUBE_SCORE_KEPT)]
    assert not unlisted, "kube-score findings without a reason:\n" + "\n".join(unlisted)
    stale = [key for key in KUBE_SCORE_KEPT
             if not any(f"fc-freshcart-{key[0]} " in line and key[1] in line for line in findings)]
    assert not stale, f"listed kube-score findings that no longer occur: {stale}"


def test_helm_unittest_suites() -> None:
    result = run(kube_tool("helm-unittest"), "--color=false", CHART, check=False)
    counts = re.search(r"Tests:\s+(?:(\d+) failed, )?(\d+) passed, (\d+) total", result.stdout)
    assert counts, result.stdout
    print(f"helm-unittest: {counts.group(2)} passed, {counts.group(1) or 0} failed")
    assert result.returncode == 0 and counts.group(1) is None, result.stdout
    assert int(counts.group(2)) >= 20


@pytest.mark.parametrize("profile", PROFILES)
def test_no_secret_value_in_a_config_map(profile: str) -> None:
    docs = render(profile)
    values = [base64.b64decode(value).decode() for doc in docs if doc["kind"] == "Secret"
              for value in (doc.get("data") or {}).values()]
    values += [value for doc in docs if doc["kind"] == "Secret" for value in (doc.get("stringData") or {}).values()]
    config = "\n".join(str(value) for doc in docs if doc["kind"] == "ConfigMap"
                       for value in (doc.get("data") or {}).values())
    assert values or profile == "minimal-values"
    assert not [value for value in values if len(value) >= 16 and value in config]
    # a password after `password=` or `password:` is a shell variable (the Kafka start script's JAAS lines), no literal
    literal = re.compile(r'(?i)password[=:]\s*\\?"?[^$\s"\\]')
    assert not literal.search(config)
    assert literal.search('password=\\"s3cret\\"') and not literal.search('password=\\"${KAFKA_PASSWORD}\\"')


@pytest.mark.parametrize("profile", PROFILES)
def test_every_container_has_requests_probes_and_a_locked_down_context(profile: str) -> None:
    for doc in render(profile):
        if doc["kind"] not in WORKLOADS:
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in containers(doc):
            where = f"{doc['kind']} {doc['metadata']['name']} container {container['name']}"
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            if doc["kind"] != "Job" and container in pod["containers"]:
                assert container["livenessProbe"] != container["readinessProbe"], where


def test_dockerfile_parses_and_installs_like_make_setup() -> None:
    text = (REPO / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in re.sub(r"\\\n\s*", " ", text).splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    known = {"FROM", "ARG", "ENV", "RUN", "WORKDIR", "COPY", "USER", "CMD", "EXPOSE", "LABEL", "ENTRYPOINT"}
    assert instructions[0][0] == "FROM" and all(word in known for word, *_ in instructions), instructions
    for word, *rest in instructions:
        if word == "COPY":
            for source in rest[0].split()[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: no such path"
    run_lines = " && ".join(rest[0] for word, *rest in instructions if word == "RUN")
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("$(VENV)/.installed:", 1)[1].split("\n\n", 1)[0]
    for line in recipe.splitlines()[1:]:
        command = line.strip().lstrip("@").split("||")[-1].strip()
        if command.startswith("touch"):
            continue
        # $(VAR) of make is ${VAR} in the Dockerfile; the image's own python3 boots the venv
        command = re.sub(r"\$\((\w+)\)", r"${\1}", command).replace("${PYTHON_BOOT}", "python3")
        assert command in run_lines, f"make setup runs `{command}`, the Dockerfile does not"
    uv_version = re.search(r"^UV_VERSION := (\S+)", makefile, re.M)
    assert uv_version and f"ARG UV_VERSION={uv_version.group(1)}" in text


@pytest.fixture(scope="module")
def cluster(kube_apiserver: Path) -> Path:
    return kube_apiserver


def test_server_side_dry_run_accepts_every_profile(cluster: Path) -> None:
    for profile in PROFILES:
        result = run(kube_tool("helm"), "install", f"dry-{profile[:7]}", CHART, *profile_args(profile),
                     "--namespace", "default", "--dry-run=server", kubeconfig=cluster)
        assert "STATUS: pending-install" in result.stdout, result.stdout[-2000:]


def test_server_refuses_what_the_schemas_let_through(cluster: Path) -> None:
    # a quantity is any string to the values schema, to kubeconform and to helm's dry run; the API
    # server parses it and refuses the object
    namespace = f"refused-{uuid.uuid4().hex[:6]}"
    result = run(kube_tool("helm"), "install", "fc", CHART, "--namespace", namespace, "--create-namespace",
                 "--set-string", "scoring.resources.requests.memory=lots", kubeconfig=cluster, check=False)
    assert result.returncode != 0 and "quantities must match" in result.stderr, result.stderr
    run(kube_tool("helm"), "uninstall", "fc", "--namespace", namespace, kubeconfig=cluster)


def test_install_upgrade_uninstall_full_profile(cluster: Path) -> None:
    helm = kube_tool("helm")
    namespace = f"freshcart-{uuid.uuid4().hex[:6]}"
    # no kubelet runs the Kafka ACL Job, and helm waits for a hook Job to finish: a plain Job here (the server still
    # checks it), the hook in the dry run
    base, plain_job = ["--namespace", namespace], ["--set", "kafka.acls.useHelmHooks=false"]
    run(helm, "install", "fc", CHART, *profile_args("full-values"), *base, "--create-namespace", "--dry-run=server",
        kubeconfig=cluster)
    installed = run(helm, "install", "fc", CHART, *profile_args("full-values"), *base, *plain_job,
                    "--create-namespace", kubeconfig=cluster).stdout
    assert "STATUS: deployed" in installed and "helm test fc" in installed
    manifest = yaml.safe_load_all(run(helm, "get", "manifest", "fc", *base, kubeconfig=cluster).stdout)
    secret_before = {doc["metadata"]["name"]: doc for doc in manifest if doc and doc["kind"] == "Secret"}
    run(helm, "upgrade", "fc", CHART, *profile_args("full-values"), *base, *plain_job,
        "--set", "scoring.autoscaling.maxReplicas=3", "--set", "streamProcessor.replicas=4", kubeconfig=cluster)
    values = json.loads(run(helm, "get", "values", "fc", *base, "-o", "json", kubeconfig=cluster).stdout)
    assert values["scoring"]["autoscaling"]["maxReplicas"] == 3
    status = json.loads(run(helm, "status", "fc", *base, "-o", "json", "--show-resources", kubeconfig=cluster).stdout)
    assert status["version"] == 2 and status["info"]["status"] == "deployed"
    # the objects as the API server holds them, after the upgrade
    held = {(item["kind"], item["metadata"]["name"]): item for group, items in status["info"]["resources"].items()
            if not group.endswith("(related)") for item in items}
    assert held[("StatefulSet", "fc-freshcart-kafka")]["spec"]["replicas"] == 3
    assert held[("Deployment", "fc-freshcart-stream-processor")]["spec"]["replicas"] == 4
    assert held[("HorizontalPodAutoscaler", "fc-freshcart-scoring")]["spec"]["maxReplicas"] == 3
    acls = held[("Job", "fc-freshcart-kafka-acls-2")]["spec"]["template"]["spec"]["containers"][0]  # the upgrade's
    assert acls["args"][:3] == ["freshcart", "services", "kafka-acls"] and len(acls["env"]) == 5
    after = {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(
        run(helm, "get", "manifest", "fc", *base, kubeconfig=cluster).stdout) if doc and doc["kind"] == "Secret"}
    generated = [name for name in secret_before if "data" in secret_before[name]]
    assert "fc-freshcart-kafka" in generated  # the SCRAM passwords stay those the brokers were formatted with
    assert generated and all(after[name]["data"] == secret_before[name]["data"] for name in generated)
    run(helm, "uninstall", "fc", *base, "--wait", "--timeout", "60s", kubeconfig=cluster)
    listed = json.loads(run(helm, "list", *base, "-a", "-o", "json", kubeconfig=cluster).stdout)
    assert listed == []
