"""Pseudonymised shoppers at the edges, and erasure in files and in the stream state cache (no servers)."""

from __future__ import annotations

import json
import pickle
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from freshcart import kafka_io, storage
from freshcart.ingestion.file_ingest import ingest_file
from freshcart.ingestion.landing import write_landing_jsonl
from freshcart.privacy.files import forget_in_files
from freshcart.privacy.pseudonym import (
    Pseudonymiser, PseudonymKeyError, as_user_id, key_path, load_key, pseudonymiser_for,
)
from freshcart.privacy.stream_state import forget_in_cache, shopper_keys
from freshcart.schema import Event, TimeBounds, event_from_json, events_to_table
from freshcart.settings import load_settings
from freshcart.stream.checkpoint import CheckpointStore, checkpoint_path
from freshcart.stream.processor import UserTask
from freshcart.stream.slots import state_dir

KEY = b"0123456789abcdef0123456789abcdef"
RAW = 990_000_000_123
BOUNDS = TimeBounds(datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2030, 1, 1, tzinfo=timezone.utc))


def test_one_key_one_map_positive_int64_and_text_is_the_same_id() -> None:
    mapper, other = Pseudonymiser(KEY), Pseudonymiser(KEY[::-1])
    ids = [0, 1, -5, RAW, 2**63 - 1, -(2**63)]
    mapped = [mapper.user_id(i) for i in ids]
    assert mapped == [Pseudonymiser(KEY).user_id(i) for i in ids]  # a new instance, the same map
    assert all(0 < m <= 2**63 - 1 for m in mapped) and len(set(mapped)) == len(ids)
    assert [other.user_id(i) for i in ids] != mapped  # another key, other pseudonyms
    assert mapper.maybe(str(RAW)) == mapper.maybe(f" {RAW} ") == mapper.user_id(RAW)
    for invalid in ("abc", 1.5, True, None, "", str(2**63), [1]):  # not an id: left as it is
        assert mapper.maybe(invalid) is invalid
    assert as_user_id("-00042") == -42 and as_user_id("12a") is None


def test_the_key_is_generated_once_mode_0600_and_a_bad_key_is_refused(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, pseudonymise=True)
    first = load_key(settings)
    path = key_path(settings)
    assert path.stat().st_mode & 0o777 == 0o600 and len(first) == 64
    assert load_key(settings) == first and pseudonymiser_for(settings).user_id(7) == Pseudonymiser(first).user_id(7)
    path.chmod(0o644)
    with pytest.raises(PseudonymKeyError, match="chmod 600"):
        load_key(settings)
    with pytest.raises(PseudonymKeyError, match="FRESHCART_ID_KEY has 5 characters"):
        load_key(load_settings(data_dir=tmp_path, id_key="short"))
    assert pseudonymiser_for(load_settings(data_dir=tmp_path)) is None  # off by default
    assert load_settings(data_dir=tmp_path, id_key=KEY.decode()).masked()["id_key"] == "**********"


def test_ingest_file_stores_and_rejects_only_pseudonyms(tmp_path: Path) -> None:
    mapper = Pseudonymiser(KEY)
    source = tmp_path / "shop.csv"
    source.write_text("event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
                      f"2025-01-08 10:00:00 UTC,view,1,2,,,5.0,{RAW},\n"
                      f"2025-01-08 10:05:00 UTC,cart,1,2,,,5.0,{RAW},\n"
                      f"2025-01-08 10:06:00 UTC,view,1,2,,,-1.0,{RAW + 1},s\n"
                      "2025-01-08 10:07:00 UTC,view,1,2,,,1.0,not-an-id,s\n")
    out = tmp_path / "events"
    report = ingest_file(source, "rees46", out, BOUNDS, pseudonymiser=mapper)
    assert (report.valid, report.rejected) == (2, 2)
    events = storage.read_events(out)
    assert set(events["user_id"].to_pylist()) == {mapper.user_id(RAW)}
    assert all(str(RAW) not in s for s in events["user_session"].to_pylist())  # sessions from the pseudonym
    rejects = pq.read_table(report.rejects_path)
    records = [json.loads(r) for r in rejects["record"].to_pylist()]
    assert [r["user_id"] for r in records] == [str(mapper.user_id(RAW + 1)), "not-an-id"]
    assert dict(zip(rejects["reason"].to_pylist(), [1, 1])) == {"negative_price": 1, "wrong_type": 1}
    for path in out.rglob("*.parquet"):
        assert str(RAW).encode() not in path.read_bytes()
    # without the pseudonymiser the same file keeps the raw ids
    plain = ingest_file(source, "rees46", tmp_path / "plain", BOUNDS)
    assert set(storage.read_events(tmp_path / "plain")["user_id"].to_pylist()) == {RAW} and plain.valid == 2


def _event(user: int, n: int, category: int = 2) -> Event:
    return Event(f"e-{user % 97}-{n}-{category}", datetime(2025, 1, 8, 10, n, tzinfo=timezone.utc), "view", 100 + n, category,
                 None, None, 1.0, user, f"s-{n}")


def test_landing_and_the_producer_helper_map_what_they_send(tmp_path: Path) -> None:
    mapper = Pseudonymiser(KEY)
    records = [_event(RAW, 1), {"event_id": "x", "user_id": RAW}, b'{"user_id": "%d"}' % RAW, b"{broken"]
    path = write_landing_jsonl(records, tmp_path, datetime(2025, 1, 8).date(), "batch", pseudonymiser=mapper)
    lines = path.read_bytes().splitlines()
    assert str(RAW).encode() not in b"".join(lines[:3]) and lines[3] == b"{broken"
    assert event_from_json(lines[0], BOUNDS).user_id == mapper.user_id(RAW)

    class Recorder:
        sent: list = []

        def send(self, topic, key, value):
            self.sent.append((key, value))

        def flush(self):
            pass

    producer = Recorder()
    kafka_io.produce(producer, "t", [(str(RAW).encode(), _event(RAW, 2).to_json()), (b"k", b"nope")],
                     pseudonymiser=mapper)
    (key, value), unmapped = producer.sent
    assert key == str(mapper.user_id(RAW)).encode() and event_from_json(value, BOUNDS).user_id == mapper.user_id(RAW)
    assert unmapped == (b"k", b"nope")  # not an event: sent as it is, dead-lettered downstream


def test_the_scoring_service_maps_the_shops_id_before_reading_features(tmp_path: Path) -> None:
    from freshcart.serving.schemas import PredictRequest
    from freshcart.serving.scoring import ScoringService

    on = ScoringService(load_settings(data_dir=tmp_path, pseudonymise=True, id_key=KEY.decode()))
    request = PredictRequest(user_id=RAW, product_ids=[1])
    assert on.shopper(request).user_id == Pseudonymiser(KEY).user_id(RAW) and request.user_id == RAW
    assert ScoringService(load_settings(data_dir=tmp_path)).shopper(request) is request


def _write(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_forget_in_files_removes_only_the_shoppers_rows(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    target, other = 41, 42
    events = [_event(u, n) for u in (target, other) for n in range(3)]
    storage.upsert_partition(settings.offline_events_dir, datetime(2025, 1, 8).date(), events_to_table(events))
    only_other = settings.offline_events_dir / "event_date=2025-01-09" / "data.parquet"
    _write(only_other, events_to_table([_event(other, 9)]))
    write_landing_jsonl(events, settings.landing_dir, datetime(2025, 1, 8).date(), "batch")
    rejects = pa.table({"line": [1, 2], "reason": ["negative_price"] * 2, "detail": ["x"] * 2,
                        "record": [json.dumps({"user_id": str(target)}), json.dumps({"user_id": str(other)})]})
    _write(settings.offline_dir / "_rejects" / "arrival_date=2025-01-08" / "data.parquet", rejects)
    truth = pa.table({"event_id": [e.event_id for e in events], "purchase_proba": [0.5] * len(events)})
    _write(settings.simulation_dir / "_truth" / "event_date=2025-01-08" / "data.parquet", truth)
    _write(settings.data_dir / "monitoring" / "reference" / "v1.parquet", pa.table({"score": [0.1, 0.2]}))
    _write(settings.data_dir / "kafka" / "x.parquet", events_to_table(events))  # a server's own folder: skipped
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    rows_before = {p: pq.read_table(p).to_pylist() for p in files if p.suffix == ".parquet"}

    removed = forget_in_files(settings, target)

    assert removed == {"offline/events": 3, "landing": 3, "offline/_rejects": 1, "simulation/_truth": 3}
    changed = {p for p in files if p.read_bytes() != before[p]}
    assert {p.relative_to(tmp_path).parts[:2] for p in changed} == {
        ("offline", "events"), ("landing", "arrival_date=2025-01-08"), ("offline", "_rejects"), ("simulation", "_truth")}
    assert only_other not in changed and settings.data_dir / "kafka" / "x.parquet" not in changed
    for path in changed:
        if path.suffix == ".parquet":
            after = pq.read_table(path).to_pylist()
            kept = [r for r in rows_before[path] if r.get("user_id") != target
                    and not (r.get("record") and json.loads(r["record"])["user_id"] == str(target))
                    and not str(r.get("event_id", "")).startswith(f"e-{target % 97}-")]
            assert after == kept and after
        else:
            assert [json.loads(line)["user_id"] for line in path.read_text().splitlines()] == [other] * 3
    assert forget_in_files(settings, target) == {}  # idempotent: nothing left, nothing rewritten


def test_forget_in_the_stream_cache_keeps_every_other_key(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, events_partitions=1)
    task = UserTask(0, 600_000_000)
    for offset, event in enumerate([_event(u, n, category=c) for u in (41, 42) for n in range(3) for c in (2, 3)]):
        task.apply(offset, event.to_json(), 0, BOUNDS)
    path = checkpoint_path(state_dir(settings), settings.events_topic, 0)
    path.parent.mkdir(parents=True)
    store = CheckpointStore(path)
    store.replace(task.snapshot(), task.meta)
    store.close()
    others = pickle.dumps(({k: v for k, v in task.features.users.items() if k != 41},
                           {k: v for k, v in task.features.pairs.items() if k[0] != 41}))

    assert forget_in_cache(settings, 41) == {"users": 1, "pairs": 2}

    store = CheckpointStore(path)
    parts, meta = store.load()
    store.close()
    restored = UserTask(0, 600_000_000)
    restored.restore(parts, meta)
    assert pickle.dumps((restored.features.users, restored.features.pairs)) == others  # every other key as it was
    assert 41 not in restored.features.users and meta.next_offset == task.meta.next_offset
    assert forget_in_cache(settings, 41) == {}
    assert shopper_keys(b"u:41", 41) and shopper_keys(b"c:41:3", 41)
    assert not shopper_keys(b"u:411", 41) and not shopper_keys(b"c:411:3", 41) and not shopper_keys(b"p:41", 41)


def test_forget_from_the_command_line_maps_the_shops_id_and_audits_the_pseudonym(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from freshcart.cli import app

    monkeypatch.setenv("FRESHCART_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FRESHCART_PSEUDONYMISE", "true")
    monkeypatch.setenv("FRESHCART_ID_KEY", KEY.decode())
    mapper = Pseudonymiser(KEY)
    settings = load_settings()
    stored = [_event(mapper.user_id(RAW), n) for n in range(2)] + [_event(mapper.user_id(RAW + 1), 5)]
    storage.upsert_partition(settings.offline_events_dir, datetime(2025, 1, 8).date(), events_to_table(stored))
    runner = CliRunner()
    assert runner.invoke(app, ["privacy", "forget", "--user", "12x"]).exit_code == 2

    result = runner.invoke(app, ["privacy", "forget", "--user", str(RAW), "--no-stream", "--by", "dpo"])

    assert result.exit_code == 0, result.output
    assert set(storage.read_events(settings.offline_events_dir)["user_id"].to_pylist()) == {mapper.user_id(RAW + 1)}
    audit = (tmp_path / "privacy" / "erasures.jsonl").read_text()
    record = json.loads(audit)
    assert record["user_id"] == mapper.user_id(RAW) and str(RAW) not in audit
    assert record["files"] == {"offline/events": 2} and record["stream_skipped"] and record["requested_by"] == "dpo"
    assert (tmp_path / "privacy" / "erasures.jsonl").stat().st_mode & 0o777 == 0o600
