"""Loaders: the real REES46 sample, a Taobao file written here, native round trips, rejects."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from freshcart.ingestion.file_ingest import ingest_file
from freshcart.ingestion.formats import LoadError
from freshcart.storage import list_partitions, read_events


def test_rees46_sample(tmp_path, bounds, rees46_sample):
    report = ingest_file(rees46_sample, "rees46", tmp_path, bounds)
    assert report.rows_read == 17_434
    assert report.rejected == 0 and report.valid == 17_434
    assert report.repeated_in_file == 5
    assert report.written == 17_429
    funnel = report.funnel()
    assert funnel["view"] == pytest.approx(0.978, abs=0.001)
    assert funnel["cart"] == pytest.approx(0.0095, abs=0.0003)
    assert funnel["purchase"] == pytest.approx(0.0123, abs=0.0003)
    events = read_events(tmp_path)
    assert events.num_rows == 17_429
    assert len(set(events["event_id"].to_pylist())) == 17_429
    assert sum(1 for p in events["price"].to_pylist() if p == 0) == 19
    assert list_partitions(tmp_path)[0].isoformat() == "2019-10-01"
    first = events.slice(0, 1).to_pylist()[0]
    assert first["event_time"].isoformat() == "2019-10-01T00:00:00+00:00"


def test_rees46_reingest_is_idempotent(tmp_path, bounds, rees46_sample):
    first = ingest_file(rees46_sample, "rees46", tmp_path, bounds)
    before = read_events(tmp_path).sort_by("event_id")
    again = ingest_file(rees46_sample, "rees46", tmp_path, bounds)
    assert again.written == 0 and again.already_present == first.written
    assert read_events(tmp_path).sort_by("event_id").equals(before)


def test_rees46_bad_rows_are_rejected_and_good_rows_kept(tmp_path, bounds):
    header = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
    rows = [
        "2019-10-01 00:00:00 UTC,view,1,2,a.b,x,1.00,10,s1",
        "2019-10-01 00:00:01 UTC,click,1,2,a.b,x,1.00,10,s1",
        "2019-10-01 00:00:02 UTC,view,1,2,a.b,x,-3,10,s1",
        "not a time,view,1,2,a.b,x,1.00,10,s1",
        "2019-10-01 00:00:03 UTC,view,one,2,a.b,x,1.00,10,s1",
        "2019-10-01 00:00:04 UTC,cart,1,2,,,,10,s1",
    ]
    path = tmp_path / "mini.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    report = ingest_file(path, "rees46", tmp_path / "out", bounds)
    assert (report.valid, report.rejected) == (2, 4)
    assert dict(report.reasons) == {"unknown_event_type": 1, "negative_price": 1, "bad_time": 1, "wrong_type": 1}
    rejects = pq.read_table(report.rejects_path).to_pylist()
    assert [r["line"] for r in rejects] == [3, 4, 5, 6]
    assert json.loads(rejects[0]["record"])["event_type"] == "click"
    kept = read_events(tmp_path / "out").to_pylist()
    assert [r["event_type"] for r in kept] == ["view", "cart"]
    assert kept[1]["price"] is None and kept[1]["brand"] is None


def test_wrong_format_is_a_clear_error(tmp_path, bounds, rees46_sample):
    with pytest.raises(LoadError, match="not a Taobao UserBehavior row"):
        ingest_file(rees46_sample, "taobao", tmp_path, bounds)
    taobao = tmp_path / "t.csv"
    taobao.write_text("1,2,3,pv,1511544070\n")
    with pytest.raises(LoadError, match="not the REES46 header"):
        ingest_file(taobao, "rees46", tmp_path, bounds)


TAOBAO = [
    # user, item, category, behavior, timestamp
    (1, 100, 7, "pv", 1511544000),
    (1, 101, 7, "pv", 1511544600),   # +10 min: same session
    (1, 101, 7, "cart", 1511544700),
    (1, 102, 8, "fav", 1511550000),  # +88 min: new session
    (1, 101, 7, "buy", 1511550100),
    (2, 100, 7, "pv", 1511544000),
    (2, 100, 7, "pv", 1511546000),   # +33 min: new session
    (2, 103, 9, "xx", 1511546100),   # unknown behaviour: rejected
    (2, 103, 9, "pv", 1511546200),
]


def _write_taobao(path, rows):
    path.write_text("".join(",".join(str(v) for v in row) + "\n" for row in rows))


def test_taobao_mapping_sessions_and_stable_ids(tmp_path, bounds):
    path = tmp_path / "UserBehavior.csv"
    _write_taobao(path, TAOBAO)
    report = ingest_file(path, "taobao", tmp_path / "a", bounds, session_gap_seconds=1800, block_bytes=64)
    assert (report.rows_read, report.valid, report.rejected) == (9, 8, 1)
    assert dict(report.reasons) == {"unknown_event_type": 1}
    events = read_events(tmp_path / "a").sort_by([("user_id", "ascending"), ("event_time", "ascending")])
    rows = events.to_pylist()
    assert [r["event_type"] for r in rows] == ["view", "view", "cart", "wishlist", "purchase", "view", "view", "view"]
    assert all(r["price"] is None and r["brand"] is None and r["category_code"] is None for r in rows)
    assert rows[0]["event_time"].isoformat() == "2017-11-24T17:20:00+00:00"
    sessions = [r["user_session"] for r in rows]
    assert sessions[0] == sessions[1] == sessions[2] != sessions[3]
    assert sessions[3] == sessions[4]
    assert sessions[5] != sessions[6] == sessions[7]
    assert len(set(sessions)) == 4
    # A second run elsewhere (other chunking) yields the same ids and sessions.
    ingest_file(path, "taobao", tmp_path / "b", bounds, block_bytes=1 << 20)
    again = read_events(tmp_path / "b").sort_by([("user_id", "ascending"), ("event_time", "ascending")])
    assert again.to_pylist() == rows


def test_native_round_trip(tmp_path, bounds, rees46_sample):
    ingest_file(rees46_sample, "rees46", tmp_path / "canonical", bounds)
    original = read_events(tmp_path / "canonical").sort_by("event_id")
    report = ingest_file(tmp_path / "canonical", "native", tmp_path / "copy", bounds)
    assert report.rejected == 0 and report.written == original.num_rows
    assert read_events(tmp_path / "copy").sort_by("event_id").equals(original)
    jsonl = tmp_path / "events.jsonl"
    from freshcart.schema import table_to_records

    jsonl.write_text("".join(json.dumps(r) + "\n" for r in table_to_records(original.slice(0, 50))))
    report = ingest_file(jsonl, "native", tmp_path / "fromjson", bounds)
    assert (report.valid, report.rejected) == (50, 0)
    assert read_events(tmp_path / "fromjson").sort_by("event_id").equals(
        original.slice(0, 50).sort_by("event_id")
    )
