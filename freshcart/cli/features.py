"""`freshcart features ...`: the Feast repository, materialisation and online reads for the profile."""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from freshcart.cli.common import console, err, fail, instant, interval, settings_or_exit

features_app = typer.Typer(
    help="Features: build the offline tables, apply the Feast repository, materialise, read online values.",
    no_args_is_help=True,
)


def _feast(command: str) -> None:
    from freshcart.features.store import FeatureStoreError, run_feast, yaml_path

    settings = settings_or_exit()
    err.print(f"feast {command}: {settings.profile} profile, {yaml_path(settings)}, data in {settings.data_dir}",
              highlight=False, markup=False)
    try:
        done = run_feast(settings, command)
    except FeatureStoreError as exc:
        fail(str(exc))
    if done.returncode != 0:
        fail(f"feast {command} failed (exit {done.returncode}); Feast's message is above", done.returncode)


@features_app.command("plan")
def plan() -> None:
    """Show what `feast apply` would change in the registry and the online store (nothing is written)."""
    _feast("plan")


@features_app.command("apply")
def apply() -> None:
    """Register entities, sources, views and services of feature_repo/ and create the online tables (feast apply)."""
    _feast("apply")


@features_app.command("env")
def env() -> None:
    """Print `export` lines for plain `feast` in this shell: eval "$(freshcart features env)".

    They carry the paths and addresses that feature_repo/feature_store*.yaml read, for the
    profile in FRESHCART_PROFILE (FEAST_FS_YAML_FILE_PATH selects the profile's YAML).
    """
    from freshcart.features.store import FeatureStoreError, feast_env

    try:
        variables = feast_env(settings_or_exit())
    except FeatureStoreError as exc:
        fail(str(exc))
    for name, value in variables.items():
        console.print(f"export {name}={shlex.quote(value)}", highlight=False, markup=False)


@features_app.command("materialize")
def materialize_command(
    start: Optional[str] = typer.Option(
        None, help="Start of the interval (inclusive): YYYY-MM-DD or an ISO time, UTC."),
    end: Optional[str] = typer.Option(
        None, help="End (exclusive). Default: the day after --start; with --incremental: now."),
    incremental: bool = typer.Option(
        False, "--incremental", help="Continue each view from the end of its last materialised interval."),
    views: Optional[str] = typer.Option(None, help="Comma-separated feature views (default: all)."),
) -> None:
    """Write the latest offline feature row of each key in [start, end) to the online store.

    Reads the feature tables (`freshcart features build`) and keeps the latest row per key.

    Local profile: SQLite, fast writer. Production: Redis, Feast's writer.

    The interval is recorded in the registry like `feast materialize` does.
    """
    from freshcart.features.materialize import MaterializeError, ViewReport, materialize, materialize_incremental
    from freshcart.features.store import FeatureStoreError

    if incremental == (start is not None):
        fail("give either --start [--end] or --incremental [--end]", 2)
    settings = settings_or_exit()
    names = [v.strip() for v in views.split(",") if v.strip()] if views else None
    if incremental:
        finish = instant(end, "--end") if end else datetime.now(timezone.utc)
        err.print(f"materialising incrementally up to {finish.isoformat()} ({settings.profile} profile)",
                  highlight=False, markup=False)
    else:
        begin = instant(start or "", "--start")
        finish = instant(end, "--end") if end else begin + timedelta(days=1)
        err.print(f"materialising [{begin.isoformat()}, {finish.isoformat()}) ({settings.profile} profile)",
                  highlight=False, markup=False)

    def show(view: ViewReport) -> None:
        if view.files == 0:
            console.print(f"  {view.view:<18} no feature tables in [{view.start:%Y-%m-%d %H:%M}, "
                          f"{view.end:%Y-%m-%d %H:%M}) - skipped", highlight=False, markup=False)
            return
        console.print(f"  {view.view:<18} [{view.start:%Y-%m-%d %H:%M}, {view.end:%Y-%m-%d %H:%M})  "
                      f"{view.offline_rows:>11,} offline rows -> {view.entity_rows:>10,} entity rows  "
                      f"{view.seconds:6.2f}s", highlight=False, markup=False)

    try:
        if incremental:
            report = materialize_incremental(settings, finish, names, on_view=show)
        else:
            report = materialize(settings, begin, finish, names, on_view=show)
    except (MaterializeError, FeatureStoreError) as exc:
        fail(str(exc))
    if not report.views:
        console.print("every view is already materialised up to the end; nothing to do", markup=False)
        return
    console.print(f"{report.entity_rows:,} entity rows into the {report.online_store} online store "
                  f"({report.writer}) in {report.seconds:.2f}s: {report.rows_per_second:,.0f} entity rows/s",
                  highlight=False, markup=False)


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        head = ", ".join(str(v) for v in value[:5])
        return f"[{head}{', ...' if len(value) > 5 else ''}] ({len(value)})"
    return str(value)


ONLINE_FEATURES = (
    "user_activity:views_24h", "user_activity:purchases_30d", "user_activity:avg_purchase_price_30d",
    "user_activity:top_categories_30d", "user_activity:last_event_ts",
    "product_activity:views_24h", "product_activity:conversion_rate_7d", "product_activity:current_price",
    "user_session:session_events", "user_session:recent_product_ids",
)


@features_app.command("online")
def online(
    user_id: int = typer.Option(..., help="The shopper (user_id)."),
    product_id: int = typer.Option(..., help="The candidate product (product_id)."),
    category_id: Optional[int] = typer.Option(
        None, help="The candidate's category: adds user_category and the on-demand features."),
    price: Optional[float] = typer.Option(
        None, help="The candidate's price for the on-demand features (default: its online current_price)."),
) -> None:
    """Print a few online feature values of a (user, product) pair, read through Feast."""
    from freshcart.features.store import FeatureStoreError, feature_store

    settings = settings_or_exit()
    try:
        store = feature_store(settings)
        entity = {"user_id": user_id, "product_id": product_id}
        refs = list(ONLINE_FEATURES)
        if category_id is not None:
            entity["category_id"] = category_id
            refs += ["user_category:category_views_30d", "user_category:category_view_share_30d"]
        values = store.get_online_features(features=refs, entity_rows=[entity], full_feature_names=True).to_dict()
        if category_id is not None:
            request = {"user_id": user_id, "request_category_id": category_id,
                       "request_price": price if price is not None else values["product_activity__current_price"][0],
                       "request_ts": datetime.now(timezone.utc).timestamp()}
            values |= store.get_online_features(
                features=["propensity_on_demand:price_vs_user_avg", "propensity_on_demand:category_in_user_top3",
                          "propensity_on_demand:seconds_since_last_event"],
                entity_rows=[request], full_feature_names=True).to_dict()
    except (FeatureStoreError, ValueError) as exc:
        fail(f"{exc} (has `freshcart features apply` run for the {settings.profile} profile?)")
    table = Table("feature", "value", title=f"online features: user {user_id}, product {product_id}"
                  + (f", category {category_id}" if category_id is not None else "") + f" ({settings.profile})")
    for name, column in values.items():
        if name not in ("user_id", "product_id", "category_id"):
            table.add_row(name.replace("__", ":"), _shown(column[0]))
    console.print(table)
    if all(column[0] is None for name, column in values.items() if name.startswith("user_activity__")):
        err.print(f"note: no online values for user {user_id}; materialise first "
                  "(`freshcart features materialize --start ... --end ...`)", highlight=False, markup=False)


@features_app.command("build")
def build(
    start: str = typer.Option(..., help="First event date, YYYY-MM-DD."),
    end: Optional[str] = typer.Option(None, help="End event date, exclusive (default: the day after --start)."),
) -> None:
    """Compute the feature rows of every view for event dates [start, end) into the offline store.

    Reads the offline events of the interval and the 31 days before it (the
    longest look-back), and replaces those dates' partitions of each feature
    table, so re-running an interval changes nothing.
    """
    from freshcart.features.tables import FeatureBuildError, build_feature_tables

    settings = settings_or_exit()
    first, last = interval(start, end)
    with console.status(f"building feature tables for [{first}, {last}) ..."):
        try:
            report = build_feature_tables(settings, first, last)
        except FeatureBuildError as exc:
            fail(str(exc))
    table = Table("feature view", "rows", title=f"feature tables [{first}, {last})")
    for name, rows in report.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(f"{report.events_in_interval:,} events in the interval ({report.events_read:,} read with the "
                  f"look-back) in {report.seconds:.1f}s -> {report.out_dir}", highlight=False)


@features_app.command("training-set")
def training_set(
    start: str = typer.Option(..., help="First date of the views, YYYY-MM-DD."),
    end: Optional[str] = typer.Option(None, help="End date, exclusive (default: the day after --start)."),
    out: Path = typer.Option(..., help="Parquet file to write."),
    method: str = typer.Option("fast", help="fast: FreshCart's as-of join; feast: Feast's get_historical_features."),
) -> None:
    """Labelled propensity examples: every view in [start, end), label = bought within the horizon.

    Features are joined as of strictly before each view (no leakage). Needs the
    feature tables of the interval (`freshcart features build`) and the offline
    events up to end + horizon for the labels.
    """
    from freshcart.features.tables import FeatureBuildError
    from freshcart.features.training_set import build_training_set

    if method not in ("fast", "feast"):
        fail(f"--method {method!r}: use fast or feast", 2)
    settings = settings_or_exit()
    first, last = interval(start, end)
    with console.status(f"building the training set for [{first}, {last}) ..."):
        try:
            _, report = build_training_set(settings, first, last, out, method=method)
        except FeatureBuildError as exc:
            fail(str(exc))
    console.print(f"{report.examples:,} examples, {report.positives:,} positive "
                  f"({report.positives / report.examples:.2%}), {len(report.feature_columns)} features, "
                  f"{report.method} join in {report.seconds:.1f}s -> {report.out}", highlight=False)
