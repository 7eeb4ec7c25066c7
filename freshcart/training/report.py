"""Rich tables of evaluation figures, shared by the CLI and the demo."""

from __future__ import annotations

from rich.table import Table

from freshcart.training.evaluate import HIGHER_IS_BETTER, EvaluationReport

SHOWN = ("auc", "pr_auc", "log_loss", "calibration_error", "hr_at_10", "ndcg_at_10")


def _cell(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


def metrics_table(reports: dict[str, EvaluationReport], title: str) -> Table:
    """One row per metric; a column per model, then the popularity baseline and the oracle.

    The baseline and oracle columns come from the first report (all share the holdout).
    """
    first = next(iter(reports.values()))
    table = Table("metric", *reports, "popularity", "oracle", title=title)
    for metric in SHOWN:
        arrow = "higher" if HIGHER_IS_BETTER[metric] else "lower"
        oracle = _cell(first.oracle_auc) if metric == "auc" else "-"
        table.add_row(f"{metric} ({arrow} is better)", *(_cell(r.model.get(metric)) for r in reports.values()),
                      _cell(first.baseline.get(metric)), oracle)
    if first.oracle_auc is not None:
        table.add_row("gap to oracle AUC", *(_cell(r.oracle_gap) for r in reports.values()), "-", "-")
    table.add_row("holdout rows / positives", *(f"{r.rows:,} / {r.positives:,}" for r in reports.values()),
                  "", "")
    ranking_users = int(first.model.get("ranking_users", 0))
    table.caption = (f"HR@10 / NDCG@10: {ranking_users:,} holdout users with more than 10 viewed products, "
                     "one bought within the horizon; popularity = purchases per view in the training period")
    return table
