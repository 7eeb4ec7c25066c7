"""Settings: environment overrides, validation errors that name the variable, masking."""

from __future__ import annotations

import pytest

from freshcart.settings import ConfigError, load_settings


def test_defaults_are_local(monkeypatch):
    monkeypatch.delenv("FRESHCART_PROFILE", raising=False)
    settings = load_settings()
    assert settings.profile == "local"
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert settings.tracking_uri.startswith("sqlite:///")


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("FRESHCART_PROFILE", "production")
    monkeypatch.setenv("FRESHCART_KAFKA_PORT", "29092")
    monkeypatch.setenv("FRESHCART_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.profile == "production"
    assert settings.bootstrap_servers == "127.0.0.1:29092"
    assert settings.simulation_dir == tmp_path / "simulation"
    assert settings.offline_events_dir == tmp_path / "offline" / "events"
    assert settings.tracking_uri.startswith("postgresql+psycopg://freshcart@127.0.0.1:15432/freshcart_mlflow")


@pytest.mark.parametrize(
    "variable,value,expected",
    [
        ("FRESHCART_PROFILE", "staging", "FRESHCART_PROFILE='staging'"),
        ("FRESHCART_HORIZON_HOURS", "soon", "FRESHCART_HORIZON_HOURS='soon'"),
        ("FRESHCART_KAFKA_PORT", "70000", "FRESHCART_KAFKA_PORT='70000'"),
        ("FRESHCART_KAFKA_HEAP_MB", "2048", "FRESHCART_KAFKA_HEAP_MB='2048'"),
        ("FRESHCART_EVENT_TIME_FLOOR", "not-a-date", "FRESHCART_EVENT_TIME_FLOOR='not-a-date'"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert expected in str(info.value)


def test_secrets_are_masked(monkeypatch):
    monkeypatch.setenv("FRESHCART_POSTGRES_PASSWORD", "s3cret-pw")
    settings = load_settings()
    assert "s3cret-pw" in settings.postgres_dsn()  # the real value is there for clients
    shown = settings.masked()
    assert "s3cret-pw" not in repr(shown)
    assert shown["postgres_password"] == "**********"
    assert shown["postgres_dsn"] == "postgresql://freshcart:**********@127.0.0.1:15432/freshcart"


def test_importing_does_nothing():
    """No settings are read at import time: a bad environment only fails at load. In a fresh interpreter, so
    that no other test ends up holding a reloaded module's classes."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "FRESHCART_PROFILE": "bogus"}
    imported = subprocess.run([sys.executable, "-c", "import freshcart.settings"], env=env, capture_output=True,
                              text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    loaded = subprocess.run([sys.executable, "-c", "import freshcart.settings as s; s.load_settings()"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert loaded.returncode != 0 and "FRESHCART_PROFILE='bogus'" in loaded.stderr
