"""Background work of the scoring service: a daemon thread that runs a function every few seconds.

The service's watchers (the model alias, the trending index) and anything that wants to
behave as they do (the closed-loop demo's model holder) run through :func:`run_every`.
A failed run is logged and retried at the next tick; it never ends the thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


def run_every(name: str, every: float, work: Callable[[], object], stop: threading.Event) -> threading.Thread:
    """Start a daemon thread ``name`` that calls ``work`` every ``every`` seconds until ``stop`` is set."""
    def loop() -> None:
        while not stop.wait(every):
            try:
                work()
            except Exception:  # noqa: BLE001 - a background refresh must never end the service
                log.exception("%s failed; retrying in %.0f s", name, every)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
