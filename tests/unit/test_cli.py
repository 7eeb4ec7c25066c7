"""The `freshcart` command line as a user sees it."""

from __future__ import annotations

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


def test_library_chatter_is_quiet_unless_verbose():
    import logging
    import warnings

    mlflow_log = logging.getLogger("mlflow")
    before = mlflow_log.level
    try:
        with warnings.catch_warnings():
            mlflow_log.setLevel(logging.INFO)
            assert runner.invoke(app, ["--verbose", "config", "show"]).exit_code == 0
            assert mlflow_log.level == logging.INFO
            assert runner.invoke(app, ["config", "show"]).exit_code == 0
            assert mlflow_log.level == logging.WARNING
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)  # what a library would see without the filters
                runner.invoke(app, ["config", "show"])
                warnings.warn_explicit("Add type hints to the `predict` method", UserWarning, "x.py", 1,
                                       module="mlflow.pyfunc.utils")
                warnings.warn("a FreshCart warning", UserWarning)
            assert [str(w.message) for w in caught] == ["a FreshCart warning"]
    finally:
        mlflow_log.setLevel(before)
