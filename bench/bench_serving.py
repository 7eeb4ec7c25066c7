"""Benchmark: the scoring service under open-loop constant-rate load, against its own trivial endpoint.

A real `bentoml serve` (FRESHCART_SERVING_WORKERS workers, 2 by default) scores with a
champion trained on a small simulated shop (built once under <data_dir>/bench/serving,
reused afterwards). The load generator runs in this process: requests leave at fixed times
(rate r: one every 1/r s, whether or not earlier ones have answered) over keep-alive
connections on raw asyncio sockets, and each latency is measured from the request's
scheduled time, so a stall shows in every request it delays. For each rate, short runs of
the trivial endpoint (/ping) and of /predict (one known shopper, 100 candidates) alternate
--rounds times; the table gives the median over rounds of p50 / p95 / p99 and the errors,
and the mean feature-read, model and whole scoring-logic time (no queueing) per request
(from the service's own metrics). Then
10,000 mixed requests, 5% of them malformed, count the 5xx answers.

With ``--endpoint recommend`` the runs are of /recommend (the known shopper, top 10 of 100
candidates) ranked by the propensity champion and by a ranker champion (``freshcart-ranker``
with ``serving_ranker=ranker``), alternating with /ping: before each run the tag is set and the
run waits until every worker answers with that ranker (within the default
``serving_reload_seconds``: the registry check runs as often as in a shop's service). The ranker is registered once per data
dir, and again when ``RankerParams`` change: a booster of the ranker's full size (every one of
``RankerParams.max_rounds`` rounds, at its depth) fitted to random rows of the service's input
columns, which costs what a trained one of that size costs to score (its ranking quality is not
the point here).

    .venv/bin/python bench/bench_serving.py [--profile local|production] [--seconds 10] [--rounds 3]
        [--endpoint predict|recommend]

The production profile needs `FRESHCART_PROFILE=production freshcart services up` (Redis, PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import time
import uuid
from datetime import datetime, time as clock, timezone
from pathlib import Path

import httpx

from freshcart import storage
from freshcart.settings import Settings, load_settings

SHOP_USERS, SHOP_PRODUCTS, SHOP_DAYS, SHOP_EVENTS = 1_500, 600, 6, 30_000


def build_shop(settings: Settings) -> None:
    """Simulate, build and materialise features, train XGBoost and make it champion (once per data dir)."""
    from freshcart.features.materialize import materialize
    from freshcart.features.store import apply
    from freshcart.features.tables import build_feature_tables
    from freshcart.simulator import SimulationConfig, write_simulation
    from freshcart.training.data import load_or_build
    from freshcart.training.promote import promote
    from freshcart.training.registry import CHAMPION, connect, version_by_alias
    from freshcart.training.train import train_model

    if not storage.list_partitions(settings.offline_events_dir):
        write_simulation(SimulationConfig(seed=5, users=SHOP_USERS, products=SHOP_PRODUCTS, days=SHOP_DAYS,
                                          events_per_day=SHOP_EVENTS), settings.offline_events_dir)
    days = storage.list_partitions(settings.offline_events_dir)
    build_feature_tables(settings, days[0], days[-1])
    applied = apply(settings)
    if applied.returncode != 0:
        raise SystemExit(f"feast apply failed:\n{applied.stdout}{applied.stderr}")
    materialize(settings, datetime.combine(days[0], clock(), tzinfo=timezone.utc),
                datetime.combine(days[-1], clock(), tzinfo=timezone.utc))
    if version_by_alias(connect(settings), settings.registered_model, CHAMPION) is None:
        _, path, _ = load_or_build(settings, days[1], days[4])
        train_model(settings, "xgboost", training_set=path)
        promote(settings)


SOURCES = ["session", "recent", "co_viewed", "co_bought", "sknn", "trending", "popular"]
"""The service's candidate sources with the online store (freshcart.serving.candidates.default_sources)."""


def register_bench_ranker(settings: Settings) -> str:
    """The ranker champion of the bench shop (registered once; see the module)."""
    import numpy as np
    import xgboost as xgb

    from freshcart.recommendation.ranker import RankerModel, RankerParams
    from freshcart.recommendation.ranker_registry import RANKER_MODEL, register_ranker
    from freshcart.serving.ranking import buildable_columns
    from freshcart.training.registry import CHAMPION, connect, version_by_alias

    params = RankerParams()
    size = f"{params.max_rounds} rounds of depth {params.max_depth}"
    client = connect(settings)
    try:
        champion = version_by_alias(client, RANKER_MODEL, CHAMPION)
    except Exception:  # noqa: BLE001 - no registered ranker yet
        champion = None
    if champion is not None and (champion.tags or {}).get("bench_size") == size:
        return str(champion.version)
    names = buildable_columns(SOURCES)
    rng = np.random.default_rng(1)
    x = rng.random((20_000, len(names))).astype(np.float32)
    label = (rng.random(20_000) < 0.05).astype(np.float32)
    booster_params = {**params.booster_params(), "nthread": 2, "min_child_weight": 1.0}
    booster = xgb.train(booster_params, xgb.DMatrix(x, label=label, qid=np.repeat(np.arange(200), 100),
                                                    feature_names=names), num_boost_round=params.max_rounds)
    model = RankerModel(booster=booster, feature_names=names, best_iteration=params.max_rounds - 1)
    version = register_ranker(settings, model, {}, {"what": "bench: full-size booster on random rows",
                                                      "bench_size": size})
    client.set_registered_model_alias(RANKER_MODEL, CHAMPION, version)
    return version


def use_ranker(settings: Settings, url: str, request: dict, ranker: str) -> None:
    """Set ``serving_ranker`` to ``ranker`` (or ``propensity``) and wait until 40 answers in a row rank so."""
    from freshcart.recommendation.ranker_registry import RANKER_MODEL, SERVING_RANKER_TAG
    from freshcart.training.registry import connect

    connect(settings).set_registered_model_tag(RANKER_MODEL, SERVING_RANKER_TAG, ranker)
    wanted = RANKER_MODEL if ranker == "ranker" else settings.registered_model
    deadline, streak = time.monotonic() + 120, 0
    while streak < 40:
        if time.monotonic() > deadline:
            raise SystemExit(f"the service did not switch to serving_ranker={ranker} within 120 s")
        answer = httpx.post(f"{url}/recommend", json=request, timeout=10)
        streak = streak + 1 if answer.status_code == 200 and answer.json()["ranker"]["name"] == wanted else 0
        if streak == 0:
            time.sleep(0.5)


class OpenLoop:
    """Constant-rate HTTP/1.1 requests over a pool of keep-alive connections (raw asyncio streams)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.failures: dict[str, int] = {}
        """Requests without an answer (status 0), by the client-side error."""

    async def _one(self, request: bytes, scheduled: float, out: list[tuple[float, int]]) -> None:
        try:
            reused = bool(self.idle)
            reader, writer = self.idle.pop() if reused else await asyncio.open_connection(self.host, self.port)
            writer.write(request)
            status_line = await reader.readline()
            if not status_line and reused:  # the server had closed this idle keep-alive connection: as HTTP
                writer.close()              # clients do, send once more on a new one (the time still counts)
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(request)
                status_line = await reader.readline()
            length, keep = 0, True
            while (line := await reader.readline()) not in (b"\r\n", b""):
                header = line.lower()
                if header.startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                elif header.startswith(b"connection:") and b"close" in header:
                    keep = False  # the server closes it (after some 400s): not reused
            await reader.readexactly(length)
            out.append((time.perf_counter() - scheduled, int(status_line.split()[1])))
            if keep:
                self.idle.append((reader, writer))
            else:
                writer.close()
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError) as exc:
            out.append((time.perf_counter() - scheduled, 0))  # no answer: status 0
            self.failures[type(exc).__name__] = self.failures.get(type(exc).__name__, 0) + 1

    async def run(self, requests: list[bytes], rate: float) -> list[tuple[float, int]]:
        gc.collect()
        gc.disable()  # a collection here would delay sending, and count against the service
        try:
            return await self._run(requests, rate)
        finally:
            gc.enable()

    async def _run(self, requests: list[bytes], rate: float) -> list[tuple[float, int]]:
        out: list[tuple[float, int]] = []
        tasks = []
        start = time.perf_counter() + 0.05
        for i, request in enumerate(requests):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._one(request, scheduled, out)))
        await asyncio.gather(*tasks)
        self.close()  # connections belong to this event loop
        return out

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


def http_post(path: str, body: bytes, key: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{auth}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def percentiles(results: list[tuple[float, int]]) -> dict[str, float]:
    latencies = sorted(r[0] * 1000 for r in results)
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "errors": sum(1 for r in results if r[1] != 200)}


def metric_sums(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    wanted = {}
    for line in text.splitlines():
        for name in ("freshcart_serving_feature_read_seconds", "freshcart_serving_model_seconds"):
            if line.startswith(f"{name}_sum ") or line.startswith(f"{name}_count "):
                wanted[line.split()[0]] = float(line.split()[1])
        for endpoint in ("predict", "recommend"):  # the whole scoring logic of a request, without queueing
            for part in ("sum", "count"):
                if line.startswith(f'freshcart_serving_latency_seconds_{part}{{endpoint="{endpoint}"}} '):
                    wanted[f"{endpoint}_logic_{part}"] = float(line.split()[-1])
    return wanted


def split_ms(before: dict[str, float], after: dict[str, float], name: str) -> float:
    count = after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0)
    return 1000 * (after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)) / count if count else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=["local", "production"], default="local")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each endpoint per rate")
    parser.add_argument("--rates", default="50,100,200,400")
    parser.add_argument("--mixed", type=int, default=10_000, help="requests of the malformed-input run")
    parser.add_argument("--endpoint", choices=["predict", "recommend"], default="predict",
                        help="recommend: /recommend ranked by the propensity model and by a ranker champion")
    args = parser.parse_args()

    from freshcart.serving.catalogue import load_catalogue
    from freshcart.serving.launch import free_port, start_service

    base = load_settings(profile=args.profile)
    settings = load_settings(profile=args.profile, data_dir=base.data_dir / "bench" / "serving",
                             secrets_dir=base.secrets_path, training_threads=1,
                             xgb_max_rounds=80)
    started = time.perf_counter()
    build_shop(settings)
    print(f"shop ready in {time.perf_counter() - started:.0f} s ({settings.data_dir}, {args.profile} profile)")
    catalogue = load_catalogue(settings)
    user = max(catalogue.purchases, key=lambda u: len(catalogue.purchases[u]))
    products = sorted(catalogue.category)[:100]
    recommend_body = {"user_id": user, "k": 10}
    if args.endpoint == "recommend":
        print(f"ranker champion: freshcart-ranker v{register_bench_ranker(settings)}")
    port = free_port()
    service = start_service(settings, port, settings.logs_dir / "bench-serving.log")
    try:
        loop = OpenLoop("127.0.0.1", port)
        predict = http_post("/predict", json.dumps({"user_id": user, "product_ids": products}).encode())
        ping = http_post("/ping", b"{}")
        recommend = http_post("/recommend", json.dumps(recommend_body).encode())
        variants = [("ping", ping, None), ("predict", predict, None)] if args.endpoint == "predict" else \
            [("ping", ping, None), ("rec", recommend, "propensity"), ("rec+rank", recommend, "ranker")]
        asyncio.run(loop.run([predict if args.endpoint == "predict" else recommend] * 200 + [ping] * 200, 100))
        rows = []
        for rate in [float(r) for r in args.rates.split(",")]:
            n = int(rate * args.seconds)
            runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
            spent: dict[str, dict[str, float]] = {name: {} for name, _, _ in variants}
            for _ in range(args.rounds):
                for name, request, ranker in variants:
                    if ranker is not None:
                        use_ranker(settings, service.url, recommend_body, ranker)
                    before = metric_sums(service.url)
                    results = asyncio.run(loop.run([request] * n, rate))
                    after = metric_sums(service.url)
                    runs[name].append(percentiles(results))
                    for key in after:
                        spent[name][key] = spent[name].get(key, 0.0) + after[key] - before.get(key, 0.0)
            for name, _, _ in variants:
                med = {k: statistics.median(r[k] for r in runs[name]) for k in ("p50", "p95", "p99")}
                scored = name != "ping"
                rows.append((rate, name, med, sum(r["errors"] for r in runs[name]), [r["p99"] for r in runs[name]],
                             split_ms({}, spent[name], "freshcart_serving_feature_read_seconds") if scored else None,
                             split_ms({}, spent[name], "freshcart_serving_model_seconds") if scored else None,
                             split_ms({}, spent[name], f"{args.endpoint}_logic") if scored else None))
        print(f"\nopen-loop load, {args.profile} profile, {settings.serving_workers} worker(s), {args.rounds} x "
              f"{args.seconds:.0f} s runs per endpoint and rate, alternating; medians over the runs (ms)")
        print(f"{'rate/s':>7} {'endpoint':>8} {'p50':>7} {'p95':>7} {'p99':>7} {'errors':>6}  {'features':>8} "
              f"{'model':>6} {'logic':>6}  p99 of each run")
        for rate, name, med, errors, p99s, feat, model, logic in rows:
            extra = f"{feat:8.2f} {model:6.2f} {logic:6.2f}" if feat is not None else f"{'':8} {'':6} {'':6}"
            print(f"{rate:7.0f} {name:>8} {med['p50']:7.2f} {med['p95']:7.2f} {med['p99']:7.2f} {errors:6d}  {extra}  "
                  + ", ".join(f"{p:.1f}" for p in p99s))
        floors = {r[0]: r[2]["p99"] for r in rows if r[1] == "ping"}
        for name in [v[0] for v in variants if v[0] != "ping"]:
            for rate, p99 in ((r[0], r[2]["p99"]) for r in rows if r[1] == name):
                print(f"p99 {name} / p99 /ping at {rate:.0f}/s: {p99 / floors[rate]:.2f}")
        if args.endpoint == "recommend":
            use_ranker(settings, service.url, recommend_body, "propensity")  # as the shop was before the run
            print("(logic includes the ranker's input and scoring; model is the propensity model alone)")

        rng = random.Random(7)
        bad = [b'{"user_id": -1, "product_ids": [1]}', b"{not json", b'{"user_id": 1, "product_ids": []}',
               b'{"user_id": "x"}', b'[1, 2]', b'{"user_id": 1, "product_ids": [1], "extra": true}', b"\xff\xfe"]
        mixed = [http_post("/predict", rng.choice(bad)) if rng.random() < 0.05 else predict for _ in range(args.mixed)]
        loop.failures.clear()
        results = asyncio.run(loop.run(mixed, 200))
        codes: dict[int, int] = {}
        for _, code in results:
            codes[code] = codes.get(code, 0) + 1
        print(f"\n{args.mixed:,} mixed requests at 200/s, 5% malformed: answers by status {dict(sorted(codes.items()))}; "
              f"5xx: {sum(v for k, v in codes.items() if k >= 500)}"
              + (f"; no answer (status 0) by client error: {loop.failures}" if loop.failures else ""))
    finally:
        service.stop()
    print(f"service log: {service.log_path}; run id {uuid.uuid4().hex[:6]}")


if __name__ == "__main__":
    main()
