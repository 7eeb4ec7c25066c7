"""Monitor the champion every hour and trigger retraining when it matters.

Tasks, each addressed by the run's data interval [start, end):

1. `land_predictions`: the scoring service's prediction log (Kafka) into the offline store;
2. `label`: the window whose horizon closed by `end` joined with the purchases that followed;
3. `report`: drift of the model inputs and of the score against the champion's reference sample,
   the estimated performance, the measured one once labelled (Evidently report and snapshot);
4. `verdict`: retrain or not, with the reason, recorded in `data/monitoring/decisions.parquet`;
   retrain needs drift in k of the last m windows with an (estimated or measured) AUC drop, or a
   measured drop alone, outside the cooldown (`FRESHCART_RETRAIN_COOLDOWN_HOURS`) and while no
   `train_evaluate` run is queued or running;
5. `should_retrain` -> `trigger_train_evaluate`: a `train_evaluate` run with the verdict as its conf
   (reason, windows, drifted columns, figures) and a run id fixed per cooldown bucket.

Logic: `freshcart.monitoring.tasks.land_predictions`, `label_window`, `report_window`, `decide`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, task

TRAIN_DAG = "train_evaluate"


def _interval(context: dict[str, Any]) -> tuple[str, str]:
    start, end = context["data_interval_start"], context["data_interval_end"]
    return start.isoformat(), end.isoformat()


with DAG(
    dag_id="monitor_model",
    description="Predictions -> labels -> drift and performance report -> verdict -> retraining.",
    doc_md=__doc__,
    schedule="@hourly",
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"owner": "freshcart", "retries": 1, "retry_delay": timedelta(minutes=1)},
    tags=["freshcart", "monitoring", "evidently"],
) as dag:

    @task
    def land_predictions() -> dict[str, Any]:
        """The prediction log from Kafka into the offline store (idempotent by request and position)."""
        from freshcart.monitoring import tasks

        return tasks.land_predictions()

    @task
    def label(landed: dict[str, Any], **context: Any) -> dict[str, Any]:
        """Feedback labels of the window whose horizon has closed."""
        from freshcart.monitoring import tasks

        return tasks.label_window(*_interval(context))

    @task
    def report(labelled: dict[str, Any], **context: Any) -> dict[str, Any]:
        """Drift, prediction drift and performance of the window against the champion's reference."""
        from freshcart.monitoring import tasks

        return tasks.report_window(*_interval(context))

    @task
    def verdict(reported: dict[str, Any], **context: Any) -> dict[str, Any]:
        """Retrain or not, and why (recorded either way)."""
        from freshcart.monitoring import tasks

        active = context["ti"].get_dr_count(dag_id=TRAIN_DAG, states=["queued", "running"])
        return tasks.decide(*_interval(context), training_active=active)

    @task.short_circuit
    def should_retrain(decision: dict[str, Any]) -> bool:
        """Go on to the trigger only when the verdict says so."""
        return bool(decision["trigger"])

    decided = verdict(report(label(land_predictions())))
    trigger = TriggerDagRunOperator(
        task_id="trigger_train_evaluate",
        trigger_dag_id=TRAIN_DAG,
        trigger_run_id="{{ ti.xcom_pull(task_ids='verdict')['run_id'] }}",
        conf="{{ ti.xcom_pull(task_ids='verdict')['conf'] }}",
        skip_when_already_exists=True,
    )
    should_retrain(decided) >> trigger
