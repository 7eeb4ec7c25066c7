"""The FreshCart page of the Airflow UI: what it shows, gathered and rendered without a web framework.

:func:`gather_page` reads the model registry (champion and challenger with their
holdout figures, the promotion decisions recorded on the versions) and the
monitoring tables (the last verdicts, their windows and reports, the cooldown);
:func:`render_page` turns that into one HTML page. The Airflow plugin
(``plugins/freshcart_ui.py``) serves it behind Airflow's own login; report links
are relative to the page (``reports/<window>``), the Evidently links go to
``FRESHCART_MONITOR_UI_URL``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from freshcart.monitoring import tables
from freshcart.monitoring.report import window_key
from freshcart.monitoring.workspace import PROJECT, workspace_dir
from freshcart.settings import Settings

FIGURES = ("auc", "pr_auc", "log_loss", "calibration_error", "oracle_auc")
"""Holdout figures shown per model version (those its run logged as ``holdout_<name>``)."""
WINDOW_KEY = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{4}$")


@dataclass
class ModelCard:
    """One registered version: its alias, type, run and holdout figures."""

    alias: str
    version: str
    model_type: str
    run_id: str
    figures: dict[str, float] = field(default_factory=dict)


@dataclass
class PageData:
    """Everything the page shows; ``as_json()`` is what ``state.json`` returns."""

    model: str
    champion: ModelCard | None
    challenger: ModelCard | None
    promotions: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]
    cooldown: dict[str, Any]
    evidently_url: str
    project_id: str | None
    registry_error: str = ""

    def as_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(_finite(asdict(self)), default=str))


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def project_id(settings: Settings) -> str | None:
    """The id of the Evidently project ``freshcart-propensity`` in the workspace (None before the first window)."""
    for path in sorted(workspace_dir(settings).glob("*/metadata.json")):
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("name") == PROJECT:
            return str(meta.get("id"))
    return None


def _card(client: Any, name: str, alias: str) -> ModelCard | None:
    from freshcart.training.registry import version_by_alias

    version = version_by_alias(client, name, alias)
    if version is None:
        return None
    metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
    figures = {f: float(metrics[f"holdout_{f}"]) for f in FIGURES if f"holdout_{f}" in metrics}
    return ModelCard(alias, str(version.version), str((version.tags or {}).get("model_type", "")), version.run_id or "",
                     figures)


def promotions(client: Any, name: str, limit: int = 10) -> list[dict[str, Any]]:
    """The promotion decisions recorded on the versions of ``name`` (tags ``promotion.*``), newest first."""
    found = []
    for version in client.search_model_versions(f"name='{name}'"):
        tags = {k.removeprefix("promotion."): v for k, v in (version.tags or {}).items() if k.startswith("promotion.")}
        if tags:
            found.append({"version": str(version.version), **tags})
    return sorted(found, key=lambda d: d.get("decided_at", ""), reverse=True)[:limit]


def cooldown_state(settings: Settings, decisions: pd.DataFrame, now: datetime) -> dict[str, Any]:
    """The last triggered retraining and the end of its cooldown; ``active`` as of ``now``."""
    hours = settings.retrain_cooldown_hours
    triggered = decisions[decisions["trigger"].astype(bool)] if "trigger" in decisions else decisions.head(0)
    if triggered.empty:
        return {"hours": hours, "last_trigger": None, "run_id": None, "until": None, "active": False}
    last = triggered.sort_values("window_end").iloc[-1]
    end = pd.Timestamp(last["window_end"]).to_pydatetime()
    until = end + timedelta(hours=hours)
    return {"hours": hours, "last_trigger": end.isoformat(), "run_id": str(last["run_id"]),
            "until": until.isoformat(), "active": now < until}


def verdicts(settings: Settings, limit: int = 12) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """The last ``limit`` verdicts, newest first, with their window's figures and report; and all decisions."""
    decisions = tables.read_table(settings, tables.DECISIONS)
    windows = tables.read_table(settings, tables.WINDOWS)
    rows = []
    for _, decision in decisions.tail(limit).iloc[::-1].iterrows():
        start = pd.Timestamp(decision["window_start"]).to_pydatetime()
        window = windows[pd.to_datetime(windows["window_start"], utc=True) == start] if not windows.empty else windows
        info = window.iloc[-1] if not window.empty else pd.Series(dtype=object)
        report = str(info.get("report", "") or "")
        snapshot = Path(report).with_name("snapshot.id") if report else None
        rows.append({
            "window_start": start.isoformat(), "window": window_key(start), "action": str(decision["action"]),
            "trigger": bool(decision["trigger"]), "reason": str(decision["reason"]), "run_id": str(decision["run_id"]),
            "drifted_columns": str(decision.get("drifted_columns", "") or ""),
            "rows": _number(info.get("rows")), "drifted_share": _number(info.get("drifted_share")),
            "estimated_auc": _number(info.get("estimated_auc")), "measured_auc": _number(info.get("measured_auc")),
            "model_version": str(info.get("model_version", "") or ""),
            "report": bool(report) and Path(report).is_file(),
            "snapshot_id": snapshot.read_text().strip() if snapshot is not None and snapshot.is_file() else None,
        })
    return rows, decisions


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def gather_page(settings: Settings, now: datetime | None = None, client: Any = None) -> PageData:
    """What the page shows now: the registry's champion, challenger and promotions, the last verdicts, the cooldown."""
    from freshcart.training.registry import CHALLENGER, CHAMPION, connect

    name = settings.registered_model
    champion = challenger = None
    promoted: list[dict[str, Any]] = []
    error = ""
    try:
        client = client or connect(settings)
        champion, challenger = _card(client, name, CHAMPION), _card(client, name, CHALLENGER)
        promoted = promotions(client, name)
    except Exception as exc:  # noqa: BLE001 - the page still shows the monitoring tables
        error = f"model registry {settings.tracking_uri}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    rows, decisions = verdicts(settings)
    return PageData(model=name, champion=champion, challenger=challenger, promotions=promoted, verdicts=rows,
                    cooldown=cooldown_state(settings, decisions, now or datetime.now(timezone.utc)),
                    evidently_url=settings.monitor_ui_url.rstrip("/"), project_id=project_id(settings),
                    registry_error=error)


def report_file(settings: Settings, window: str) -> Path:
    """The HTML report of window ``window`` (``YYYY-MM-DDTHHMM``); a clear error for any other name."""
    if not WINDOW_KEY.match(window):
        raise ValueError(f"window {window!r} is not a window key: give YYYY-MM-DDTHHMM, e.g. 2025-01-15T1200")
    path = tables.monitoring_dir(settings) / "reports" / f"window={window}" / "report.html"
    if not path.is_file():
        raise FileNotFoundError(f"no report for window {window} ({path}): the report task writes it")
    return path
