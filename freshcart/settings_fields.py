"""The fields of :class:`freshcart.settings.Settings`, one class per area, with their defaults and limits.

:class:`~freshcart.settings.Settings` inherits them all (each field is set by
``FRESHCART_<FIELD>``); validators across areas, derived values and loading live
in :mod:`freshcart.settings`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

REPO_ROOT = Path(__file__).resolve().parents[1]


def _default_data_dir() -> Path:
    """``data/`` in the source checkout, or in the working directory for an installed package."""
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / "data"
    return Path.cwd() / "freshcart-data"


class CoreFields(BaseModel):
    """The profile and the data folder."""

    profile: Literal["local", "production"] = Field(
        "local", description="local: embedded SQLite/Parquet stores; production: Redis and PostgreSQL."
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where events, service data, logs and pid files live.",
    )


class SecurityFields(BaseModel):
    """Credentials and where servers listen (docs/security.md)."""

    auth: bool = Field(
        True, description="Credentials on every server FreshCart starts (Kafka SASL/SCRAM and ACLs, Redis "
        "requirepass, PostgreSQL passwords, the scoring service's API key, MLflow basic auth); false only on a "
        "machine of your own.",
    )
    bind_host: str = Field(
        "127.0.0.1", min_length=1, description="Address the servers listen on; loopback unless opened on purpose "
        "(a warning when it is not loopback and a server has no credentials).",
    )
    secrets_dir: Path | None = Field(
        None, description="Where generated secrets live (one file per secret, mode 0600); defaults to "
        "<data_dir>/secrets.",
    )
    redis_password: SecretStr | None = Field(
        None, description="Redis requirepass; generated at the server's first start when unset.",
    )
    kafka_admin_password: SecretStr | None = Field(
        None, description="SCRAM password of freshcart-admin (broker, topics, ACLs); generated when unset.",
    )
    kafka_producer_password: SecretStr | None = Field(
        None, description="SCRAM password of freshcart-producer (writes events); generated when unset.",
    )
    kafka_stream_password: SecretStr | None = Field(
        None, description="SCRAM password of freshcart-stream (the stream processor); generated when unset.",
    )
    kafka_serving_password: SecretStr | None = Field(
        None, description="SCRAM password of freshcart-serving (the prediction log); generated when unset.",
    )
    kafka_monitoring_password: SecretStr | None = Field(
        None, description="SCRAM password of freshcart-monitoring (prediction ingest, lag, dead letters); "
        "generated when unset.",
    )
    mlflow_admin_password: SecretStr | None = Field(
        None, description="Password of the admin user of the MLflow tracking server (basic-auth app, production "
        "profile, `make mlflow-ui`); generated at its first start when unset.",
    )


class KafkaFields(BaseModel):
    """The Kafka broker and the events topics."""

    kafka_host: str = Field("127.0.0.1", description="Address the local broker listens on.")
    kafka_port: int = Field(19092, ge=1, le=65535, description="Broker (client) port.")
    kafka_controller_port: int = Field(
        19093, ge=1, le=65535, description="KRaft controller port of the local broker."
    )
    kafka_bootstrap: str | None = Field(
        None, description="Bootstrap servers; defaults to kafka_host:kafka_port (the local broker)."
    )
    kafka_jars_dir: Path = Field(
        REPO_ROOT / "services" / "kafka" / "target" / "jars",
        description="Broker jars copied from Maven Central by `make setup`.",
    )
    kafka_heap_mb: int = Field(512, ge=128, le=512, description="Broker JVM heap (MB), at most 512.")
    events_topic: str = Field("freshcart.events", min_length=1, description="Topic of raw events.")
    dlq_topic: str = Field(
        "freshcart.events.dlq", min_length=1, description="Dead-letter topic for rejected events."
    )
    events_partitions: int = Field(4, ge=1, le=64, description="Partitions of the events topic.")


class StreamFields(BaseModel):
    """The stream processor (``freshcart stream consume``)."""

    product_topic: str = Field(
        "freshcart.events.by-product", min_length=1,
        description="Internal topic: accepted events re-partitioned by product_id for the product features.",
    )
    stream_group: str = Field("freshcart-stream", min_length=1, description="Consumer group of the stream processor.")
    stream_batch_size: int = Field(
        2000, ge=1, le=100_000, description="Events per micro-batch: feature rows are written at most this many events apart."
    )
    stream_max_wait_ms: int = Field(
        20, ge=1, le=60_000, description="Longest time an accepted event waits before its micro-batch is written."
    )
    stream_checkpoint_seconds: float = Field(
        5.0, gt=0, le=3600,
        description="How often keyed state is saved and offsets committed (a crash replays at most this much).",
    )
    stream_neighbours: bool = Field(
        False, description="Keep the co-occurrence neighbours (view product_neighbours) of the session's products "
                           "fresh from the stream; off, the materialize_features DAG refreshes them daily. On, the "
                           "stream sends about 5 delta rows per event and its throughput about halves.",
    )
    stream_allowed_lateness_seconds: int = Field(
        600, ge=0, description="Events older than the partition's latest event time minus this go to the DLQ as late."
    )
    stream_writer: Literal["auto", "push", "fast"] = Field(
        "auto", description="Online writes: push = FeatureStore.push; fast = direct writes with Feast's encoding "
        "(SQLite or single-node Redis); auto = fast where it applies, push otherwise.",
    )
    stream_metrics_port: int = Field(
        9108, ge=0, le=65535, description="Prometheus metrics port of the first consumer (next free port after it; "
        "0 disables).",
    )


class ServerFields(BaseModel):
    """The production profile's servers (Redis, PostgreSQL) and MLflow's tracking URI."""

    redis_port: int = Field(16379, ge=1, le=65535, description="Port of the project's Redis.")
    redis_url: str | None = Field(
        None, description="Redis URL of the online store; defaults to the project's Redis."
    )
    postgres_port: int = Field(15432, ge=1, le=65535, description="Port of the project's PostgreSQL.")
    postgres_user: str = Field("freshcart", min_length=1, description="PostgreSQL role.")
    postgres_password: SecretStr | None = Field(
        None, description="PostgreSQL password; unset means trust on loopback (local servers only)."
    )
    postgres_url: SecretStr | None = Field(
        None, description="Full PostgreSQL URL of the registry database; defaults to the project's server."
    )

    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; defaults to SQLite (local) or PostgreSQL (production)."
    )


class TrainingFields(BaseModel):
    """Training, the registry and promotion."""

    registered_model: str = Field(
        "freshcart-propensity", min_length=1, description="Name of the registered model in the MLflow registry."
    )
    mlflow_experiment: str = Field(
        "freshcart-propensity", min_length=1, description="MLflow experiment of the training runs."
    )
    mlflow_artifact_root: Path | None = Field(
        None, description="Where run artifacts (models, plots) go; defaults to <data_dir>/mlflow/artifacts."
    )
    training_days: int = Field(
        5, ge=1, le=365,
        description="Days of views a scheduled training run learns from (ending a horizon before the newest features).",
    )
    training_seed: int = Field(42, ge=0, le=2**31 - 1, description="Seed of every random choice in training.")
    training_validation_share: float = Field(
        0.15, gt=0.0, lt=0.5, description="Share of the examples (by time, before the holdout) for validation."
    )
    training_holdout_share: float = Field(
        0.15, gt=0.0, lt=0.5, description="Share of the latest examples held out for evaluation and promotion."
    )
    xgb_max_rounds: int = Field(400, ge=1, le=10_000, description="Most XGBoost boosting rounds (early stopping).")
    training_threads: int = Field(
        0, ge=0, le=1024, description="CPU threads of XGBoost and torch in training; 0 means every core."
    )
    din_max_epochs: int = Field(6, ge=1, le=1000, description="Most epochs of the attention model (early stopping).")
    din_patience: int = Field(
        1, ge=1, le=100, description="Epochs without a better validation loss before the attention model stops."
    )
    din_batch_size: int = Field(2048, ge=16, le=1_000_000, description="Mini-batch size of the attention model.")
    din_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Device of the attention model: auto (CUDA when present), cpu or cuda."
    )
    promotion_metric: Literal["auc", "pr_auc", "log_loss", "calibration_error", "hr_at_10", "ndcg_at_10"] = Field(
        "auc", description="Holdout metric on which a challenger must beat the champion to be promoted."
    )
    promotion_margin: float = Field(
        0.002, ge=0.0, le=1.0, description="How much better (absolute) the challenger must be on that metric."
    )


class ServingFields(BaseModel):
    """The scoring service (``freshcart serve``, ``bentos/``)."""

    serving_host: str = Field(
        "127.0.0.1", min_length=1, description="Address the scoring service listens on; defaults to bind_host."
    )
    serving_port: int = Field(3000, ge=1, le=65535, description="Port of the scoring service.")
    serving_api_key: SecretStr | None = Field(
        None, description="Bearer token the scoring service requires on every route but /livez, /readyz and "
        "/metrics; unset means no authentication (loopback only).",
    )
    serving_workers: int = Field(
        2, ge=1, le=64, description="Worker processes of the scoring service (one per core: a request's scoring "
        "runs on its worker's event loop, holding Python's lock; one worker saturates near 200 requests/s).",
    )
    serving_threads: int = Field(
        4, ge=1, le=256, description="Threads per worker for BentoML's own blocking work (the scoring routes run on "
        "the worker's event loop).",
    )
    serving_model_alias: str = Field(
        "champion", min_length=1, description="Alias of the registered model that the service scores with."
    )
    serving_reload_seconds: float = Field(
        10.0, gt=0, le=30, description="How often the service checks the alias for a new version (a new champion "
        "serves within this plus its load time).",
    )
    serving_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Device of the attention model in the service: auto (CUDA when torch sees one), cpu "
        "or cuda.",
    )
    serving_product_cache_seconds: float = Field(
        5.0, ge=0, le=300, description="Product features cached per worker for at most this long (reading 100 "
        "products costs 10-20 ms, the shopper's views under 1 ms); 0 reads them on every request.",
    )
    serving_index_seconds: float = Field(
        10.0, gt=0, le=3600, description="How often the trending and popular products are read again from the "
        "online store.",
    )
    serving_catalogue_days: int = Field(
        7, ge=1, le=365, description="Days of offline events (the latest ones) that the product catalogue (category, "
        "price) and the purchases left out of recommendations are read from.",
    )
    serving_tracing: bool = Field(
        False, description="OpenTelemetry spans per request (BentoML's tracing; configure an exporter in BentoML's "
        "configuration). Off: no span is made, which saves about a tenth of a trivial request's time.",
    )
    serving_access_log: bool = Field(
        False, description="A log line per request from the service (off: writing it costs latency under load).",
    )
    serving_follow_hours: float = Field(
        24.0, ge=0, le=24 * 30, description="How far back the scoring service reads purchases from the events topic "
        "when the offline store is older (what a shopper bought since is left out of their recommendations).",
    )
    serving_gc_freeze: bool = Field(
        True, description="Move what the service loaded at start out of the garbage collector's reach (full "
        "collections over the loaded libraries otherwise pause requests for hundreds of milliseconds).",
    )
    predictions_topic: str = Field(
        "freshcart.predictions", min_length=1, description="Topic the service logs every prediction to."
    )
    predictions_partitions: int = Field(4, ge=1, le=64, description="Partitions of the predictions topic.")
    serving_log_buffer: int = Field(
        10_000, ge=1, le=10_000_000, description="Prediction records buffered for Kafka; when full (Kafka down or "
        "slow) new ones are dropped and counted, the request is never held up.",
    )


class MonitoringFields(BaseModel):
    """Monitoring and retraining (``freshcart monitor``, ``dags/monitor_model.py``)."""

    monitor_window: Literal["1h", "2h", "3h", "4h", "6h", "12h", "24h"] = Field(
        "1h", description="Length of a monitoring window (drift and performance are judged per window).",
    )
    monitor_max_rows: int = Field(
        20_000, ge=100, le=10_000_000, description="Rows of a window that a drift report reads; larger windows "
        "are sampled down to this many (seeded, so a re-run reads the same rows).",
    )
    monitor_min_rows: int = Field(
        200, ge=1, le=10_000_000, description="Scored views a window needs for a verdict; smaller ones are "
        "recorded as too small and never raise an alarm.",
    )
    monitor_reference_rows: int = Field(
        50_000, ge=1_000, le=10_000_000, description="Rows of the reference sample stored with every trained "
        "model version (drift baseline, threshold calibration, performance estimate).",
    )
    monitor_threshold_margin: float = Field(
        0.5, ge=0.0, le=10.0, description="A column drifts when its score exceeds the highest score of the "
        "reference's own window-sized chunks by this share (0.5 = 50% above).",
    )
    monitor_drifted_columns: int = Field(
        2, ge=1, le=1000, description="Drifted input columns (or the score) that make a window a drift alarm.",
    )
    monitor_persist_windows: str = Field(
        "2/3", pattern=r"^\d+/\d+$", description="k/m: drift must alarm in k of the last m windows to count for "
        "a retrain.",
    )
    monitor_auc_margin: float = Field(
        0.02, ge=0.0, le=1.0, description="AUC drop (measured, or estimated before labels) below the champion's "
        "holdout AUC that counts as a performance drop.",
    )
    retrain_cooldown_hours: float = Field(
        24.0, ge=0.0, le=24 * 365, description="After a triggered retraining, no other one for this many hours.",
    )
    monitor_ui_url: str = Field(
        "http://127.0.0.1:8000", pattern=r"^https?://", description="Where the Evidently UI (`make monitor-ui`) "
        "is reached; the FreshCart page in Airflow links its dashboard and window reports there.",
    )


class EventFields(BaseModel):
    """Events, the prediction task and privacy (``freshcart/privacy/``, README "Privacy")."""

    horizon_hours: int = Field(24, ge=1, le=24 * 30, description="Propensity horizon H in hours.")
    session_gap_minutes: int = Field(
        30, ge=1, le=24 * 60, description="Inactivity gap that starts a new session."
    )
    event_time_floor: datetime = Field(
        datetime(2000, 1, 1, tzinfo=timezone.utc),
        description="Events before this time are rejected as implausibly old.",
    )
    max_future_seconds: int = Field(
        3600, ge=0, description="Events later than now plus this many seconds are rejected."
    )

    pseudonymise: bool = Field(
        False, description="Map every source user id to a keyed-hash pseudonym at the edge (file ingestion, landing, "
        "the Kafka producer helper, the scoring service's requests); nothing past the edge holds a raw id.",
    )
    id_key: SecretStr | None = Field(
        None, description="Key of the user id pseudonyms (HMAC-SHA-256), at least 16 characters; unset: generated at "
        "first use into <data_dir>/secrets/id_key (mode 0600). Every process that maps ids needs the same key.",
    )

    @field_validator("event_time_floor")
    @classmethod
    def _floor_is_utc(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
