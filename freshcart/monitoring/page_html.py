"""The FreshCart page as HTML: champion and challenger, promotions, verdicts with their reports, the cooldown.

Plain HTML with inline styles (the page is shown in an iframe of the Airflow UI);
every value is escaped. Links: ``reports/<window>`` (relative: the plugin serves the
HTML report of each window) and the Evidently UI's project and snapshot pages.
"""

from __future__ import annotations

from html import escape
from typing import Any

from freshcart.monitoring.page import ModelCard, PageData

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2rem; color: #1b1f24; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
table { border-collapse: collapse; margin-top: .4rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; font-size: .9rem; }
th { background: #f6f8fa; } .retrain { color: #b35900; font-weight: 600; } .muted { color: #6e7781; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; } .card { border: 1px solid #d0d7de; padding: .6rem 1rem; }
"""


def _figure(value: Any) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else escape(str(value))


def _count(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _card(title: str, card: ModelCard | None, element_id: str) -> str:
    if card is None:
        return f'<div class="card" id="{element_id}"><h3>{title}</h3><p class="muted">none</p></div>'
    figures = "".join(f"<tr><th>holdout {escape(k)}</th><td>{_figure(v)}</td></tr>" for k, v in card.figures.items())
    return (f'<div class="card" id="{element_id}"><h3>{title}: v{escape(card.version)}</h3><table>'
            f"<tr><th>model type</th><td>{escape(card.model_type)}</td></tr>"
            f"<tr><th>run</th><td>{escape(card.run_id)}</td></tr>{figures}</table></div>")


def _table(element_id: str, header: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted" id="{element_id}">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{element_id}"><tr>{head}</tr>{body}</table>'


def _report_links(data: PageData, verdict: dict[str, Any]) -> str:
    links = []
    if verdict["report"]:
        links.append(f'<a href="reports/{escape(verdict["window"])}" target="_blank">HTML report</a>')
    if data.project_id and verdict["snapshot_id"]:
        url = f"{data.evidently_url}/projects/{data.project_id}/reports/{verdict['snapshot_id']}"
        links.append(f'<a href="{escape(url)}" target="_blank">Evidently</a>')
    return " · ".join(links)


def render_page(data: PageData) -> str:
    """The whole page."""
    promotions = [[escape(p.get("decided_at", "")), f"v{escape(p['version'])}", escape(p.get("action", "")),
                   escape(p.get("metric", "")), _figure(_float(p.get("challenger_value"))),
                   _figure(_float(p.get("champion_value"))), escape(p.get("reason", ""))] for p in data.promotions]
    verdicts = [[escape(v["window_start"]), f'<span class="{escape(v["action"])}">{escape(v["action"])}</span>',
                 escape(v["reason"]), escape(v["run_id"]), _count(v["rows"]), _figure(v["drifted_share"]),
                 _figure(v["estimated_auc"]), _figure(v["measured_auc"]), _report_links(data, v)]
                for v in data.verdicts]
    cooldown = data.cooldown
    if cooldown["last_trigger"] is None:
        cooling = f"No retraining triggered yet (cooldown {cooldown['hours']:g} h after each)."
    else:
        state = "active" if cooldown["active"] else "over"
        cooling = (f"Cooldown {state}: the last retraining ({escape(cooldown['run_id'])}) was triggered for the "
                   f"window ending {escape(cooldown['last_trigger'])}; no other one before "
                   f"{escape(cooldown['until'])} ({cooldown['hours']:g} h).")
    dashboard = (f'<a id="evidently-dashboard" href="{escape(data.evidently_url)}/projects/{escape(data.project_id)}" '
                 f'target="_blank">Evidently dashboard</a>' if data.project_id
                 else '<span class="muted">no Evidently project yet (the first judged window creates it)</span>')
    error = f'<p class="retrain" id="registry-error">{escape(data.registry_error)}</p>' if data.registry_error else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>FreshCart</title><style>{STYLE}</style></head><body>
<h1>FreshCart: {escape(data.model)}</h1>{error}
<div class="cards">{_card("Champion", data.champion, "champion")}{_card("Challenger", data.challenger, "challenger")}</div>
<h2>Promotion decisions</h2>
{_table("promotions", ["decided", "challenger", "action", "metric", "challenger", "champion", "reason"], promotions,
        "no promotion decision recorded yet")}
<h2>Monitoring verdicts</h2>
<p>{dashboard}</p>
{_table("verdicts", ["window", "verdict", "reason", "train_evaluate run", "rows", "drifted share", "estimated AUC",
                     "measured AUC", "reports"], verdicts, "no monitoring verdict yet (the monitor_model DAG writes them)")}
<h2>Retraining cooldown</h2>
<p id="cooldown">{cooling}</p>
</body></html>
"""


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
