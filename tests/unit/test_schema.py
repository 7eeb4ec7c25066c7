"""The canonical event schema: every rejection reason, row-wise and columnar alike."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from freshcart.schema import (
    Event, Rejection, event_from_json, events_to_table, parse_time, table_to_records, validate_record,
)
from freshcart.ingestion.validation import validate_table

GOOD = {
    "event_id": "e-1",
    "event_time": "2019-10-01T00:00:05Z",
    "event_type": "view",
    "product_id": 44600062,
    "category_id": 2103807459595387724,
    "category_code": "electronics.smartphone",
    "brand": "shiseido",
    "price": 35.79,
    "user_id": 541312140,
    "user_session": "72d76fde-8bb3-4e00-8c23-a032dfed738c",
}

BAD = [
    ({"user_id": None}, "missing_field"),
    ({"event_id": ""}, "missing_field"),
    ({"product_id": "abc"}, "wrong_type"),
    ({"category_id": "99999999999999999999"}, "wrong_type"),
    ({"price": "cheap"}, "wrong_type"),
    ({"event_type": "click"}, "unknown_event_type"),
    ({"price": -0.01}, "negative_price"),
    ({"event_time": "yesterday"}, "bad_time"),
    ({"event_time": "2031-01-01T00:00:00Z"}, "future_time"),
    ({"event_time": "1999-12-31T23:59:59Z"}, "too_old"),
]


def test_good_record_is_accepted(bounds):
    event = validate_record(GOOD, bounds)
    assert isinstance(event, Event)
    assert event.event_time.isoformat() == "2019-10-01T00:00:05+00:00"
    assert event.key == b"541312140"


@pytest.mark.parametrize("change,reason", BAD)
def test_each_rejection_reason_row_wise(bounds, change, reason):
    result = validate_record({**GOOD, **change}, bounds)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.detail  # says which field and value


def test_missing_key_is_missing_field(bounds):
    record = dict(GOOD)
    del record["user_session"]
    assert validate_record(record, bounds) == Rejection("missing_field", "user_session is missing")


def test_zero_price_and_null_optionals_are_valid(bounds):
    event = validate_record({**GOOD, "price": 0, "brand": None, "category_code": ""}, bounds)
    assert isinstance(event, Event)
    assert event.price == 0.0 and event.brand is None and event.category_code is None


def test_columnar_validation_agrees_with_row_validation(bounds):
    """The same rules, the same reasons: valid rows are kept beside invalid ones."""
    records = [GOOD] + [{**GOOD, "event_id": f"bad-{i}", **change} for i, (change, _) in enumerate(BAD)]
    raw = pa.table({name: [None if r.get(name) is None else str(r[name]) for r in records] for name in GOOD})
    raw = raw.append_column("_row", pa.array(range(len(records))))
    checked = validate_table(raw, bounds, time_format="iso")
    assert checked.valid["event_id"].to_pylist() == ["e-1"]
    columnar = dict(zip(checked.rejects["_row"].to_pylist(), checked.rejects["reason"].to_pylist()))
    row_wise = {row: validate_record(records[row], bounds).reason for row in range(1, len(records))}
    assert columnar == row_wise
    assert [columnar[row + 1] for row in range(len(BAD))] == [reason for _, reason in BAD]


def test_json_round_trip(bounds):
    event = validate_record(GOOD, bounds)
    payload = event.to_json()
    assert json.loads(payload)["event_time"] == "2019-10-01T00:00:05Z"
    assert event_from_json(payload, bounds) == event


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_invalid_json_is_rejected(bounds, payload):
    result = event_from_json(payload, bounds)
    assert isinstance(result, Rejection) and result.reason == "invalid_json"


def test_table_round_trip(bounds):
    events = [validate_record({**GOOD, "event_id": f"e-{i}", "price": i * 1.5}, bounds) for i in range(3)]
    table = events_to_table(events)
    assert [validate_record(r, bounds) for r in table_to_records(table)] == events


def test_parse_time_formats():
    assert parse_time("2019-10-01 00:00:00 UTC").isoformat() == "2019-10-01T00:00:00+00:00"
    assert parse_time(1511544070).isoformat() == "2017-11-24T17:21:10+00:00"
    assert parse_time("2019-10-01T02:00:00+02:00").isoformat() == "2019-10-01T02:00:00+02:00"
    assert parse_time("nonsense") is None and parse_time(True) is None
