"""The demo's live step: the stream processor runs while simulated shoppers click, right now.

A slice of the simulated week is replayed as live traffic: event times move to the
present (keeping their spacing, sped up), event ids are new, and the events go to the
demo's own topics at a steady rate while `freshcart stream consume` runs as its own
process. Meanwhile the demo reads one busy shopper's online features through Feast
every second, so one sees them change as the session goes on.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from freshcart.settings import Settings

LIVE_EVENTS = 24_000
LIVE_RATE = 1_500.0  # events/s
SPEEDUP = 60.0  # one simulated minute per live second


def live_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={
        "events_topic": "freshcart.demo.events", "product_topic": "freshcart.demo.by-product",
        "dlq_topic": "freshcart.demo.dlq", "stream_group": "freshcart-demo", "stream_metrics_port": 0})


def live_records(config: Any, n: int) -> list[dict[str, Any]]:
    """``n`` simulated records re-stamped to start now (``SPEEDUP`` times faster), with new ids."""
    from freshcart.simulator import iter_records

    records = list(itertools.islice(iter_records(config), n))
    first = records[0]["event_time"]
    first = first if isinstance(first, datetime) else datetime.fromisoformat(str(first).replace("Z", "+00:00"))
    now = datetime.now(timezone.utc)
    out = []
    for record in records:
        moment = record["event_time"]
        moment = moment if isinstance(moment, datetime) else datetime.fromisoformat(str(moment).replace("Z", "+00:00"))
        live = now + (moment - first) / SPEEDUP
        out.append({**record, "event_id": uuid.uuid4().hex[:16],
                    "event_time": live.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "user_session": record["user_session"]})
    return out


def run_live(settings: Settings, console: Console, config: Any) -> None:
    """Consume while producing live traffic; print one shopper's features as their session goes on."""
    from freshcart.features.store import feature_store
    from freshcart.kafka_io import ensure_topics, make_producer
    from freshcart.stream.consumer import CONSUMER_SETTINGS
    from freshcart.stream.metrics import read_statuses

    live = live_settings(settings)
    ensure_topics(live)
    records = live_records(config, LIVE_EVENTS)
    busiest = Counter(r["user_id"] for r in records[: LIVE_EVENTS // 2]).most_common(1)[0][0]
    log_path = settings.logs_dir / "stream-demo.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "freshcart", "stream", "consume"],
                                   env=live.child_env(CONSUMER_SETTINGS),
                                   stdout=log, stderr=subprocess.STDOUT)
    store = feature_store(live)
    refs = ["user_session:session_events", "user_session:session_products", "user_session:session_carts",
            "user_activity:views_1h", "user_activity:last_event_ts"]
    table = Table("t (s)", "sent", "session events", "session products", "session carts", "views 1h",
                  "latest event (UTC)", title=f"shopper {busiest}: online features while the session goes on",
                  caption="read through Feast every second; the first row may still be the batch value "
                          "materialised before")
    try:
        deadline = time.monotonic() + 120
        while "assigned" not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the stream consumer did not start; see {log_path}")
            time.sleep(0.2)
        producer = make_producer(live)
        started = time.perf_counter()
        next_read, last_row = 0.0, None
        for i, record in enumerate(records):
            producer.send(live.events_topic, key=str(record["user_id"]).encode(),
                          value=json.dumps(record, separators=(",", ":")).encode())
            if i % 50 == 0:
                elapsed = time.perf_counter() - started
                ahead = i / LIVE_RATE - elapsed
                if ahead > 0:
                    time.sleep(ahead)
                if elapsed >= next_read:
                    next_read += 1.0
                    got = store.get_online_features(features=refs, entity_rows=[{"user_id": busiest}]).to_dict()
                    row = tuple(str(got[r.split(":")[1]][0]) for r in refs)
                    if row != last_row and got["session_events"][0] is not None:
                        last_row = row
                        updated = datetime.fromtimestamp(got["last_event_ts"][0], timezone.utc)
                        table.add_row(f"{elapsed:.0f}", f"{i:,}", str(got["session_events"][0]),
                                      str(got["session_products"][0]), str(got["session_carts"][0]),
                                      str(got["views_1h"][0]), f"{updated:%Y-%m-%d %H:%M:%S}")
        producer.flush()
        producer.close()
        time.sleep(2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    console.print(table)
    status = next((s for s in read_statuses(settings.data_dir) if s.get("group") == live.stream_group), None)
    if status:
        for stage, p in status.get("freshness_ms", {}).items():
            console.print(f"freshness ({stage} features): p50 {p['p50']:.0f} ms, p99 {p['p99']:.0f} ms over "
                          f"the last {p['n']:,} events at {LIVE_RATE:,.0f} events/s", highlight=False)
    summary = [line for line in log_path.read_text().splitlines() if line.startswith("consumed")]
    console.print(summary[-1] if summary else f"consumer log: {log_path}", highlight=False)
    console.print(f"`freshcart stream status` and `freshcart stream dlq` show lag, freshness and dead letters "
                  f"(FRESHCART_STREAM_GROUP={live.stream_group}, FRESHCART_EVENTS_TOPIC={live.events_topic})",
                  highlight=False)
