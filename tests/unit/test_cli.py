"""The `freshcart` command line as a user sees it."""

from __future__ import annotations

import os

from typer.testing import CliRunner

from freshcart.cli import app

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("services", "config", "ingest-file", "simulate", "demo"):
        assert command in result.output
    services = runner.invoke(app, ["services", "--help"])
    for command in ("up", "down", "status"):
        assert command in services.output


def test_ingest_file_prints_counts(tmp_path, rees46_sample):
    result = runner.invoke(app, ["ingest-file", "--format", "rees46", str(rees46_sample), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "read 17,434 rows" in text
    assert "valid 17,434" in text and "rejected 0" in text
    assert "repeated rows in the file (same event_id, kept once) 5" in text
    assert "new events written 17,429" in text
    assert "view 97.83%" in text


def test_ingest_file_bad_format_and_missing_file(tmp_path):
    bad = runner.invoke(app, ["ingest-file", "--format", "csv", str(tmp_path / "x.csv")])
    assert bad.exit_code == 2 and "use one of rees46, taobao, native" in bad.output
    missing = runner.invoke(app, ["ingest-file", "--format", "taobao", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 1 and "no such file" in missing.output


def test_config_show_masks_secrets(monkeypatch):
    monkeypatch.setenv("FRESHCART_POSTGRES_PASSWORD", "hunter2-secret")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0
    assert "hunter2-secret" not in result.output
    assert "postgres_password" in result.output and "**********" in result.output


def test_config_error_names_the_variable(monkeypatch):
    monkeypatch.setenv("FRESHCART_PROFILE", "prod")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "FRESHCART_PROFILE='prod'" in result.output


def test_library_chatter_is_quiet_unless_verbose(monkeypatch):
    import logging
    import sysconfig
    import warnings
    from pathlib import Path

    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after the test
    mlflow_log = logging.getLogger("mlflow")
    monkeypatch.setattr(mlflow_log, "level", logging.INFO)
    library_file = str(Path(sysconfig.get_paths()["purelib"]) / "mlflow" / "pyfunc" / "model.py")
    shown = []
    warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))

    def warn_all() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # what a library's own filters may do
            warnings.warn_explicit("Add type hints to the `predict` method", UserWarning, library_file, 1)
            warnings.warn_explicit("noload is deprecated", DeprecationWarning, library_file, 2)
            warnings.warn("a FreshCart warning", UserWarning)

    assert runner.invoke(app, ["--verbose", "config", "show"]).exit_code == 0
    warn_all()
    assert mlflow_log.level == logging.INFO and len(shown) == 3
    shown.clear()
    assert runner.invoke(app, ["config", "show"]).exit_code == 0
    warn_all()
    assert mlflow_log.level == logging.WARNING
    assert shown == ["a FreshCart warning"]
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "WARNING"
