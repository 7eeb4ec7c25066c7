"""The Helm chart's Kafka as its pod would run it: the ConfigMap (broker configuration, start script), the container's
environment and the generated Secret that `helm template` renders start a real broker here (the Maven jars stand in
for the image's /opt/kafka; paths moved to a temp dir, ports to free loopback ports). The ACL Job's own command then
runs against it with the Job's environment, and every role is held to its ACLs."""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from pydantic import SecretStr
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePatternFilter
from kafka.admin import ResourceType
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from freshcart.credentials import KAFKA_ROLES, SECRET_FIELDS
from freshcart.kafka_acls import acl_specs
from freshcart.kafka_io import admin_client, client_auth, make_producer, topic_specs
from freshcart.services.kafka import _java, server_properties
from freshcart.services.process import spawn, stop_pid, wait_for_port
from freshcart.settings import Settings, load_settings
from tests.integration.conftest import _loopback_port
from tests.integration.test_helm_chart import render

RELEASE = "fc"
NAMESPACE = "default"
TIMEOUTS = {"request_timeout_ms": 10_000}
REFUSED = {"bootstrap_timeout_ms": 5000, "max_block_ms": 5000}
"""A client the broker is expected to refuse gives up after 5 s (a refused login looks like no broker to it)."""
PER_NODE = {"node.id", "listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs"}
"""Keys of the local broker's configuration that differ per node or machine, not by what the chart decides."""


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_env(container: dict[str, Any], secrets: dict[str, dict[str, str]], pod_name: str) -> dict[str, str]:
    """The container's environment as the kubelet would give it: literal values with their $(VAR) references
    expanded, the pod's name and namespace, and secretKeyRef values from the rendered Secrets."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(item["value"]))
        elif "fieldRef" in item["valueFrom"]:
            field = item["valueFrom"]["fieldRef"]["fieldPath"]
            env[item["name"]] = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE}[field]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
    return env


@dataclass
class ChartKafka:
    """A broker started from the chart's rendered objects, and the ACL Job's command and environment."""

    bootstrap: str
    passwords: dict[str, str]
    job_args: list[str]
    job_env: dict[str, str]
    settings: Settings
    root: Path

    def run_job(self, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
        """The ACL Job's container command (`freshcart ...`, then ``extra``) with the Job's environment (and ``env``
        on top)."""
        assert self.job_args[0] == "freshcart", self.job_args
        return subprocess.run([sys.executable, "-m", "freshcart", *self.job_args[1:], *extra], capture_output=True,
                              text=True, timeout=400, env={**self.job_env, **env})

    def role(self, role: str, password: str | None = None) -> Settings:
        """Settings of a client authenticated as ``role`` (with ``password`` instead of the Secret's)."""
        field = f"kafka_{role}_password"
        return self.settings if password is None else self.settings.model_copy(update={field: SecretStr(password)})


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render("default")


@pytest.fixture(scope="module")
def chart_kafka(rendered: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartKafka]:
    name = f"{RELEASE}-freshcart-kafka"
    config = find(rendered, "ConfigMap", name)["data"]
    statefulset = find(rendered, "StatefulSet", name)
    job = find(rendered, "Job", f"{RELEASE}-freshcart-kafka-acls")
    settings_map = find(rendered, "ConfigMap", f"{RELEASE}-freshcart-settings")["data"]
    secrets = {doc["metadata"]["name"]: {key: base64.b64decode(value).decode() for key, value in doc["data"].items()}
               for doc in rendered if doc["kind"] == "Secret" and doc.get("data")}
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}

    root = tmp_path_factory.mktemp("chart-kafka")
    port, controller = _loopback_port(), _loopback_port()
    home, conf = root / "opt-kafka", root / "etc-freshcart-kafka"
    moves = {mounts["config"]: conf, mounts["data"]: root / "data", mounts["tmp"]: root / "tmp", "/opt/kafka": home}

    paths = re.compile(r"(?<![\w.-])(%s)(?![\w.-])" % "|".join(map(re.escape, moves)))

    def moved(text: str) -> str:
        text = paths.sub(lambda match: str(moves[match.group(1)]), text)  # one pass: a new path is not moved again
        text = re.sub(r"(\d+)@[^,@]+:9093", rf"\g<1>@127.0.0.1:{controller}", text)  # the quorum's voters
        return text.replace("://:9092", f"://127.0.0.1:{port}").replace("://:9093", f"://127.0.0.1:{controller}")

    conf.mkdir()
    for key, text in config.items():  # the ConfigMap as its volume mounts it
        (conf / key).write_text(moved(text))
    # the image's kafka-storage.sh and kafka-server-start.sh: the same classes on the jars from Maven Central
    local = load_settings(data_dir=root / "local", kafka_heap_mb=256)
    (home / "bin").mkdir(parents=True)
    for script, main in (("kafka-storage.sh", "kafka.tools.StorageTool"), ("kafka-server-start.sh", "kafka.Kafka")):
        argv = _java(local, {"log4j": conf / "log4j2.properties"}, main)
        (home / "bin" / script).write_text(f'#!/bin/bash\nexec {shlex.join(argv)} "$@"\n')
        (home / "bin" / script).chmod(0o755)

    env = pod_env(container, secrets, f"{name}-0")
    env["ADVERTISED_LISTENER"] = re.sub(r"//[^/]+:9092$", f"//127.0.0.1:{port}", env["ADVERTISED_LISTENER"])
    command = [moved(part) for part in container["command"]]
    log = root / "kafka.log"
    pid = spawn("chart-kafka", command, log, root / "kafka.pid", env=env)
    try:
        wait_for_port("chart-kafka", "127.0.0.1", port, pid, log, 90)
        job_container = job["spec"]["template"]["spec"]["containers"][0]
        job_env = {key: value for key, value in os.environ.items() if not key.startswith("FRESHCART_")}
        job_env |= {**settings_map, **pod_env(job_container, secrets, "acls"), "HOME": str(root),
                    "FRESHCART_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "FRESHCART_DATA_DIR": str(root / "job-data")}
        settings = load_settings(**{key.removeprefix("FRESHCART_").lower(): value for key, value in job_env.items()
                                    if key.startswith("FRESHCART_")}, secrets_dir=root / "no-secrets")
        yield ChartKafka(f"127.0.0.1:{port}", {role: secrets[name][f"{role}-password"] for role in KAFKA_ROLES},
                         job_container["args"], job_env, settings, root)
    finally:
        stop_pid(pid, timeout=30.0)


def read_one(settings: Settings, role: str, topic: str, group: str | None = None) -> int:
    """Records ``role`` reads from ``topic`` (as a member of ``group`` when given, else by assignment)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", **client_auth(settings, role), **TIMEOUTS)
    try:
        if group:
            consumer.subscribe([topic])
        else:
            consumer.assign([TopicPartition(topic, p) for p in range(settings.events_partitions)])
            consumer.seek_to_beginning()
        records = 0
        for _ in range(40):
            records += sum(len(batch) for batch in consumer.poll(timeout_ms=500).values())
            if records:
                break
        return records
    finally:
        consumer.close()


def test_the_chart_broker_holds_each_role_to_its_acls(chart_kafka: ChartKafka) -> None:
    settings = chart_kafka.settings
    admin = admin_client(settings)  # the admin principal: the broker's super user, from the format's --add-scram
    try:
        admin.create_topics(topic_specs(settings), wait_for_metadata=True)
    finally:
        admin.close()
    probe = b'{"probe": "%s"}' % uuid.uuid4().hex.encode()

    # the roles' credentials came with the format: the producer logs in, but no ACL lets it write yet
    producer = make_producer(settings, "producer", bootstrap_timeout_ms=10_000, max_block_ms=10_000, **TIMEOUTS)
    with pytest.raises(TopicAuthorizationFailedError):
        producer.send(settings.events_topic, key=b"1", value=probe).get(timeout=15)
    producer.close()

    job = chart_kafka.run_job()
    assert job.returncode == 0, job.stdout + job.stderr
    assert f"{len(acl_specs(settings))} ACLs of the roles in place" in job.stdout
    admin = admin_client(settings)
    try:
        everything = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                               permission_type=ACLPermissionType.ANY, resource_pattern=ResourcePatternFilter(
                                   ResourceType.ANY, None, ACLResourcePatternType.ANY))
        held, _ = admin.describe_acls(everything)
    finally:
        admin.close()
    assert set(acl_specs(settings)) <= set(held)

    producer = make_producer(settings, "producer", **TIMEOUTS)  # freshcart-producer writes the events topic ...
    producer.send(settings.events_topic, key=b"1", value=probe).get(timeout=30)
    with pytest.raises(KafkaError):  # ... and nothing else
        producer.send(settings.predictions_topic, value=b"{}").get(timeout=15)
    producer.close()
    assert read_one(settings, "stream", settings.events_topic, settings.stream_group) == 1  # in its group
    with pytest.raises(KafkaError, match="(?i)group"):  # but in no other group
        read_one(settings, "stream", settings.events_topic, f"{settings.stream_group}-other")
    for role, topic in (("producer", settings.events_topic), ("serving", settings.dlq_topic),
                        ("monitoring", settings.events_topic)):
        try:  # a topic its ACLs do not let it read: not in its metadata, or the fetch refused
            assert read_one(settings, role, topic) == 0, (role, topic)
        except TopicAuthorizationFailedError:
            pass
    serving = make_producer(settings, "serving", **TIMEOUTS)  # the scoring service writes the prediction log
    serving.send(settings.predictions_topic, key=b"1", value=b"{}").get(timeout=30)
    serving.close()
    assert read_one(settings, "monitoring", settings.predictions_topic, "freshcart-predictions-ingest-test") == 1


def test_the_chart_broker_refuses_a_wrong_password_or_none(chart_kafka: ChartKafka) -> None:
    with pytest.raises(KafkaError):  # PLAINTEXT against the SASL listener never bootstraps
        KafkaProducer(bootstrap_servers=chart_kafka.bootstrap, **REFUSED, **TIMEOUTS)
    for role in ("admin", "producer"):
        with pytest.raises(KafkaError):
            make_producer(chart_kafka.role(role, "not-the-password"), role, **REFUSED, **TIMEOUTS)


def test_the_acl_job_sets_a_changed_role_password(chart_kafka: ChartKafka) -> None:
    """A password changed in the Secret after the format: the Job's next run (post-upgrade) makes it the one."""
    new = uuid.uuid4().hex
    job = chart_kafka.run_job(FRESHCART_KAFKA_SERVING_PASSWORD=new)
    assert job.returncode == 0, job.stdout + job.stderr
    assert "SCRAM-SHA-512 credentials set for freshcart-producer" in job.stdout
    make_producer(chart_kafka.role("serving", new), "serving", max_block_ms=10_000, **TIMEOUTS).close()
    with pytest.raises(KafkaError):
        make_producer(chart_kafka.role("serving"), "serving", **REFUSED, **TIMEOUTS)


def test_the_acl_job_fails_clearly_with_a_wrong_admin_password(chart_kafka: ChartKafka) -> None:
    # no waiting for the brokers here: a refused login reads like an unreachable broker to the client
    job = chart_kafka.run_job("--wait-seconds", "0", FRESHCART_KAFKA_ADMIN_PASSWORD="not-the-password")
    assert job.returncode == 1, job.stdout + job.stderr
    assert "freshcart-admin" in job.stderr and "FRESHCART_KAFKA_ADMIN_PASSWORD" in job.stderr, job.stderr
    assert "ACLs of the roles in place" not in job.stdout


def test_chart_and_local_broker_share_their_security_configuration(rendered: list[dict[str, Any]],
                                                                   tmp_path: Path) -> None:
    chart = properties(find(rendered, "ConfigMap", f"{RELEASE}-freshcart-kafka")["data"]["server.properties"])
    local_settings = load_settings(data_dir=tmp_path, auth=True, secrets_dir=tmp_path / "secrets",
                                   kafka_admin_password="x")
    local = properties(server_properties(local_settings, tmp_path))
    shared = {key for key in local if ".jaas." not in key and key not in PER_NODE and "replication" not in key
              and not key.endswith(("min.isr", "initial.rebalance.delay.ms", "num.partitions"))}
    assert {key: chart.get(key) for key in shared} == {key: local[key] for key in shared}
    assert chart["super.users"] == f"User:{KAFKA_ROLES['admin']}"


def test_chart_principals_and_password_variables_are_the_settings(rendered: list[dict[str, Any]]) -> None:
    secret = find(rendered, "Secret", f"{RELEASE}-freshcart-kafka")
    assert set(secret["data"]) == {f"{role}-password" for role in KAFKA_ROLES}
    script = find(rendered, "ConfigMap", f"{RELEASE}-freshcart-kafka")["data"]["start.sh"]
    roles = re.search(r"for role in ([\w ]+); do", script)
    assert roles and roles.group(1).split() == list(KAFKA_ROLES)
    assert "name=freshcart-${role}" in script and all(name == f"freshcart-{role}" for role, name in KAFKA_ROLES.items())
    job = find(rendered, "Job", f"{RELEASE}-freshcart-kafka-acls")["spec"]["template"]["spec"]["containers"][0]
    names = {item["name"].removeprefix("FRESHCART_").lower() for item in job["env"]}
    assert names == {f"kafka_{role}_password" for role in KAFKA_ROLES} and names <= set(SECRET_FIELDS)


def test_the_acl_command_names_what_is_missing(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FRESHCART_")}
    env |= {"FRESHCART_DATA_DIR": str(tmp_path), "FRESHCART_KAFKA_BOOTSTRAP": "127.0.0.1:9"}

    def run(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "freshcart", "services", "kafka-acls", *args], capture_output=True,
                              text=True, timeout=120, env={**env, **more})

    off = run(FRESHCART_AUTH="false")
    assert off.returncode == 2 and "FRESHCART_AUTH is false" in off.stderr, off.stderr
    no_role = run(FRESHCART_KAFKA_ADMIN_PASSWORD="a")
    assert no_role.returncode == 2 and "FRESHCART_KAFKA_PRODUCER_PASSWORD is not set" in no_role.stderr
    assert "--no-principals" in no_role.stderr
    no_admin = run("--no-principals")
    assert no_admin.returncode == 2 and "FRESHCART_KAFKA_ADMIN_PASSWORD is not set" in no_admin.stderr
    assert "kafka-acls" in run("--help").stdout
