#!/usr/bin/env bash
# `make test`: start the services the tests need, run unit and integration tests,
# and stop the services whatever the outcome.
set -uo pipefail
cd "$(dirname "$0")/.."
FRESHCART=.venv/bin/freshcart
PY=.venv/bin/python

cleanup() { "$FRESHCART" services down || true; }
trap cleanup EXIT

# The production profile's servers too (Kafka, Redis, PostgreSQL): the integration tests run
# both profiles. `services down` stops all of them whatever the profile.
FRESHCART_PROFILE=production "$FRESHCART" services up || exit 1
"$PY" -m pytest tests/unit tests/integration -q "$@"
rc=$?
# pytest exits 5 when it collected no test: that is a failure of the suite, say so.
[ $rc -eq 5 ] && echo "no tests were collected" >&2
exit $rc
