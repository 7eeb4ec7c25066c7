"""Pseudonymised shoppers end to end, on the real broker: nothing past the edge holds a raw id.

A small simulated shop whose user ids are rewritten to easy-to-find raw ids (``99000`` and 7
more digits) goes through every edge with ``FRESHCART_PSEUDONYMISE=true``: the landing zone,
``ingest-file`` (a REES46 file, with a rejected row), the Kafka producer helper and the scoring
service's requests. Then feature tables, the training set, ``feast apply``, materialisation into
the SQLite online store, an XGBoost champion in MLflow, scored requests and their prediction
records landed offline. Every file the run left in the data dir (but the simulator's own output,
the shop's raw data) is searched for the raw ids: as text, as 64-bit integers, and cell by cell
in Parquet.
"""

from __future__ import annotations

import re
import struct
from datetime import datetime, time as clock, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from freshcart import kafka_io, storage
from freshcart.ingestion.file_ingest import ingest_file
from freshcart.ingestion.interval_ingest import ingest_interval
from freshcart.ingestion.landing import land_simulation
from freshcart.privacy.pseudonym import key_path, pseudonymiser_for
from freshcart.schema import TimeBounds
from freshcart.settings import Settings, load_settings
from freshcart.simulator import SimulationConfig, write_simulation

RAW_BASE = 990_000_000_000
RAW_TEXT = re.compile(rb"(?<![0-9])99000[0-9]{7}(?![0-9])")
SHOP = SimulationConfig(seed=7, users=500, products=300, categories=12, days=6, events_per_day=6_000)
SOURCE_DIRS = ("simulation", "secrets")  # the shop's own raw data (the simulator stands in for it); the key


def give_raw_ids(sim_dir: Path) -> list[int]:
    """Rewrite the simulation's user ids to RAW_BASE + rank; the raw ids, sorted."""
    days = storage.list_partitions(sim_dir)
    tables = {day: storage.read_partition(sim_dir, day) for day in days}
    ids = np.unique(np.concatenate([t["user_id"].to_numpy() for t in tables.values()]))
    for day, table in tables.items():
        index = pc.index_in(table["user_id"], value_set=pa.array(ids))
        raw = pc.add(pc.cast(index, pa.int64()), RAW_BASE)
        table = table.set_column(table.column_names.index("user_id"), "user_id", raw)
        pq.write_table(table, storage.partition_dir(sim_dir, day) / storage.DATA_FILE)
    return [RAW_BASE + n for n in range(len(ids))]


def raw_ids_in(path: Path, raw: set[int]) -> set[int]:
    """The raw ids a file holds: decimal text, little- or big-endian int64 bytes, Parquet cells."""
    data = path.read_bytes()
    found = {int(m) for m in RAW_TEXT.findall(data)} & raw
    found |= {r for r in raw if struct.pack("<q", r) in data or struct.pack(">q", r) in data}
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        for column in table.columns:
            if pa.types.is_integer(column.type):
                found |= set(column.to_pylist()) & raw
            elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                for text in column.to_pylist():
                    if text:
                        found |= {int(m) for m in RAW_TEXT.findall(text.encode())} & raw
    return found


def leaks(settings: Settings, raw: set[int]) -> dict[str, set[int]]:
    found = {}
    for path in sorted(settings.data_dir.rglob("*")):
        if not path.is_file() or path.relative_to(settings.data_dir).parts[0] in SOURCE_DIRS:
            continue
        hits = raw_ids_in(path, raw)
        if hits:
            found[str(path.relative_to(settings.data_dir))] = hits
    return found


@pytest.fixture
def shop(settings: Settings, topic: str, tmp_path: Path) -> Settings:
    return load_settings(profile="local", data_dir=tmp_path / "data", pseudonymise=True,
                         kafka_bootstrap=settings.bootstrap_servers, predictions_topic=topic,
                         mlflow_tracking_uri=f"sqlite:///{tmp_path / 'data' / 'mlflow' / 'mlflow.db'}",
                         xgb_max_rounds=40, training_threads=1, monitor_reference_rows=2_000)


def test_no_raw_shopper_id_past_the_edge(shop: Settings, topic: str, tmp_path: Path) -> None:
    from freshcart.features.materialize import materialize
    from freshcart.features.store import apply
    from freshcart.features.tables import build_feature_tables
    from freshcart.serving.ingest import ingest_predictions, predictions_dir
    from freshcart.serving.prediction_log import PredictionLog, decode_record
    from freshcart.serving.schemas import PredictRequest, RecommendRequest
    from freshcart.serving.scoring import ScoringService
    from freshcart.training.data import load_or_build
    from freshcart.training.promote import promote
    from freshcart.training.train import train_model

    settings = shop
    write_simulation(SHOP, settings.simulation_dir)
    raw_ids = give_raw_ids(settings.simulation_dir)
    pseudonyms = pseudonymiser_for(settings)
    assert pseudonyms is not None and key_path(settings).stat().st_mode & 0o777 == 0o600
    again = pseudonymiser_for(settings)  # a second process: the same key file, the same map
    assert again is not None and [again.user_id(r) for r in raw_ids[:50]] == [pseudonyms.user_id(r) for r in raw_ids[:50]]

    # edge 1: the landing zone, then the interval ingest into the offline store
    landed = land_simulation(settings.simulation_dir, settings.landing_dir, late_share=0.01, pseudonymiser=pseudonyms)
    report = ingest_interval(settings, landed.arrival_dates[0], landed.arrival_dates[-1] + timedelta(days=1))
    assert report.valid == landed.events and report.rejected == 0
    # edge 2: ingest-file of a REES46 file, one valid row and one rejected (negative price)
    source = tmp_path / "shop.csv"
    source.write_text("event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
                      f"2025-01-08 10:00:00 UTC,view,1001,2001,,,5.0,{RAW_BASE + 9001},s-1\n"
                      f"2025-01-08 10:01:00 UTC,view,1001,2001,,,-5.0,{RAW_BASE + 9002},s-1\n")
    bounds = TimeBounds.around(datetime.now(timezone.utc), settings.event_time_floor, settings.max_future_seconds)
    loaded = ingest_file(source, "rees46", settings.offline_events_dir, bounds, pseudonymiser=pseudonyms)
    assert (loaded.valid, loaded.rejected) == (1, 1)
    raw_ids += [RAW_BASE + 9001, RAW_BASE + 9002]
    # edge 3: the Kafka producer helper
    before = kafka_io.end_offsets(settings, topic)
    producer = kafka_io.make_producer(settings)
    raw_user = raw_ids[3]
    value = (b'{"event_id":"e-1","event_time":"2025-01-08T10:00:00Z","event_type":"view","product_id":1,'
             b'"category_id":2,"category_code":null,"brand":null,"price":1.0,"user_id":%d,"user_session":"s"}' % raw_user)
    kafka_io.produce(producer, topic, [(str(raw_user).encode(), value)], pseudonymiser=pseudonyms)
    producer.close()
    sent = list(kafka_io.read_range(settings, topic, before, kafka_io.end_offsets(settings, topic)))
    assert [m.key for m in sent] == [str(pseudonyms.user_id(raw_user)).encode()]
    assert str(raw_user).encode() not in sent[0].value and b"%d" % pseudonyms.user_id(raw_user) in sent[0].value

    # downstream: features, training, the online store, a champion
    days = storage.list_partitions(settings.offline_events_dir)
    build_feature_tables(settings, days[0], days[-1] + timedelta(days=1))
    _, path, _ = load_or_build(settings, days[1], days[4])
    applied = apply(settings)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    materialize(settings, datetime.combine(days[0], clock(), tzinfo=timezone.utc),
                datetime.combine(days[-1] + timedelta(days=1), clock(), tzinfo=timezone.utc))
    trained = train_model(settings, "xgboost", training_set=path)
    assert promote(settings).champion_after == trained.version

    # edge 4: the scoring service maps the shop's ids; responses and the prediction log carry the pseudonym
    log = PredictionLog(settings)
    log.start()
    service = ScoringService(settings, prediction_log=log)
    service.start(background=False)
    try:
        events = storage.read_events(settings.offline_events_dir, columns=["user_id", "product_id"])
        busiest = pc.value_counts(events["user_id"]).to_pylist()
        raw_of = {pseudonyms.user_id(r): r for r in raw_ids}
        shopper = max((v for v in busiest if v["values"] in raw_of), key=lambda v: v["counts"])["values"]
        raw_shopper = raw_of[shopper]
        products = pc.unique(events["product_id"]).to_pylist()[:5]
        moment = datetime.combine(days[-1], clock(12), tzinfo=timezone.utc)
        scored = service.predict(PredictRequest(user_id=raw_shopper, product_ids=products, event_time=moment))
        assert scored.user_id == shopper and not scored.cold_start
        ranked = service.recommend(RecommendRequest(user_id=raw_shopper, k=5, event_time=moment))
        assert ranked.user_id == shopper and not ranked.cold_start and ranked.items
    finally:
        service.stop()  # stops the prediction log too, after sending what it holds
    landed_predictions = ingest_predictions(settings, timeout_s=30)
    assert landed_predictions.rows >= len(products)
    logged = pq.read_table(next(predictions_dir(settings).rglob("*.parquet")))
    assert set(logged["user_id"].to_pylist()) == {shopper}
    for record in kafka_io.read_range(settings, topic, before, kafka_io.end_offsets(settings, topic)):
        if (record.partition, record.offset) != (sent[0].partition, sent[0].offset):  # the event sent above
            assert set(decode_record(record.value)["user_id"].to_pylist()) == {shopper}

    searched = [p for p in settings.data_dir.rglob("*") if p.is_file()]
    areas = {p.relative_to(settings.data_dir).parts[0] for p in searched}
    assert {"landing", "offline", "feast", "mlflow", "training"} <= areas, areas
    assert leaks(settings, set(raw_ids)) == {}
    # the search itself finds raw ids where they are: the shop's own simulation output
    sim_file = next(settings.simulation_dir.rglob("event_date=*/*.parquet"))
    assert raw_ids_in(sim_file, set(raw_ids))
