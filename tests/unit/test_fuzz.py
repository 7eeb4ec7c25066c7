"""Property-based tests of bad input at every edge (hypothesis; the checks are in ``fuzz_edges``).

The CI profile keeps each edge to a few seconds; ``bench/bench_fuzz.py`` runs the same checks
much longer and prints, per edge, the inputs tried, the exceptions that escaped and the valid
records lost.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings

from tests.unit import fuzz_edges as edges

settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("ci")


@given(edges.MESSAGES)
def test_any_message_is_an_event_or_a_reason(payload: bytes) -> None:
    edges.check_message(edges.Tally("decoder"), payload)


@given(edges.bad_records())
def test_any_record_is_an_event_or_a_reason_in_both_validators(record: dict[str, Any]) -> None:
    edges.check_record(edges.Tally("validator"), record, valid=False)


@given(edges.valid_records())
def test_a_valid_record_passes_both_validators_and_round_trips(record: dict[str, Any]) -> None:
    edges.check_record(edges.Tally("validator"), record, valid=True)


@settings(max_examples=25)
@given(edges.rees46_files())
def test_a_rees46_file_keeps_every_valid_row_whatever_else_it_holds(case: tuple[bytes, list]) -> None:
    edges.check_file(edges.Tally("rees46"), *case)


@settings(max_examples=25)
@given(edges.native_files())
def test_a_native_json_lines_file_keeps_every_valid_row(case: tuple[bytes, list]) -> None:
    edges.check_file(edges.Tally("native"), *case, fmt="native")


@given(edges.REQUEST_BODIES)
def test_a_bad_request_body_is_a_validation_error_that_names_the_field(body: Any) -> None:
    edges.check_request(edges.Tally("requests"), body)


@given(edges.MESSAGES)
def test_bad_request_bytes_are_a_validation_error(payload: bytes) -> None:
    edges.check_request(edges.Tally("requests"), payload, raw_json=True)


@given(edges.VALID_REQUESTS)
def test_a_valid_request_is_read_as_sent(case: tuple[Any, dict]) -> None:
    edges.check_valid_request(edges.Tally("requests"), *case)
