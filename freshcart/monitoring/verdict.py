"""The retrain verdict of a window, with its reason, recorded whether it triggers or not.

Retrain when drift persists (an alarm in k of the last m judged windows,
``FRESHCART_MONITOR_PERSIST_WINDOWS``) and coincides with a performance drop (the
estimated or measured AUC more than ``FRESHCART_MONITOR_AUC_MARGIN`` below the
champion's holdout AUC), or on a measured drop alone. Nothing is triggered for a
window under the minimum size, inside the cooldown after the last triggered
retraining (``FRESHCART_RETRAIN_COOLDOWN_HOURS``) or while a training run is queued
or running. A triggered run's id is deterministic per cooldown bucket, so a
re-run of the same window (or another window of the bucket) cannot start a second one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd

from freshcart.monitoring import tables
from freshcart.settings import Settings

TRAIN_DAG = "train_evaluate"


@dataclass
class Decision:
    window_start: datetime
    window_end: datetime
    action: str
    """``retrain`` (trigger), ``none``, ``cooldown``, ``training_active`` or ``too_small``."""
    reason: str
    trigger: bool = False
    run_id: str = ""
    windows: list[str] = field(default_factory=list)
    drifted_columns: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def conf(self) -> dict[str, Any]:
        """The ``train_evaluate`` run conf: why, which windows and columns, and the figures."""
        return {"reason": self.reason, "windows": self.windows, "drifted_columns": self.drifted_columns,
                "figures": {k: v for k, v in self.figures.items() if not math.isnan(v)}, "models": ["xgboost"]}

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out["windows"] = ",".join(self.windows)
        out["drifted_columns"] = ",".join(self.drifted_columns)
        out["figures"] = str(self.conf()["figures"])
        return out


def persistence(settings: Settings) -> tuple[int, int]:
    k, m = (int(x) for x in settings.monitor_persist_windows.split("/"))
    if not 1 <= k <= m:
        raise ValueError(f"FRESHCART_MONITOR_PERSIST_WINDOWS={settings.monitor_persist_windows!r}: give k/m with "
                         "1 <= k <= m, e.g. 2/3")
    return k, m


def run_id_for(settings: Settings, moment: datetime) -> str:
    """The ``train_evaluate`` run id of the cooldown bucket that ``moment`` falls in."""
    hours = settings.retrain_cooldown_hours
    if hours <= 0:
        bucket = moment
    else:
        width = hours * 3600
        bucket = datetime.fromtimestamp(math.floor(moment.timestamp() / width) * width, timezone.utc)
    return f"monitor_retrain__{bucket.strftime('%Y-%m-%dT%H%M')}"


def _value(row: pd.Series, name: str) -> float:
    value = row.get(name, float("nan"))
    return float(value) if value is not None and value == value else float("nan")


def decide(settings: Settings, start: datetime, end: datetime, training_active: int = 0) -> Decision:
    """The verdict of the window [start, end) from the monitoring tables; recorded in ``decisions.parquet``."""
    windows = tables.read_table(settings, tables.WINDOWS)
    history = windows[pd.to_datetime(windows["window_start"], utc=True) <= start] if not windows.empty else windows
    current = history[pd.to_datetime(history["window_start"], utc=True) == start] if not history.empty else history
    if current.empty:
        raise ValueError(f"window {start.isoformat()} has no monitoring report: run the report task first")
    row = current.iloc[-1]
    k, m = persistence(settings)
    judged = history[history["status"] == "judged"].tail(m)
    alarms = judged[judged["alarm"].astype(bool)]
    champion = _value(row, "champion_auc")
    estimated = _value(row, "estimated_auc")
    labelled = history[history["measured_auc"].notna()].tail(m) if "measured_auc" in history else history.head(0)
    measured = [(str(r["window_start"]), _value(r, "measured_auc")) for _, r in labelled.iterrows()]
    figures = {"champion_auc": champion, "estimated_auc": estimated, "drifted_share": _value(row, "drifted_share"),
               "alarms_in_last_windows": float(len(alarms)), "rows": _value(row, "rows")}
    measured_drop = [(w, a) for w, a in measured if champion - a > settings.monitor_auc_margin]
    if measured:
        figures["measured_auc"] = measured[-1][1]
    decision = Decision(start, end, "none", "", windows=[str(w) for w in alarms["window_start"]],
                        drifted_columns=sorted({c for cs in alarms["drifted_columns"] for c in str(cs).split(",") if c}),
                        figures=figures)
    persists = len(alarms) >= k
    estimated_drop = champion - estimated > settings.monitor_auc_margin
    if row["status"] != "judged":
        decision.action, decision.reason = "too_small", f"window not judged ({row['status']}: {row['reasons']})"
    elif measured_drop:
        decision.action = "retrain"
        decision.reason = (f"measured AUC {measured_drop[-1][1]:.4f} in window {measured_drop[-1][0]} is more than "
                           f"{settings.monitor_auc_margin} below the champion's {champion:.4f}")
    elif persists and estimated_drop:
        decision.action = "retrain"
        decision.reason = (f"drift in {len(alarms)} of the last {len(judged)} windows with the estimated AUC "
                           f"{estimated:.4f} more than {settings.monitor_auc_margin} below the champion's "
                           f"{champion:.4f}")
    elif persists:
        decision.reason = (f"drift in {len(alarms)} of the last {len(judged)} windows but no performance drop "
                           f"(estimated AUC {estimated:.4f}, champion {champion:.4f})")
    else:
        decision.reason = f"drift in {len(alarms)} of the last {len(judged)} windows (retrain needs {k} of {m})"
    if decision.action == "retrain":
        decision = _gate(settings, decision, training_active)
    tables.upsert(settings, tables.DECISIONS, pd.DataFrame([decision.row()]))
    return decision


def _gate(settings: Settings, decision: Decision, training_active: int) -> Decision:
    """Cooldown and a training run in flight stop a retrain verdict from triggering."""
    past = tables.read_table(settings, tables.DECISIONS)
    triggered = past[past["trigger"].astype(bool)] if not past.empty else past
    triggered = triggered[pd.to_datetime(triggered["window_start"], utc=True) != decision.window_start] \
        if not triggered.empty else triggered
    if not triggered.empty:
        last = pd.to_datetime(triggered["window_end"], utc=True).max().to_pydatetime()
        until = last + timedelta(hours=settings.retrain_cooldown_hours)
        if decision.window_end < until:
            decision.action = "cooldown"
            decision.reason = f"{decision.reason}; not triggered: cooldown after the retraining of {last.isoformat()} " \
                              f"until {until.isoformat()}"
            return decision
    if training_active:
        decision.action = "training_active"
        decision.reason = f"{decision.reason}; not triggered: {training_active} {TRAIN_DAG} run(s) queued or running"
        return decision
    decision.trigger = True
    decision.run_id = run_id_for(settings, decision.window_end)
    return decision
