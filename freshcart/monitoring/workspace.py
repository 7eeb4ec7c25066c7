"""The Evidently workspace under the data dir, its dashboard, and `evidently ui` on loopback.

Project ``freshcart-propensity`` gets one snapshot per judged window. Its dashboard
is saved whole, when the project has none or an older layout (0.7's ``add_panel``
adds a copy of a panel on every call). :func:`start_ui` runs ``evidently ui`` on 127.0.0.1 with
telemetry off (``DO_NOT_TRACK``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from freshcart.settings import Settings, load_settings

PROJECT = "freshcart-propensity"


def workspace_dir(settings: Settings) -> Path:
    return settings.data_dir / "monitoring" / "workspace"


TOP_INPUTS = ("price", "price_vs_reference", "product_unseen", "user_session__session_events",
              "propensity_on_demand__category_in_user_top3")
"""The inputs whose drift the dashboard plots (those the simulator's drift knobs move first)."""


def dashboard() -> Any:
    """The project's dashboard: rows per window, alarms, drifted share, drift of the top inputs and of the
    score, mean score, estimated vs measured AUC (and the champion's), calibration error and log loss."""
    from evidently.sdk.models import DashboardModel, DashboardTabModel, PanelMetric
    from evidently.sdk.panels import bar_plot_panel, counter_panel, line_plot_panel

    from freshcart.monitoring.window_metric import METRIC

    def drift(column: str) -> PanelMetric:
        return PanelMetric(legend=column, metric="ValueDrift", metric_labels={"column": column})

    def figure(name: str, legend: str) -> PanelMetric:
        return PanelMetric(legend=legend, metric=METRIC, metric_labels={"figure": name})

    panels = [
        counter_panel("Rows in the last window", [figure("rows", "rows")], size="half"),
        counter_panel("Alarms in the project", [figure("alarm", "alarms")], size="half", aggregation="sum"),
        bar_plot_panel("Rows per window", [figure("rows", "scored views")], size="half"),
        bar_plot_panel("Alarms per window", [figure("alarm", "alarm")], size="half"),
        line_plot_panel("Drifted share of the inputs", [figure("drifted_share", "drifted share")], size="half"),
        line_plot_panel("Drift of the top inputs", [drift(c) for c in TOP_INPUTS], size="half"),
        line_plot_panel("Mean score", [PanelMetric(legend="mean score", metric="MeanValue",
                                                   metric_labels={"column": "score"})], size="half"),
        line_plot_panel("Prediction drift (score)", [drift("score")], size="half"),
        line_plot_panel("AUC: estimated vs measured", [figure("estimated_auc", "estimated AUC"),
                                                       figure("measured_auc", "measured AUC"),
                                                       figure("champion_auc", "champion holdout AUC")], size="half"),
        line_plot_panel("Calibration error once labelled", [figure("measured_calibration_error",
                                                                   "expected calibration error")], size="half"),
        line_plot_panel("Log loss once labelled", [PanelMetric(legend="log loss", metric="LogLoss")], size="half"),
    ]
    return DashboardModel(tabs=[DashboardTabModel(title="Monitoring", panels=[p.id for p in panels])], panels=panels)


def project(settings: Settings) -> tuple[Any, Any]:
    """The workspace and the project (created with its dashboard on first use)."""
    from evidently.sdk.models import ProjectModel
    from evidently.ui.workspace import Workspace

    workspace = Workspace.create(str(workspace_dir(settings)))
    found = workspace.search_project(PROJECT)
    chosen = found[0] if found else workspace.add_project(
        ProjectModel(name=PROJECT, description="FreshCart propensity monitoring"))
    wanted = dashboard()
    if [p.title for p in workspace.get_dashboard(chosen.id).panels] != [p.title for p in wanted.panels]:
        workspace.save_dashboard(chosen.id, wanted)  # whole, replacing an older layout
    return workspace, chosen


def add_snapshot(settings: Settings, report: Any) -> str | None:
    """Add a judged window's Evidently snapshot to the project, replacing the one an earlier run of the
    same window added; its id (None when the window had none)."""
    if getattr(report, "snapshot", None) is None or report.report_path is None:
        return None
    workspace, found = project(settings)
    marker = Path(report.report_path).with_name("snapshot.id")
    if marker.is_file():
        workspace.delete_run(found.id, marker.read_text().strip())
    ref = workspace.add_run(found.id, report.snapshot, name=f"window {report.start.isoformat()}")
    snapshot_id = str(getattr(ref, "id", ref))
    marker.write_text(snapshot_id)
    return snapshot_id


def ui_command(settings: Settings, port: int = 8000) -> list[str]:
    evidently = Path(sys.executable).with_name("evidently")
    return [str(evidently), "ui", "--host", "127.0.0.1", "--port", str(port), "--workspace",
            str(workspace_dir(settings))]


def start_ui(settings: Settings, port: int = 8000, wait: bool = True) -> subprocess.Popen[bytes]:
    """Run `evidently ui` on 127.0.0.1:``port`` over the workspace, telemetry off; waits for it unless
    ``wait`` is False (then the caller owns the process)."""
    project(settings)
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    process = subprocess.Popen(ui_command(settings, port), env=env)
    if wait:
        try:
            process.wait()
        except KeyboardInterrupt:
            process.terminate()
            process.wait(10)
    return process


def main(argv: list[str] | None = None) -> int:
    """``python -m freshcart.monitoring.workspace [--port N]``: the Evidently UI over the workspace."""
    parser = argparse.ArgumentParser(description="Evidently UI over FreshCart's monitoring workspace (loopback)")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    args = parser.parse_args(argv)
    settings = load_settings()
    print(f"Evidently UI on http://127.0.0.1:{args.port} (workspace {workspace_dir(settings)})", flush=True)
    start_ui(settings, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
