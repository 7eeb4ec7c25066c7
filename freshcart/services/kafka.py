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

from freshcart.services.process import (
    ServiceError, ServiceStatus, ensure_port_free, read_pid, spawn, stop_pid, wait_for_port,
)
from freshcart.schema import BROKER_MAX_MESSAGE_BYTES
from freshcart.settings import Settings

NAME = "kafka"
START_TIMEOUT_S = 60.0


def _paths(settings: Settings) -> dict[str, Path]:
    home = settings.data_dir / "kafka"
    return {
        "home": home,
        "logs": home / "log-dirs",
        "config": home / "server.properties",
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
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{host}:{ctl}",
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{ctl}",
            f"advertised.listeners=PLAINTEXT://{host}:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
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
    """Format the KRaft storage once (a new cluster id); later starts reuse it."""
    if (paths["logs"] / "meta.properties").exists():
        return
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    result = subprocess.run(
        _java(settings, paths, "kafka.tools.StorageTool", "format", "-t", cluster_id,
              "-c", str(paths["config"])),
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise ServiceError(f"kafka: formatting storage failed:\n{result.stdout}\n{result.stderr}")


def start(settings: Settings) -> str:
    """Start the broker (if not running) and create the topics; a line for the user."""
    paths = _paths(settings)
    pid = read_pid(paths["pid"])
    if pid is not None:
        return f"kafka already running (pid {pid}) on {settings.bootstrap_servers}"
    for port, setting in ((settings.kafka_port, "FRESHCART_KAFKA_PORT"),
                          (settings.kafka_controller_port, "FRESHCART_KAFKA_CONTROLLER_PORT")):
        ensure_port_free(NAME, settings.kafka_host, port, setting)
    paths["home"].mkdir(parents=True, exist_ok=True)
    paths["config"].write_text(server_properties(settings, paths["logs"]))
    paths["log4j"].write_text(_log4j(paths["log"]))
    _format_storage(settings, paths)
    started = time.monotonic()
    pid = spawn(NAME, _java(settings, paths, "kafka.Kafka", str(paths["config"])),
                settings.logs_dir / "kafka.stdout.log", paths["pid"])
    wait_for_port(NAME, settings.kafka_host, settings.kafka_port, pid, paths["log"], START_TIMEOUT_S)
    from freshcart.kafka_io import ensure_topics  # kafka-python is only needed once a broker runs

    created = ensure_topics(settings)
    seconds = time.monotonic() - started
    topics = f"; created topics {', '.join(created)}" if created else ""
    return f"kafka started (pid {pid}) on {settings.bootstrap_servers} in {seconds:.1f}s{topics}"


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
