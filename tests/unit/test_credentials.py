"""Credentials: generated secrets (mode 0600), the settings that carry them, masking, loopback by default,
the servers' configs with credentials on, the Kafka roles' ACLs, and no secret in the committed tree."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from freshcart.cli.root import app
from freshcart.credentials import SECRET_FIELDS, ensure_secrets, is_loopback, read_secrets
from freshcart.kafka_acls import role_grants
from freshcart.services import kafka, redis
from freshcart.services.credentials import exposure_warning, provision
from freshcart.settings import REPO_ROOT, ConfigError, load_settings


def test_secrets_are_generated_once_owner_only_and_the_environment_wins(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    first = ensure_secrets(folder, ("redis_password", "kafka_admin_password"), {})
    assert len(first["redis_password"]) >= 40 and first["redis_password"] != first["kafka_admin_password"]
    assert folder.stat().st_mode & 0o777 == 0o700
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in folder.iterdir())
    assert ensure_secrets(folder, ("redis_password",), {}) == {"redis_password": first["redis_password"]}
    given = ensure_secrets(folder, ("redis_password",), {"redis_password": "from-the-env"})
    assert given == {"redis_password": "from-the-env"} and read_secrets(folder)["redis_password"] == "from-the-env"
    with pytest.raises(ValueError, match="unknown secret"):
        ensure_secrets(folder, ("nope",), {})


def test_settings_read_the_stored_secrets_unless_credentials_are_off(tmp_path: Path) -> None:
    settings = provision(load_settings(data_dir=tmp_path), ("redis_password", "kafka_stream_password"))
    stored = read_secrets(tmp_path / "secrets")
    again = load_settings(data_dir=tmp_path)
    assert again.redis_password.get_secret_value() == stored["redis_password"]
    assert again.kafka_credentials("stream") == ("freshcart-stream", stored["kafka_stream_password"])
    assert stored["redis_password"] in again.online_redis_url
    assert settings.redis_password == again.redis_password
    off = load_settings(data_dir=tmp_path, auth=False)
    assert off.redis_password is None and off.kafka_credentials("stream") is None
    with pytest.raises(ConfigError, match="FRESHCART_KAFKA_PRODUCER_PASSWORD is not set"):
        load_settings(data_dir=tmp_path).kafka_credentials("producer")


def test_config_show_masks_every_secret(tmp_path: Path) -> None:
    env = {"FRESHCART_DATA_DIR": str(tmp_path), "FRESHCART_PROFILE": "production"}
    provision(load_settings(data_dir=tmp_path), SECRET_FIELDS)
    values = read_secrets(tmp_path / "secrets")
    assert set(values) == set(SECRET_FIELDS)
    result = CliRunner().invoke(app, ["config", "show"], env=env)
    assert result.exit_code == 0, result.output
    for name, value in values.items():
        assert value not in result.output, name
        assert re.search(rf"^{name}\s+= \*{{10}}", result.output, re.M), name
    assert "redis://:**********@127.0.0.1" in result.output


def test_loopback_by_default_and_a_warning_when_opened_without_credentials() -> None:
    settings = load_settings()
    assert settings.bind_host == "127.0.0.1" and settings.serving_host == "127.0.0.1" and settings.auth
    assert load_settings(bind_host="0.0.0.0").serving_host == "0.0.0.0"
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.5", "::", "shop.example"))
    assert exposure_warning("redis", "127.0.0.1", False) is None
    assert exposure_warning("redis", "0.0.0.0", True) is None
    warning = exposure_warning("redis", "0.0.0.0", False)
    assert warning and "redis listens on 0.0.0.0 without credentials" in warning and "FRESHCART_AUTH" in warning


def test_servers_configs_with_credentials_on(tmp_path: Path) -> None:
    settings = provision(load_settings(data_dir=tmp_path), (*kafka.SECRETS, "redis_password"))
    props = kafka.server_properties(settings, tmp_path / "logs")
    assert "listeners=SASL_PLAINTEXT://127.0.0.1:" in props and "PLAINTEXT://127.0.0.1" not in props.replace(
        "SASL_PLAINTEXT://127.0.0.1", "")
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512" in props
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in props
    assert "super.users=User:freshcart-admin\n" in props and "allow.everyone.if.no.acl.found=false" in props
    assert "CONTROLLER://127.0.0.1:" in kafka.server_properties(settings.model_copy(update={"bind_host": "0.0.0.0"}),
                                                                tmp_path)
    conf = redis.redis_config(settings, tmp_path, tmp_path / "redis.log")
    assert f'requirepass "{settings.redis_password.get_secret_value()}"' in conf and "bind 127.0.0.1" in conf
    off = load_settings(data_dir=tmp_path, auth=False)
    assert "requirepass" not in redis.redis_config(off, tmp_path, tmp_path / "log")
    assert "PLAINTEXT://127.0.0.1" in kafka.server_properties(off, tmp_path) and "sasl" not in \
        kafka.server_properties(off, tmp_path)


def test_each_kafka_role_gets_only_its_topics_and_groups() -> None:
    settings = load_settings()
    grants = role_grants(settings)
    names = {role: {name for _, name, _, _ in rows} for role, rows in grants.items()}
    assert names["producer"] == {settings.events_topic}
    assert names["serving"] == {settings.predictions_topic, settings.events_topic}  # events: read, for purchases
    assert settings.predictions_topic not in names["stream"] and settings.events_topic in names["stream"]
    assert settings.stream_group in names["stream"]
    writes = {role: {name for _, name, _, ops in rows if any(op.name == "WRITE" for op in ops)}
              for role, rows in grants.items()}
    assert writes["monitoring"] == set() and settings.events_topic not in writes["stream"]


SECRET_ASSIGNMENT = re.compile(
    r"(FRESHCART_(?:" + "|".join(name.upper() for name in SECRET_FIELDS) + r"|POSTGRES_URL|REDIS_URL)"
    r"|requirepass|admin_password|sasl_plain_password)\s*[=:]\s*[\"']?([A-Za-z0-9_\-+/]{8,})")
PLACEHOLDERS = re.compile(r"^(\$\{?|<|s3cret|not-the-password|from-the-env|example|SecretStr|None|Field|settings|self)", re.I)


def committed_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    return [REPO_ROOT / line for line in out.splitlines() if line and (REPO_ROOT / line).is_file()]


def test_nothing_committed_holds_a_secret() -> None:
    files = committed_files()
    assert len(files) > 100
    stored = read_secrets(load_settings().secrets_path) if load_settings().secrets_path.is_dir() else {}
    found = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        found += [f"{path.relative_to(REPO_ROOT)}: {m.group(0)}" for m in SECRET_ASSIGNMENT.finditer(text)
                  if not PLACEHOLDERS.match(m.group(2))]
        found += [f"{path.relative_to(REPO_ROOT)}: the value of {name}" for name, value in stored.items() if value in text]
    assert found == []
    assert SECRET_ASSIGNMENT.search("FRESHCART_REDIS_PASSWORD=" "Zk3v9qLmXa2")  # the pattern does find one
    assert not (REPO_ROOT / ".gitignore").is_file() or "data" in (REPO_ROOT / ".gitignore").read_text()


def test_serve_generates_the_api_key_and_hands_it_to_the_service(tmp_path: Path, monkeypatch) -> None:
    import subprocess as sp

    seen: dict = {}
    monkeypatch.setattr(sp, "call", lambda command, cwd, env: seen.update(command=command, env=env) or 0)
    env = {"FRESHCART_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(app, ["serve"], env=env)
    assert result.exit_code == 0, result.output
    key = (tmp_path / "secrets" / "serving_api_key").read_text()
    assert len(key) >= 40 and (tmp_path / "secrets" / "serving_api_key").stat().st_mode & 0o777 == 0o600
    assert seen["env"]["FRESHCART_SERVING_API_KEY"] == key and key not in result.output
    assert "--host" in seen["command"] and seen["command"][seen["command"].index("--host") + 1] == "127.0.0.1"

    seen.clear()
    opened = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"], env={**env, "FRESHCART_AUTH": "false"})
    assert opened.exit_code == 0 and "FRESHCART_SERVING_API_KEY" not in seen["env"]
    assert "listens on 0.0.0.0 without credentials" in opened.output
