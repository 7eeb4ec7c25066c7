"""One monitoring window: sample, drift scores and verdicts, performance, the Evidently report, the tables.

:func:`monitor_window` judges the /predict rows served in [start, end) (the
recommendation candidates are ranked lists, not views, and are judged by their hit
rate instead) against the champion's reference: Evidently's drift statistic per
model input and for the score, thresholds calibrated on the reference, the
confidence-based performance estimate, and the measured figures once the window's
labels exist. It writes the window's rows of ``windows.parquet`` and
``columns.parquet`` and an Evidently report (HTML, and the snapshot for the
workspace) under ``<data>/monitoring/reports/``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from freshcart.monitoring import drift, performance, tables
from freshcart.monitoring.labels import hit_rates, read_labels
from freshcart.monitoring.reference import CATEGORICAL_COLUMNS, SCORE, Reference, monitored_columns, sample_rows
from freshcart.monitoring.workspace import TOP_INPUTS
from freshcart.settings import Settings

log = logging.getLogger(__name__)
STRONG = 2.0
"""A single input whose score exceeds its threshold this many times over raises an alarm on its own."""
DASHBOARD_FIGURES = ("mean_score", "estimated_auc", "champion_auc", "measured_auc", "measured_calibration_error",
                     "estimate_error_auc", "recommend_hit_rate")
"""Figures of :func:`_figures` that also go into the window's snapshot (see :func:`dashboard_figures`)."""
REPORT_COLUMNS = 8
"""Input columns that the Evidently report shows beside the score: the dashboard's top inputs, then the most
drifted."""


def window_length(settings: Settings) -> timedelta:
    return timedelta(hours=int(settings.monitor_window.removesuffix("h")))


def window_key(start: datetime) -> str:
    return start.strftime("%Y-%m-%dT%H%M")


@dataclass
class WindowReport:
    """What one window showed; ``summary()`` is its row of ``windows.parquet``."""

    start: datetime
    end: datetime
    status: str
    """``judged``, ``too_small`` (under FRESHCART_MONITOR_MIN_ROWS) or ``empty``."""
    rows: int = 0
    sampled: int = 0
    model_version: str = ""
    drifted_columns: list[str] = field(default_factory=list)
    drifted_share: float = 0.0
    score_drift: float = 0.0
    score_drifted: bool = False
    alarm: bool = False
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    verdicts: list[drift.ColumnVerdict] = field(default_factory=list)
    report_path: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    snapshot: Any = None

    def summary(self) -> dict[str, Any]:
        return {"window_start": self.start, "window_end": self.end, "status": self.status, "rows": self.rows,
                "sampled": self.sampled, "model_version": self.model_version,
                "drifted_columns": ",".join(self.drifted_columns), "drifted_count": len(self.drifted_columns),
                "drifted_share": self.drifted_share, "score_drift": self.score_drift,
                "score_drifted": self.score_drifted, "alarm": self.alarm, "reasons": "; ".join(self.reasons),
                "report": str(self.report_path or ""), **{k: float(v) for k, v in self.figures.items()}}


_PREPARED: dict[tuple[str, str, str, int, float], tuple[drift.Thresholds, dict[str, drift.PreparedColumn], dict[str, np.ndarray]]] = {}


def prepared_reference(settings: Settings, reference: Reference) -> tuple[
        drift.Thresholds, dict[str, drift.PreparedColumn], dict[str, np.ndarray]]:
    """The reference's calibrated thresholds (chunks sampled down to FRESHCART_MONITOR_MAX_ROWS like the
    windows) and its prepared columns; computed once per process and reference."""
    key = (str(settings.data_dir), reference.version, settings.monitor_window, settings.monitor_max_rows,
           settings.monitor_threshold_margin)
    if key not in _PREPARED:
        columns = [*monitored_columns(), *drift.DERIVED, SCORE]
        thresholds = drift.calibrate(reference.table, columns, window_length(settings), settings.monitor_max_rows,
                                     settings.monitor_threshold_margin, seed=settings.training_seed)
        arrays = drift.as_arrays(reference.table, [c for c in columns if c not in drift.DERIVED])
        arrays.update(drift.derive(arrays, arrays))
        _PREPARED[key] = thresholds, drift.prepare(arrays, columns), arrays
    return _PREPARED[key]


def evidently_report(reference: dict[str, np.ndarray], current: dict[str, np.ndarray], columns: list[str],
                     reference_labels: np.ndarray, labels: np.ndarray | None, metadata: dict[str, Any],
                     figures: dict[str, float] | None = None) -> Any:
    """An Evidently 0.7 snapshot of the compared columns (:func:`drift.as_arrays`): drift of the score and of
    ``columns``, rows, mean score, (with ``labels``, aligned with ``current``) ROC AUC and log loss, and
    FreshCart's own ``figures`` of the window (:class:`~freshcart.monitoring.window_metric.WindowFigure`)."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.metrics import LogLoss, MeanValue, RocAuc, RowCount, ValueDrift

    from freshcart.monitoring.window_metric import window_figures

    shown = [SCORE, *columns]
    numeric = [c for c in shown if c not in CATEGORICAL_COLUMNS]
    categorical = [c for c in shown if c in CATEGORICAL_COLUMNS]
    metrics: list[Any] = [RowCount(), MeanValue(column=SCORE),
                          *(ValueDrift(column=c, method="jensenshannon" if c in CATEGORICAL_COLUMNS else "wasserstein")
                            for c in shown), *window_figures(figures or {})]
    ref = pd.DataFrame({c: reference[c] for c in shown})
    cur = pd.DataFrame({c: current[c] for c in shown})
    classification = None
    if labels is not None:
        ref["label"], cur["label"] = reference_labels.astype(int), labels.astype(int)
        classification = [BinaryClassification(target="label", prediction_probas=SCORE)]
        metrics += [RocAuc(), LogLoss()]
        categorical = [*categorical, "label"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical or None,
                                classification=classification)
    report = Report(metrics, metadata={k: str(v) for k, v in metadata.items()}, tags=["freshcart", "window"])
    return report.run(Dataset.from_pandas(cur, data_definition=definition),
                      Dataset.from_pandas(ref, data_definition=definition), timestamp=metadata.get("window_start"))


def _figures(reference: Reference, views: pa.Table, labelled: pd.DataFrame | None) -> dict[str, float]:
    scores = views[SCORE].to_numpy()
    estimator = performance.Estimator.fit(reference.table["label"].to_numpy(), reference.table[SCORE].to_numpy())
    estimate = estimator.estimate(scores)
    figures = {"mean_score": float(scores.mean()) if len(scores) else float("nan"),
               "estimated_auc": estimate["auc"], "estimated_log_loss": estimate["log_loss"],
               "champion_auc": reference.holdout.get("auc", float("nan")),
               "champion_log_loss": reference.holdout.get("log_loss", float("nan"))}
    if labelled is not None:
        predicted = labelled[labelled["endpoint"] == "predict"]
        measured = performance.measured(predicted["label"].to_numpy(), predicted["score"].to_numpy())
        figures.update({f"measured_{k}": v for k, v in measured.items()})
        figures["estimate_error_auc"] = estimate["auc"] - measured["auc"]
        figures.update({f"recommend_{k}": v for k, v in hit_rates(labelled).items()})
    return figures


def monitor_window(settings: Settings, reference: Reference, start: datetime, end: datetime,
                   html: bool = True) -> WindowReport:
    """Judge the window [start, end) against ``reference``; write its rows of the monitoring tables."""
    table = tables.read_predictions(settings, start, end)
    views = None
    if table is not None:
        views = table.filter(pa.array(np.asarray(table["endpoint"].to_pylist()) == "predict"))
    report = judge_rows(settings, reference, start, end, views, read_labels(settings, start), html)
    _write(settings, report)
    return report


def judge_rows(settings: Settings, reference: Reference, start: datetime, end: datetime, views: pa.Table | None,
               labelled: pd.DataFrame | None = None, html: bool = True) -> WindowReport:
    """Judge a window's /predict rows (model inputs and ``score``) against ``reference``; writes only the
    HTML report (``html``)."""
    started = time.perf_counter()
    report = WindowReport(start=start, end=end, status="empty", model_version=reference.version)
    report.rows = views.num_rows if views is not None else 0
    if views is not None and report.rows >= settings.monitor_min_rows:
        report.status = "judged"
        current = sample_rows(views, settings.monitor_max_rows, seed=int(start.timestamp()))
        report.sampled = current.num_rows
        columns = [*monitored_columns(), *drift.DERIVED]
        thresholds, prepared, arrays = prepared_reference(settings, reference)
        report.seconds["calibrate"] = time.perf_counter() - started
        scored = time.perf_counter()
        window = drift.as_arrays(current, [*monitored_columns(), SCORE])
        window.update(drift.derive(arrays, window))
        scores = drift.score_columns(prepared, window, [*columns, SCORE])
        report.verdicts = drift.judge(scores, thresholds)
        report.seconds["drift"] = time.perf_counter() - scored
        drifted = [v for v in report.verdicts if v.drifted and v.kind == "input"]
        report.drifted_columns = [v.column for v in drifted]
        report.drifted_share = len(drifted) / len(columns)
        report.score_drift = scores[SCORE]
        report.score_drifted = scores[SCORE] > thresholds.values[SCORE]
        if len(drifted) >= settings.monitor_drifted_columns:
            top = ", ".join(f"{v.column} {v.score:.3f} > {v.threshold:.3f}" for v in drifted[:3])
            report.reasons.append(f"{len(drifted)} of {len(columns)} inputs drifted ({top})")
        strong = [v for v in drifted if v.score > STRONG * v.threshold]
        if strong and len(drifted) < settings.monitor_drifted_columns:
            report.reasons.append(f"{strong[0].column} drifted strongly ({strong[0].score:.3f} > {STRONG:g} x "
                                  f"{strong[0].threshold:.3f})")
        if report.score_drifted:
            report.reasons.append(f"score distribution drifted ({scores[SCORE]:.3f} > {thresholds.values[SCORE]:.3f})")
        report.alarm = bool(report.reasons)
        report.figures = _figures(reference, views, labelled)
        report.seconds["judge"] = time.perf_counter() - started
        if html:
            rendered = time.perf_counter()
            drifted_first = [v.column for v in report.verdicts if v.kind == "input" and v.column not in TOP_INPUTS]
            shown = [*TOP_INPUTS, *drifted_first][:max(REPORT_COLUMNS, len(TOP_INPUTS))]
            labels = None
            if labelled is not None:
                keyed = labelled.set_index(["request_id", "position"])["label"]
                index = pd.MultiIndex.from_arrays([current["request_id"].to_numpy(zero_copy_only=False),
                                                   current["position"].to_numpy()])
                labels = keyed.reindex(index).fillna(0).to_numpy()
            report.snapshot = evidently_report(arrays, window, shown, reference.table["label"].to_numpy(), labels,
                                               {"window_start": start, "model_version": reference.version},
                                               dashboard_figures(report))
            path = tables.monitoring_dir(settings) / "reports" / f"window={window_key(start)}" / "report.html"
            path.parent.mkdir(parents=True, exist_ok=True)
            report.snapshot.save_html(str(path))
            report.report_path = path
            report.seconds["report"] = time.perf_counter() - rendered
    elif views is not None:
        report.status = "too_small"
        report.reasons.append(f"{report.rows} scored views < FRESHCART_MONITOR_MIN_ROWS={settings.monitor_min_rows}")
    report.seconds["total"] = time.perf_counter() - started
    return report


def dashboard_figures(report: WindowReport) -> dict[str, float]:
    """The window's own figures that the workspace's dashboard plots (rows, alarm, drift, AUCs, calibration)."""
    return {"rows": float(report.rows), "alarm": float(report.alarm), "drifted_count": float(len(report.drifted_columns)),
            "drifted_share": report.drifted_share, "score_drift": report.score_drift,
            **{k: v for k, v in report.figures.items() if k in DASHBOARD_FIGURES}}


def _write(settings: Settings, report: WindowReport) -> None:
    tables.upsert(settings, tables.WINDOWS, pd.DataFrame([report.summary()]))
    if report.verdicts:
        rows = [{"window_start": report.start, **asdict(v)} for v in report.verdicts]
        tables.upsert(settings, tables.COLUMNS, pd.DataFrame(rows))


def describe(report: WindowReport) -> str:
    """One line about a window, for logs and the CLI."""
    figures = json.dumps({k: round(v, 4) for k, v in report.figures.items() if v == v and "auc" in k})
    return (f"window {window_key(report.start)}: {report.status}, {report.rows} views, drifted "
            f"{len(report.drifted_columns)} ({', '.join(report.drifted_columns[:5])}), score drift "
            f"{report.score_drift:.3f}, alarm={report.alarm} {figures}")
