"""Unit tests run without the servers: none of them reads the servers' secrets.

``tests/integration/conftest.py`` points ``FRESHCART_SECRETS_DIR`` at the servers' secrets when
pytest collects it, which happens before the unit tests run in one ``pytest tests/unit
tests/integration``; here it is taken away again, so settings with a data dir of their own
keep their own secrets.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_servers_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRESHCART_SECRETS_DIR", raising=False)
