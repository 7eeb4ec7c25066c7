"""An Evidently 0.7 metric that carries one of FreshCart's own window figures into the snapshot.

The drifted share (against the calibrated thresholds), the alarm, the estimated and
the measured AUC, the calibration error and the rows of a window are computed by
``freshcart.monitoring`` itself; :class:`WindowFigure` puts each into the window's
snapshot as a single value labelled ``figure=<name>``, so that the workspace's
dashboard plots them over time (``PanelMetric(metric="WindowFigure",
metric_labels={"figure": ...})``). The value is not a metric parameter (a parameter
would make every window a series of its own); the UI reads only the stored result.
"""

from __future__ import annotations

import math
from typing import Any

from evidently._pydantic_compat import PrivateAttr
from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric

METRIC = "WindowFigure"


class WindowFigure(SingleValueMetric):
    """One figure of a window, named by ``figure``."""

    figure: str
    _value: float = PrivateAttr(default=float("nan"))

    @classmethod
    def of(cls, figure: str, value: float) -> WindowFigure:
        metric = cls(figure=figure)
        metric._value = float(value)
        return metric


class WindowFigureCalculation(SingleValueCalculation[WindowFigure]):
    def calculate(self, context: Any, current_data: Any, reference_data: Any) -> Any:
        return self.result(self.metric._value), None

    def display_name(self) -> str:
        return f"FreshCart: {self.metric.figure}"


def window_figures(figures: dict[str, float]) -> list[WindowFigure]:
    """A metric per finite figure (a window without labels has no measured AUC, so no point for it)."""
    return [WindowFigure.of(name, value) for name, value in figures.items()
            if value is not None and math.isfinite(float(value))]
