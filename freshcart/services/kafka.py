"""The local single-node Apache Kafka broker (KRaft, combined broker + controller).

Jars come from Maven Central (``services/kafka/pom.xml``, copied by ``make setup``);
storage is formatted once under ``<data_dir>/kafka``; logs go to
``<data_dir>/logs/kafka.log``.
"""

from __future__ import annotations

import base64
import subprocess
import time
import uuid
from pathlib import Path

from freshcart.credentials import KAFKA_ROLES
from freshcart.services.credentials import provision
from freshcart.services.process import (
    ServiceError, ServiceStatus, ensure_port_free, read_pid, spawn, stop_pid, wait_for_port,
)
from freshcart.schema import BROKER_MAX_MESSAGE_BYTES
from freshcart.settings import Settings

NAME = "kafka"
START_TIMEOUT_S = 60.0
SCRAM = "SCRAM-SHA-512"
SECRETS = tuple(f"kafka_{role}_password" for role in KAFKA_ROLES)
CONTROLLER_HOST = "127.0.0.1"
"""The KRaft controller listener stays on loopback whatever FRESHCART_BIND_HOST says: only this node's
broker talks to it (single-node cluster), over SASL/PLAIN with the admin principal."""


def _paths(settings: Settings) -> dict[str, Path]:
    home = settings.data_dir / "kafka"
    return {
        "home": home,
        "logs": home / "log-dirs",
        "config": home / "server.properties",
        "scram_marker": home / "log-dirs" / "freshcart-scram",
        "log4j": home / "log4j2.properties",
        "pid": settings.run_dir / "kafka.pid",
        "log": settings.logs_dir / "kafka.log",
    }


def _classpath(settings: Settings) -> str:
    jars = settings.kafka_jars_dir
    if not jars.is_dir() or not any(jars.glob("kafka_2.13-*.jar")):
        raise ServiceError(
            f"kafka: broker jars not found in {jars}; run `make setup` "
            "(or set FRESHCART_KAFKA_JARS_DIR to a folder holding kafka_2.13-*.jar)."
        )
    return f"{jars}/*"


def server_properties(settings: Settings, log_dirs: Path) -> str:
    host, port, ctl = settings.kafka_host, settings.kafka_port, settings.kafka_controller_port
    bind = settings.bind_host
    listener = "SASL_PLAINTEXT" if settings.auth else "PLAINTEXT"
    lines = [
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{CONTROLLER_HOST}:{ctl}",
        f"listeners={listener}://{bind}:{port},CONTROLLER://{CONTROLLER_HOST}:{ctl}",
        f"advertised.listeners={listener}://{host}:{port}",
        "controller.listener.names=CONTROLLER",
        f"inter.broker.listener.name={listener}",
        f"listener.security.protocol.map=CONTROLLER:{listener},{listener}:{listener}",
    ]
    if settings.auth:
        lines += _security_properties(settings)
    return "\n".join(
        [
            *lines,
            f"log.dirs={log_dirs}",
            f"num.partitions={settings.events_partitions}",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            f"message.max.bytes={BROKER_MAX_MESSAGE_BYTES}",
            f"replica.fetch.max.bytes={BROKER_MAX_MESSAGE_BYTES}",
            "",
        ]
    )


def _security_properties(settings: Settings) -> list[str]:
    """SASL/SCRAM-SHA-512 for clients and the broker itself, SASL/PLAIN (admin only) on the controller
    listener, ACLs by the KRaft StandardAuthorizer, the admin principal as the only super user."""
    admin, password = _admin(settings)
    scram = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{admin}" password="{password}";'
    plain = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
             f'username="{admin}" password="{password}" user_{admin}="{password}";')
    return [
        f"sasl.enabled.mechanisms={SCRAM}",
        f"sasl.mechanism.inter.broker.protocol={SCRAM}",
        f"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={scram}",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        "sasl.mechanism.controller.protocol=PLAIN",
        f"listener.name.controller.plain.sasl.jaas.config={plain}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{admin}",
        "allow.everyone.if.no.acl.found=false",
    ]


def _admin(settings: Settings) -> tuple[str, str]:
    credentials = settings.kafka_credentials("admin")
    assert credentials is not None  # credentials on
    return credentials


def _check_passwords(settings: Settings) -> None:
    """SCRAM passwords go into JAAS lines and `--add-scram`: quotes, commas and brackets would break them."""
    for name in SECRETS:
        value = getattr(settings, name).get_secret_value()
        if any(char in value for char in '"\\,[]= \n'):
            raise ServiceError(f"kafka: FRESHCART_{name.upper()} holds one of \" \\ , [ ] = or a space; choose a "
                               "password of letters, digits, '-' and '_' (or unset it to have one generated).")


def _log4j(log: Path) -> str:
    return "\n".join(
        [
            "status = warn",
            "appender.file.type = File",
            "appender.file.name = file",
            f"appender.file.fileName = {log}",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = info",
            "rootLogger.appenderRef.file.ref = file",
            "",
        ]
    )


def _java(settings: Settings, paths: dict[str, Path], *args: str) -> list[str]:
    return [
        "java", f"-Xms{min(256, settings.kafka_heap_mb)}m", f"-Xmx{settings.kafka_heap_mb}m",
        f"-Dlog4j2.configurationFile={paths['log4j']}", "-cp", _classpath(settings), *args,
    ]


def _format_storage(settings: Settings, paths: dict[str, Path]) -> None:
    """Format the KRaft storage once (a new cluster id, the admin's SCRAM credential); later starts reuse it."""
    if (paths["logs"] / "meta.properties").exists():
        if settings.auth and not paths["scram_marker"].exists():
            raise ServiceError(
                f"kafka: the storage in {paths['logs']} was formatted without credentials, so the broker cannot "
                f"authenticate its admin principal. Remove that folder (its topics are lost: `freshcart services "
                f"down && rm -rf {paths['home']}`) and start again, or set FRESHCART_AUTH=false."
            )
        return
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    scram: list[str] = []
    if settings.auth:
        admin, password = _admin(settings)
        scram = ["--add-scram", f"{SCRAM}=[name={admin},password={password}]"]
    result = subprocess.run(
        _java(settings, paths, "kafka.tools.StorageTool", "format", "-t", cluster_id,
              "-c", str(paths["config"]), *scram),
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise ServiceError(f"kafka: formatting storage failed:\n{result.stdout}\n{result.stderr}")
    if settings.auth:
        paths["scram_marker"].write_text(f"{SCRAM} admin credential added at format\n")


def start(settings: Settings) -> str:
    """Start the broker (if not running) and create the topics; a line for the user."""
    paths = _paths(settings)
    pid = read_pid(paths["pid"])
    if pid is not None:
        return f"kafka already running (pid {pid}) on {settings.bootstrap_servers}"
    settings = provision(settings, SECRETS)
    if settings.auth:
        _check_passwords(settings)
    for port, setting in ((settings.kafka_port, "FRESHCART_KAFKA_PORT"),
                          (settings.kafka_controller_port, "FRESHCART_KAFKA_CONTROLLER_PORT")):
        ensure_port_free(NAME, settings.kafka_host, port, setting)
    paths["home"].mkdir(parents=True, exist_ok=True, mode=0o700)
    paths["config"].touch(mode=0o600)
    paths["config"].chmod(0o600)  # it holds the admin's password
    paths["config"].write_text(server_properties(settings, paths["logs"]))
    paths["log4j"].write_text(_log4j(paths["log"]))
    _format_storage(settings, paths)
    started = time.monotonic()
    pid = spawn(NAME, _java(settings, paths, "kafka.Kafka", str(paths["config"])),
                settings.logs_dir / "kafka.stdout.log", paths["pid"])
    wait_for_port(NAME, settings.kafka_host, settings.kafka_port, pid, paths["log"], START_TIMEOUT_S)
    from freshcart.kafka_io import ensure_principals, ensure_topics  # kafka-python: only once a broker runs

    ensure_principals(settings)
    created = ensure_topics(settings)
    seconds = time.monotonic() - started
    topics = f"; created topics {', '.join(created)}" if created else ""
    auth = f"; SASL/{SCRAM}, principals {', '.join(KAFKA_ROLES.values())}" if settings.auth else ""
    return f"kafka started (pid {pid}) on {settings.bootstrap_servers} in {seconds:.1f}s{topics}{auth}"


def stop(settings: Settings) -> str | None:
    paths = _paths(settings)
    pid = read_pid(paths["pid"])
    paths["pid"].unlink(missing_ok=True)
    if pid is None:
        return None
    stop_pid(pid, timeout=30.0)
    return f"kafka stopped (pid {pid})"


def status(settings: Settings) -> ServiceStatus:
    paths = _paths(settings)
    pid = read_pid(paths["pid"])
    return ServiceStatus(NAME, pid is not None, pid, settings.bootstrap_servers, paths["log"])
