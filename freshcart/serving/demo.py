"""The serving step of `freshcart demo`: recommendations from the running service, and how fresh clicks change them.

Starts ``bentoml serve`` and the stream processor (on the live demo's topics), prints
one shopper's top-10 (product, score, candidate source, model version), then sends
that shopper's next clicks (views and an add-to-cart in a category they have not
browsed) through Kafka and asks for recommendations every 100 ms until they change:
the stream processor updated the shopper's session features, which the service reads
on every request. Then it stops both.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table

from freshcart.settings import Settings


def _table(title: str, items: list[dict[str, Any]], version: str, highlight: set[int] | None = None) -> Table:
    table = Table("rank", "product", "score", "source", "model", title=title)
    for item in items:
        mark = "*" if highlight and item["product_id"] in highlight else ""
        table.add_row(str(item["rank"]), f"{item['product_id']}{mark}", f"{item['score']:.4f}",
                      ",".join(item["sources"]), f"v{version}")
    return table


def next_clicks(user_id: int, products: list[tuple[int, int, float | None]], moment: datetime) -> list[dict[str, Any]]:
    """Views of ``products`` (id, category, price), then an add-to-cart of the first, a second apart."""
    session = f"demo-{uuid.uuid4().hex[:8]}"
    kinds = ["view"] * len(products) + ["cart"]
    chosen = products + products[:1]
    out = []
    for i, (kind, (product, category, price)) in enumerate(zip(kinds, chosen)):
        stamp = datetime.fromtimestamp(moment.timestamp() + i, timezone.utc)
        out.append({"event_id": uuid.uuid4().hex[:16], "event_time": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "event_type": kind, "product_id": product, "category_id": category, "category_code": None,
                    "brand": None, "price": price, "user_id": user_id, "user_session": session})
    return out


def run_serving_demo(settings: Settings, console: Console, port: int | None = None, k: int = 10,
                     timeout_s: float = 20.0) -> None:
    """Serve the champion, show a shopper's top-k, click, and show the top-k change (see the module doc)."""
    import httpx

    from freshcart.kafka_io import ensure_topics, make_producer
    from freshcart.serving.catalogue import load_catalogue
    from freshcart.serving.launch import free_port, start_service
    from freshcart.stream.consumer import CONSUMER_SETTINGS
    from freshcart.stream.demo import live_settings

    live = live_settings(settings)
    ensure_topics(live)
    catalogue = load_catalogue(settings)
    if not catalogue.purchases:
        raise SystemExit("no shoppers with purchases in the offline store; run the demo's earlier steps first")
    user = max(catalogue.purchases, key=lambda u: len(catalogue.purchases[u]))
    log_dir = settings.logs_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "serving-demo-stream.log").open("w") as log:
        consumer = subprocess.Popen([sys.executable, "-m", "freshcart", "stream", "consume"],
                                    env=live.child_env(CONSUMER_SETTINGS), stdout=log, stderr=subprocess.STDOUT)
    service = None
    try:
        started = time.perf_counter()
        service = start_service(live, port or free_port(), log_dir / "serving-demo.log")
        console.print(f"scoring service ready on {service.url} in {time.perf_counter() - started:.0f} s "
                      f"(bentoml serve, {settings.profile} profile); OpenAPI at {service.url}/docs", highlight=False)
        client = httpx.Client(base_url=service.url, timeout=10)
        key = settings.serving_api_key.get_secret_value() if settings.serving_api_key else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}

        def recommend() -> dict[str, Any]:
            answer = client.post("/recommend", json={"user_id": user, "k": k}, headers=headers)
            answer.raise_for_status()
            return answer.json()

        before = recommend()
        console.print(_table(f"shopper {user}: top-{k} now", before["items"], before["model"]["version"]))
        seen = set(before["items"][i]["product_id"] for i in range(len(before["items"])))
        favourite = {catalogue.category.get(i["product_id"]) for i in before["items"]}
        fresh = [p for p, c in catalogue.category.items() if c not in favourite and p not in seen]
        picked = sorted(fresh, key=lambda p: -catalogue.views.get(p, 0))[:4]
        clicks = next_clicks(user, [(p, catalogue.category[p], catalogue.price.get(p)) for p in picked],
                             datetime.now(timezone.utc))
        deadline = time.monotonic() + 120
        while "assigned" not in (log_dir / "serving-demo-stream.log").read_text():
            if consumer.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the stream consumer did not start; see {log_dir / 'serving-demo-stream.log'}")
            time.sleep(0.2)
        producer = make_producer(live)
        for record in clicks:
            producer.send(live.events_topic, key=str(user).encode(), value=json.dumps(record).encode())
        producer.flush()
        sent = time.perf_counter()
        console.print(f"sent shopper {user}'s next {len(clicks)} clicks to {live.events_topic}: views of "
                      f"{', '.join(map(str, picked))} and an add-to-cart of {picked[0]}", highlight=False)
        after, first_change = before, None
        while time.perf_counter() - sent < timeout_s:
            after = recommend()
            ids = [i["product_id"] for i in after["items"]]
            if first_change is None and ids != [i["product_id"] for i in before["items"]]:
                first_change = time.perf_counter() - sent
            if first_change is not None and time.perf_counter() - sent >= first_change + 1.0:
                break  # a second after the first change: the user's and the session's rows have both landed
            time.sleep(0.1)
        waited = first_change if first_change is not None else time.perf_counter() - sent
        changed = after["items"] != before["items"]
        if first_change is not None:
            console.print(f"first change {first_change:.2f} s after the clicks were sent", highlight=False)
        console.print(_table(f"shopper {user}: top-{k} {waited:.2f} s after the clicks"
                             + ("" if changed else " (unchanged)"), after["items"], after["model"]["version"],
                             set(picked)))
        console.print(f"* clicked just now (a product the shopper just saw ranks by its score like any other "
                      f"candidate); the recommendation {'changed' if changed else 'did not change'} "
                      f"{waited:.2f} s after the clicks were sent (stream -> online store -> service; session "
                      f"features read on every request, user features as of "
                      f"{after['freshness']['user_features_time']})", highlight=False)
    finally:
        if service is not None:
            service.stop()
        consumer.send_signal(signal.SIGTERM)
        try:
            consumer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            consumer.kill()
