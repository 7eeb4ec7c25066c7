"""Offline ingestion: landing zone (by arrival date) -> offline event store (by event date)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from freshcart import storage
from freshcart.cli import app
from freshcart.ingestion.landing import arrival_dir, land_simulation, write_landing_jsonl
from freshcart.ingestion.interval_ingest import IngestIntervalError, ingest_interval, rejects_path
from freshcart.schema import ARROW_SCHEMA, MAX_MESSAGE_BYTES, Event
from freshcart.settings import Settings, load_settings
from freshcart.simulator import SimulationConfig, write_simulation

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
SMALL = SimulationConfig(seed=7, users=300, products=200, categories=10, days=3, events_per_day=2_000, start=START)
D = {n: date(2026, 11, n) for n in range(1, 10)}  # D[3] == 2026-11-03
runner = CliRunner()


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("simulation")
    write_simulation(SMALL, out)
    return out


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path)


def event(n: int, when: datetime, **changes: object) -> dict[str, object]:
    """A valid canonical record as the JSON message would carry it."""
    record = Event(
        event_id=f"e{n}", event_time=when, event_type="view", product_id=10 + n, category_id=3,
        category_code="electronics.phone", brand="acme", price=9.5, user_id=100 + n, user_session=f"s{n}",
    )
    row = json.loads(record.to_json())
    row.update(changes)
    return row


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc)


def partition_digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.parquet"))}


def test_simulated_landing_lands_every_event_in_its_event_date(settings: Settings, sim_dir: Path) -> None:
    landed = land_simulation(sim_dir, settings.landing_dir, late_share=0.05, seed=1)
    report = ingest_interval(settings, landed.arrival_dates[0], landed.arrival_dates[-1] + timedelta(days=1))

    expected = storage.read_events(sim_dir)
    assert report.rows_read == report.valid == expected.num_rows == landed.events
    assert report.rejected == 0 and report.duplicates == 0
    assert report.late == landed.late and 0.03 < landed.late / landed.events < 0.07
    stored = storage.read_events(settings.offline_events_dir).select(expected.column_names)
    sort = [("event_id", "ascending")]
    assert stored.sort_by(sort).equals(expected.sort_by(sort))
    for day in storage.list_partitions(settings.offline_events_dir):
        rows = storage.read_partition(settings.offline_events_dir, day)
        assert set(storage.event_dates(rows).to_pylist()) == {day}
        assert report.written[day] == report.partition_rows[day] == rows.num_rows


def test_late_simulated_events_land_in_their_earlier_event_date(settings: Settings, sim_dir: Path) -> None:
    land_simulation(sim_dir, settings.landing_dir, late_share=0.05, seed=1)
    late_files = sorted(arrival_dir(settings.landing_dir, D[3]).glob("late-*.parquet"))
    assert [p.name for p in late_files] == ["late-2026-11-01.parquet", "late-2026-11-02.parquet"]

    report = ingest_interval(settings, D[3], D[4])  # only what arrived on 2026-11-03

    late_ids = {name: set(pq.read_table(p)["event_id"].to_pylist()) for name, p in zip(("1", "2"), late_files)}
    assert report.late == sum(len(ids) for ids in late_ids.values()) > 0
    assert report.partitions == [D[1], D[2], D[3]]
    for n, ids in ((1, late_ids["1"]), (2, late_ids["2"])):
        stored = storage.read_partition(settings.offline_events_dir, D[n])
        assert set(stored["event_id"].to_pylist()) == ids


def test_late_json_event_lands_in_the_earlier_date(settings: Settings) -> None:
    write_landing_jsonl([event(1, at(D[3]))], settings.landing_dir, D[3], "stream")
    write_landing_jsonl([event(2, at(D[5])), event(3, at(D[3], 7))], settings.landing_dir, D[5], "stream")

    report = ingest_interval(settings, D[5], D[6])

    assert report.late == 1 and report.written == {D[3]: 1, D[5]: 1}
    assert storage.read_partition(settings.offline_events_dir, D[3])["event_id"].to_pylist() == ["e3"]
    report = ingest_interval(settings, D[3], D[4])
    assert report.late == 0
    assert storage.read_partition(settings.offline_events_dir, D[3])["event_id"].to_pylist() == ["e3", "e1"]


def test_rerunning_an_interval_leaves_identical_content(settings: Settings, sim_dir: Path) -> None:
    landed = land_simulation(sim_dir, settings.landing_dir, late_share=0.05, seed=1)
    end = landed.arrival_dates[-1] + timedelta(days=1)
    write_landing_jsonl([event(1, at(D[2])), "{not json"], settings.landing_dir, D[2], "stream")
    first = ingest_interval(settings, D[1], end)
    tables = {day: storage.read_partition(settings.offline_events_dir, day) for day in first.partitions}
    digests = partition_digests(settings.offline_dir)

    again = ingest_interval(settings, D[1], end)
    inner = ingest_interval(settings, D[2], D[4])

    assert again.valid == first.valid and again.new_events == 0 and again.duplicates == first.valid
    assert inner.new_events == 0 and inner.duplicates == inner.valid > 0
    for day, table in tables.items():
        now = storage.read_partition(settings.offline_events_dir, day)
        assert now.equals(table)
        assert pc.count_distinct(now["event_id"]).as_py() == now.num_rows
    assert partition_digests(settings.offline_dir) == digests  # partitions and rejects, byte for byte
    assert pq.read_table(rejects_path(settings, D[2])).num_rows == 1  # replaced, not appended


def test_the_same_event_in_two_files_is_stored_once(settings: Settings) -> None:
    write_landing_jsonl([event(1, at(D[1])), event(1, at(D[1]))], settings.landing_dir, D[1], "a")
    write_landing_jsonl([event(1, at(D[1]))], settings.landing_dir, D[2], "b")

    report = ingest_interval(settings, D[1], D[3])

    assert report.valid == 3 and report.duplicates == 2 and report.written == {D[1]: 1}


def test_rejected_json_records_are_counted_and_kept_with_their_reason(settings: Settings) -> None:
    good = [event(n, at(D[5], n)) for n in range(1, 4)]
    bad = {
        "invalid_json": json.dumps(event(10, at(D[5])))[:40],
        "missing_field": {k: v for k, v in event(11, at(D[5])).items() if k != "user_id"},
        "wrong_type": event(12, at(D[5]), product_id="not-a-number"),
        "unknown_event_type": event(13, at(D[5]), event_type="click"),
        "negative_price": event(14, at(D[5]), price=-1.0),
        "bad_time": event(15, at(D[5]), event_time="yesterday"),
        "future_time": event(16, at(D[7])),  # two days after it arrived
        "too_old": event(17, datetime(1999, 12, 31, tzinfo=timezone.utc)),
        "oversized": event(18, at(D[5]), brand="x" * (MAX_MESSAGE_BYTES + 10)),
    }
    records = [good[0], *bad.values(), "", good[1], "[1, 2]", good[2]]
    path = write_landing_jsonl(records, settings.landing_dir, D[5], "archive")

    report = ingest_interval(settings, D[5], D[6])

    assert report.rows_read == 3 + len(bad) + 1  # the blank line is not a record
    assert report.valid == 3 and report.written == {D[5]: 3}
    assert report.reasons == Counter({**{reason: 1 for reason in bad}, "invalid_json": 2})
    rejects = pq.read_table(rejects_path(settings, D[5])).to_pylist()
    assert [row["reason"] for row in rejects] == [*bad, "invalid_json"]
    assert [row["line"] for row in rejects] == [*range(2, 2 + len(bad)), 13]
    assert {row["source_file"] for row in rejects} == {"arrival_date=2026-11-05/archive.jsonl"}
    lines = path.read_text().splitlines()
    for row in rejects:
        if row["reason"] != "oversized":
            assert row["record"] == lines[row["line"] - 1]
    assert "user_id is missing" in rejects[1]["detail"] and "2026-11-07" in rejects[6]["detail"]
    assert len(rejects[8]["record"]) < 5_000  # the oversized record is cut
    stored = storage.read_partition(settings.offline_events_dir, D[5])
    assert stored["event_id"].to_pylist() == ["e1", "e2", "e3"]
    # The future bound follows the arrival date, not the interval: a wider run agrees.
    for n in (6, 7, 8):
        arrival_dir(settings.landing_dir, D[n]).mkdir()
    assert ingest_interval(settings, D[5], D[9]).reasons == report.reasons


def test_rejected_parquet_rows_and_unreadable_files_do_not_stop_the_good_ones(settings: Settings) -> None:
    rows = [event(1, at(D[1])), event(2, at(D[1]), price=-3.0), event(3, at(D[1]), user_id=None),
            event(4, at(D[1]), event_type="checkout"), event(5, at(D[1], 13))]
    text_rows = [{k: None if v is None else str(v) for k, v in row.items()} for row in rows]
    folder = arrival_dir(settings.landing_dir, D[1])
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(text_rows), folder / "a.parquet")
    (folder / "b.parquet").write_bytes(b"PAR1 this is not parquet")
    (folder / "notes.txt").write_text("not a landing file")
    write_landing_jsonl([event(6, at(D[1], 14))], settings.landing_dir, D[1], "c")

    report = ingest_interval(settings, D[1], D[2])

    assert report.valid == 3 and report.written == {D[1]: 3}
    assert report.reasons == Counter(negative_price=1, missing_field=1, unknown_event_type=1, unreadable_file=1)
    assert [p.name for p in report.skipped_files] == ["notes.txt"]
    rejects = pq.read_table(rejects_path(settings, D[1])).to_pylist()
    assert [(r["source_file"].split("/")[1], r["line"], r["reason"]) for r in rejects] == [
        ("a.parquet", 2, "negative_price"), ("a.parquet", 3, "missing_field"),
        ("a.parquet", 4, "unknown_event_type"), ("b.parquet", None, "unreadable_file"),
    ]
    assert json.loads(rejects[0]["record"])["price"] == "-3.0"
    stored = storage.read_partition(settings.offline_events_dir, D[1])
    assert stored["event_id"].to_pylist() == ["e1", "e5", "e6"]


def test_rejects_are_replaced_when_the_landing_is_fixed(settings: Settings) -> None:
    write_landing_jsonl([event(1, at(D[1])), "oops"], settings.landing_dir, D[1], "s")
    assert ingest_interval(settings, D[1], D[2]).rejected == 1
    write_landing_jsonl([event(1, at(D[1]))], settings.landing_dir, D[1], "s")
    assert ingest_interval(settings, D[1], D[2]).rejected == 0
    assert pq.read_table(rejects_path(settings, D[1])).num_rows == 0


def test_start_not_before_end_is_an_error_naming_the_interval(settings: Settings) -> None:
    with pytest.raises(IngestIntervalError, match=r"\[2026-11-03, 2026-11-03\) is empty.*the end 2026-11-04"):
        ingest_interval(settings, D[3], D[3])
    with pytest.raises(IngestIntervalError, match=r"\[2026-11-04, 2026-11-03\) is empty"):
        ingest_interval(settings, D[4], D[3])


def test_missing_landing_dates_are_an_error_naming_them(settings: Settings) -> None:
    write_landing_jsonl([event(1, at(D[1]))], settings.landing_dir, D[1], "s")
    write_landing_jsonl([event(2, at(D[3]))], settings.landing_dir, D[3], "s")
    with pytest.raises(IngestIntervalError) as raised:
        ingest_interval(settings, D[1], D[5])
    message = str(raised.value)
    assert "[2026-11-01, 2026-11-05)" in message and "2 of 4 date(s): 2026-11-02, 2026-11-04" in message
    assert str(settings.landing_dir) in message
    assert not settings.offline_events_dir.exists()  # nothing was written


def test_an_interval_without_records_is_an_error(settings: Settings) -> None:
    write_landing_jsonl(["", "  "], settings.landing_dir, D[1], "blank")
    arrival_dir(settings.landing_dir, D[2]).mkdir(parents=True)
    pq.write_table(ARROW_SCHEMA.empty_table(), arrival_dir(settings.landing_dir, D[2]) / "empty.parquet")
    with pytest.raises(IngestIntervalError, match=r"\[2026-11-01, 2026-11-03\): the 2 landing file\(s\) .* hold no records"):
        ingest_interval(settings, D[1], D[3])
    assert not settings.offline_events_dir.exists() and not (settings.offline_dir / "_rejects").exists()
    arrival_dir(settings.landing_dir, D[3]).mkdir()
    with pytest.raises(IngestIntervalError, match=r"\[2026-11-03, 2026-11-04\): the arrival folders \(no"):
        ingest_interval(settings, D[3], D[4])


def test_land_simulation_is_deterministic(tmp_path: Path, sim_dir: Path) -> None:
    one = land_simulation(sim_dir, tmp_path / "one", late_share=0.1, seed=3)
    two = land_simulation(sim_dir, tmp_path / "two", late_share=0.1, seed=3)
    assert partition_digests(tmp_path / "one") == partition_digests(tmp_path / "two")
    assert one.arrival_dates == [D[n] for n in range(1, 6)]  # 3 days and a spill day, then late arrivals
    late_files = sorted((tmp_path / "one").rglob("late-*.parquet"))
    assert sum(pq.read_metadata(p).num_rows for p in late_files) == one.late > 0
    for path in late_files:
        arrival = date.fromisoformat(path.parent.name.split("=")[1])
        event_date = date.fromisoformat(path.stem.removeprefix("late-"))
        assert 1 <= (arrival - event_date).days <= 2
        assert set(storage.event_dates(pq.read_table(path)).to_pylist()) == {event_date}
    again = land_simulation(sim_dir, tmp_path / "one", late_share=0.0, seed=3)
    assert again.late == 0 and not list((tmp_path / "one").rglob("late-*.parquet"))


def test_write_landing_jsonl_keeps_one_record_per_line(tmp_path: Path) -> None:
    path = write_landing_jsonl(['{"a":\n1}', b"broken\nmessage", event(1, at(D[1]))], tmp_path, D[1], "raw")
    assert path == tmp_path / "arrival_date=2026-11-01" / "raw.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0]) == {"a": 1} and json.loads(lines[2])["event_id"] == "e1"


def cli_text(output: str) -> str:
    """CLI output with table borders removed and whitespace collapsed."""
    return " ".join(re.sub(r"[│┃┏┓┗┛┡┩└┘━─╇┳┻╋┼┬┴├┤]", " ", output).split())


def test_cli_ingest_prints_the_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESHCART_DATA_DIR", str(tmp_path))
    simulated = runner.invoke(app, [
        "simulate", "--users", "300", "--products", "200", "--categories", "10", "--days", "3",
        "--events-per-day", "2000", "--start", "2026-11-01", "--seed", "7", "--landing", "--late-share", "0.05",
    ])
    assert simulated.exit_code == 0, simulated.output
    assert "next: freshcart ingest --start 2026-11-01 --end 2026-11-06" in cli_text(simulated.output)
    write_landing_jsonl([event(1, at(D[2])), "{oops"], tmp_path / "landing", D[2], "stream")
    total = storage.read_events(tmp_path / "simulation").num_rows

    result = runner.invoke(app, ["ingest", "--start", "2026-11-01", "--end", "2026-11-06"])

    assert result.exit_code == 0, result.output
    text = cli_text(result.output)
    assert f"read {total + 2:,}" in text and f"valid {total + 1:,}" in text
    assert "rejected 1 invalid_json 1" in text and "duplicates (event_id already seen) 0" in text
    assert re.search(r"late \(event date before arrival date\) [1-9]", text)
    assert f"new events written {total + 1:,}" in text
    rows = storage.read_partition(tmp_path / "offline" / "events", D[2]).num_rows
    assert f"2026-11-02 {rows:,} {rows:,}" in text
    rerun = cli_text(runner.invoke(app, ["ingest", "--start", "2026-11-02"]).output)
    assert "new events written 0" in rerun and f"2026-11-02 0 {rows:,}" in rerun


def test_cli_ingest_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESHCART_DATA_DIR", str(tmp_path))
    missing = runner.invoke(app, ["ingest", "--start", "2026-11-01", "--end", "2026-11-03"])
    assert missing.exit_code == 1
    assert "[2026-11-01, 2026-11-03): no landing folder for 2 of 2 date(s)" in cli_text(missing.output)
    bad_date = runner.invoke(app, ["ingest", "--start", "2026-11-31"])
    assert bad_date.exit_code == 2 and "is not a date; use YYYY-MM-DD" in bad_date.output
    backwards = runner.invoke(app, ["ingest", "--start", "2026-11-03", "--end", "2026-11-01"])
    assert backwards.exit_code == 2 and "must be after --start" in backwards.output
