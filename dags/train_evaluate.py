"""Train both propensity models, evaluate them, and promote the better one if it beats the champion.

Runs whenever `materialize_features` updates the asset **freshcart_materialized_features**,
and on manual trigger (Airflow UI: "Trigger DAG w/ config"). The views to train on are

1. the `start` / `end` params of a manual trigger (ISO dates, `end` exclusive), else
2. `FRESHCART_TRAINING_DAYS` days ending one label horizon before the latest materialised
   `end` of the triggering asset events (labels need the events of the horizon), else
3. the same, counted back from the run's logical date.

The `models` param picks the model types (default both: `xgboost`, `din`).

Tasks: `build_training_set` (point-in-time training set of the interval) ->
`train_xgboost`, `train_din` (each logs an MLflow run and registers a version of
`freshcart-propensity`; a type left out of `models` is skipped) -> `evaluate`
(the better of the two on the promotion metric gets the alias `challenger`) ->
`promote` (the challenger becomes `champion` only if it beats the champion on the
same holdout by the margin; the decision is recorded on the model version) ->
`evaluate_recommendations` (the last day's purchases and carts replayed point in time against
popularity, trending, item-kNN, session-kNN and the oracle; the table is logged to MLflow with
the champion's version), and after `promote` also `train_ranker` (the learning-to-rank model over
the replayed candidate lists of the days before the last day, registered in `freshcart-ranker`; it
becomes `champion`, and ranks in `/recommend`, only if its NDCG@10 on the last day beats the ranker
champion and the propensity champion as ranker by the margin).

Logic: `freshcart.pipeline.build_training_set`, `train_model`, `evaluate_models`, `promote_challenger`,
`evaluate_recommendations`, `train_ranker`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, Asset, Param, task

from freshcart.pipeline import FEATURES_ASSET_NAME, FEATURES_ASSET_URI

MATERIALIZED_FEATURES = Asset(name=FEATURES_ASSET_NAME, uri=FEATURES_ASSET_URI, group="freshcart")
MODEL_TYPES = ["xgboost", "din"]
ISO_DATE = r"^\d{4}-\d{2}-\d{2}([T ]\S+)?$"


def _train(model_type: str, built: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Train one model type unless the run's ``models`` param leaves it out (then the task is skipped)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from freshcart import pipeline

    if model_type not in list((params or {}).get("models") or MODEL_TYPES):
        raise AirflowSkipException(f"{model_type} is not in this run's models param")
    return pipeline.train_model(model_type, built["training_set"], built["start"], built["end"])


with DAG(
    dag_id="train_evaluate",
    description="Training set -> XGBoost and DIN -> evaluation -> promotion in the MLflow registry.",
    doc_md=__doc__,
    schedule=[MATERIALIZED_FEATURES],
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # one writer of the registry aliases at a time
    params={
        "start": Param(None, type=["null", "string"], pattern=ISO_DATE,
                       description="First day of the views to train on (ISO date); empty: from the asset events"),
        "end": Param(None, type=["null", "string"], pattern=ISO_DATE,
                     description="End day (exclusive) of the views; needs the events of end + horizon"),
        "models": Param(MODEL_TYPES, type="array", items={"type": "string", "enum": MODEL_TYPES},
                        description="Model types to train: xgboost, din or both"),
    },
    default_args={"owner": "freshcart", "retries": 1, "retry_delay": timedelta(minutes=2)},
    tags=["freshcart", "training", "mlflow"],
) as dag:

    @task
    def build_training_set(
        params: Mapping[str, Any] | None = None, triggering_asset_events: Any = None, dag_run: Any = None
    ) -> dict[str, Any]:
        """The interval from the params, the asset events or the logical date; then its training set."""
        from freshcart import pipeline

        params = params or {}
        start, end = params.get("start"), params.get("end")
        if not (start and end):
            events = triggering_asset_events.get(MATERIALIZED_FEATURES, ()) if triggering_asset_events else ()
            ends = [str(e.extra["end"]) for e in events if e.extra and e.extra.get("end")]
            anchor = max(ends) if ends else (dag_run.logical_date or dag_run.run_after).isoformat()
            start, end = pipeline.training_interval(anchor)
        return pipeline.build_training_set(str(start), str(end))

    @task
    def train_xgboost(built: dict[str, Any], params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Gradient-boosted trees on the tabular features."""
        return _train("xgboost", built, params)

    @task
    def train_din(built: dict[str, Any], params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The attention model over the user's recent products."""
        return _train("din", built, params)

    @task(trigger_rule="none_failed_min_one_success")
    def evaluate(xgboost: dict[str, Any] | None, din: dict[str, Any] | None) -> dict[str, Any]:
        """The better of the trained versions on the promotion metric becomes the challenger."""
        from freshcart import pipeline

        return pipeline.evaluate_models([t for t in (xgboost, din) if t])

    @task
    def promote(evaluated: dict[str, Any]) -> dict[str, Any]:
        """Challenger -> champion only if better on the same holdout; the decision is recorded."""
        from freshcart import pipeline

        return pipeline.promote_challenger()

    @task
    def evaluate_recommendations(built: dict[str, Any], promoted: dict[str, Any]) -> dict[str, Any]:
        """Replay the last day's purchases and carts: the baselines' NDCG@10 and recall, logged to MLflow."""
        from freshcart import pipeline

        return pipeline.evaluate_recommendations(built["end"], promoted.get("champion_after"))

    @task
    def train_ranker(built: dict[str, Any], promoted: dict[str, Any]) -> dict[str, Any]:
        """Learning-to-rank over the replayed candidates; champion only if better than both rankers."""
        from freshcart import pipeline

        return pipeline.train_ranker(built["end"])

    built = build_training_set()
    promoted = promote(evaluate(train_xgboost(built), train_din(built)))
    evaluate_recommendations(built, promoted)
    train_ranker(built, promoted)
