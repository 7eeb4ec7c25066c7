"""The prediction log without a broker: bounded buffer, drops counted, record encoding, idempotent landing.

The producer is faked here (what these tests are about is the buffer and the counting);
tests/integration/test_serving.py sends real records through Kafka into the offline store.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from freshcart.serving.ingest import partition_path, upsert_predictions
from freshcart.serving.model import ModelInfo
from freshcart.serving.prediction_log import PredictionLog, PredictionRecord, decode_record, encode_record
from freshcart.settings import load_settings

T0 = datetime(2025, 1, 8, 23, 59, 59, tzinfo=timezone.utc)
INFO = ModelInfo("freshcart-propensity", "2", "champion", "din", "run-2")


def record(request_id: str, moment: datetime = T0, n: int = 3) -> PredictionRecord:
    inputs = pa.table({"product_id": pa.array(range(n), pa.int64()),
                       "user_session__recent_product_ids": pa.array([[1, 2]] * n, pa.list_(pa.int64()))})
    return PredictionRecord(request_id, moment, "predict", 42, INFO, inputs, np.linspace(0.1, 0.3, n))


def test_a_record_round_trips_with_one_row_per_product() -> None:
    rows = decode_record(encode_record(record("r1")))
    assert rows.num_rows == 3
    assert rows["request_id"].to_pylist() == ["r1"] * 3 and rows["position"].to_pylist() == [0, 1, 2]
    assert rows["score"].to_pylist() == [0.1, 0.2, 0.3] and rows["model_version"].to_pylist() == ["2"] * 3
    assert rows["user_session__recent_product_ids"].to_pylist() == [[1, 2]] * 3
    assert rows["requested_at"].to_pylist()[0] == T0


class SlowProducer:
    """Takes its time per record, as a producer waiting on a broker would."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, topic: str, key: bytes, value: bytes) -> Any:
        time.sleep(0.05)
        self.sent.append(value)

        class Done:
            def add_callback(self, fn: Any) -> None:
                fn(None)

            def add_errback(self, fn: Any) -> None:
                pass

        return Done()

    def flush(self, timeout: float) -> None:
        pass

    def close(self, timeout: float) -> None:
        pass


def test_a_full_buffer_drops_and_counts_without_waiting(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, serving_log_buffer=5)
    producer = SlowProducer()
    log = PredictionLog(settings, producer_factory=lambda: producer)
    log.start()
    started = time.perf_counter()
    accepted = sum(log.submit(record(f"r{i}")) for i in range(50))
    assert time.perf_counter() - started < 0.5  # submitting never waits on the producer
    log.stop(timeout=10)
    assert accepted < 50 and log.counts.dropped["buffer_full"] == 50 - accepted
    assert log.counts.sent == accepted == len(producer.sent)


def test_without_a_broker_records_are_dropped_and_counted(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    dropped: list[str] = []

    def no_broker() -> Any:
        raise ConnectionError("no broker")

    log = PredictionLog(settings, on_dropped=lambda reason, n: dropped.extend([reason] * n), producer_factory=no_broker)
    log.start()
    for i in range(5):
        assert log.submit(record(f"r{i}"))
    log.stop(timeout=5)
    assert log.counts.sent == 0 and log.counts.dropped["kafka_down"] == 5 and dropped == ["kafka_down"] * 5


def test_landing_is_by_date_and_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "predictions"
    batch = pa.concat_tables([decode_record(encode_record(record("a"))),
                              decode_record(encode_record(record("b", T0 + timedelta(seconds=2), n=2)))])
    assert upsert_predictions(root, batch) == {T0.date(): 3, (T0 + timedelta(days=1)).date(): 2}
    assert upsert_predictions(root, batch) == {T0.date(): 3, (T0 + timedelta(days=1)).date(): 2}  # again: same rows
    later = decode_record(encode_record(record("c", T0 + timedelta(seconds=5), n=1)))
    assert upsert_predictions(root, later) == {(T0 + timedelta(days=1)).date(): 3}
    assert partition_path(root, T0.date()).is_file()
