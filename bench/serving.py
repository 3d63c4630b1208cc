"""Serving speed: the decision service against a no-op BentoML endpoint, side by side.

    python -m bench.serving [--home PATH] [--seconds 8] [--workers 1]

Builds (or reuses, with ``--home``) a trained home with ``tailor demo --no-serve``,
starts the real service (``bentoml serve serving.service:Tailor``) and a no-op
BentoML service with the same workers and auth middleware (``bench.noop_service``),
one after the other on loopback, and drives each with an asyncio load generator
(aiohttp, one connection per concurrent client) at concurrency 1, 16 and 64:

* ``/recommend`` (n=10, default filters) and ``/choose`` (offer slot) on the service,
  ``/recommend`` on the no-op — latency percentiles and requests per second;
* ``/recommend_batch`` with 1,000 recipients per call and filters (in stock, exclude
  purchased, a category allow-list of half the categories) — recipients per second,
  on one worker one call at a time, and on the deployed shape: a worker per core with
  two calls per worker in flight, each on a fresh connection (the kernel spreads new
  connections over the workers; a kept-alive one stays with the worker that took it).

The load generator runs on the same machine as the server, so absolute numbers
are those of a shared machine; the ratios to the no-op are the comparable part.
Targets: /recommend p50 overhead over the no-op at concurrency 1 ≤ 3 ms;
throughput at concurrency 16 ≥ 70 % of the no-op's; /recommend_batch ≥ 20,000
recipients/s with filters. The server's peak RSS (all its processes) is sampled
every 100 ms.

BentoML's access log stays on, as ``tailor serve`` runs the service; server logs are
kept in a temporary folder printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.results import record, table
from bench.server import TAILOR, Server, build_home
from features.snapshot import latest_snapshot, load_snapshot

KEY = "bench-serving-key"
KEYS = {KEY: ["decide", "ingest", "admin"]}
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def serve(target: str, home: Path, workers: int, logs: Path, name: str) -> Server:
    """``target`` on ``home`` with ``workers`` processes, RSS sampled every 100 ms."""
    env = {"TAILOR_SERVING__WORKERS": str(workers), "TAILOR_SERVING__BATCH_LIMIT": "10000"}
    return Server(
        home, keys=KEYS, target=target, env=env, log=logs / f"{name}.log", rss_interval=0.1
    )


async def _drive(
    url: str,
    path: str,
    body: Callable[[int], dict[str, Any]],
    concurrency: int,
    seconds: float,
    fresh: bool = False,
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    # ``fresh``: a connection per request, so the kernel spreads them over the
    # workers (kept-alive connections stay with the worker that accepted them).
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=fresh)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:
        # Warm up: every connection once.
        await asyncio.gather(
            *(session.post(url + path, data=json.dumps(body(i))) for i in range(concurrency))
        )
        stop = time.perf_counter() + seconds

        async def client(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < stop:
                started = time.perf_counter()
                async with session.post(url + path, data=json.dumps(body(i))) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)
                i += concurrency

        begun = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - begun
    ms = np.asarray(latencies) * 1000
    return {
        "requests": float(len(ms)),
        "rps": len(ms) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "errors": float(errors),
    }


def drive(
    url: str,
    path: str,
    body: Callable[[int], dict[str, Any]],
    c: int,
    s: float,
    fresh: bool = False,
) -> dict:
    return asyncio.run(_drive(url, path, body, c, s, fresh))


def latency_part(home: Path, args: argparse.Namespace, logs: Path) -> str:
    """The no-op comparison and /recommend_batch: the "Serving" section."""
    snapshot = load_snapshot(latest_snapshot(home / "features"))
    people = [str(c) for c in snapshot.customers["customer_id"]]
    categories = sorted(snapshot.items["category"].dropna().astype(str).unique())
    allowed = categories[: max(1, len(categories) // 2)]
    rng = random.Random(0)
    rng.shuffle(people)

    def recommend(i: int) -> dict[str, Any]:
        return {"customer_id": people[i % len(people)], "n": 10}

    def choose(i: int) -> dict[str, Any]:
        return {"customer_id": people[i % len(people)], "slot": "offer"}

    rows: list[list[object]] = []
    results: dict[tuple[str, int], dict[str, float]] = {}
    levels = (1, 16, 64)

    noop = serve("bench.noop_service:Noop", home, args.workers, logs, "noop")
    try:
        for c in levels:
            results[("noop /recommend", c)] = drive(
                noop.url, "/recommend", recommend, c, args.seconds
            )
            print("noop", c, results[("noop /recommend", c)], flush=True)
    finally:
        noop.stop()
    noop_rss = noop.peak_rss

    service = serve(TAILOR, home, args.workers, logs, "tailor")
    try:
        for c in levels:
            for name, path, body in (
                ("Tailor /recommend", "/recommend", recommend),
                ("Tailor /choose", "/choose", choose),
            ):
                results[(name, c)] = drive(service.url, path, body, c, args.seconds)
                print(name, c, results[(name, c)], flush=True)
        size = 1000
        filters = {"in_stock_only": True, "exclude_purchased": True, "categories": allowed}

        def batch(i: int) -> dict[str, Any]:
            start = (i * size) % len(people)
            cycle = people * (size // len(people) + 2)
            ids = cycle[start : start + size]
            return {"customer_ids": ids, "n": 10, "filters": filters}

        # One worker, one batch at a time: what a single core does.
        single = drive(service.url, "/recommend_batch", batch, 1, args.seconds)
        print("batch, 1 worker", single, flush=True)
    finally:
        service.stop()
    # Deployed shape: a worker per core, batches in flight on fresh connections (the
    # kernel spreads new connections; kept-alive ones stay with one worker).
    cores = os.cpu_count() or 1
    spread = serve(TAILOR, home, cores, logs, f"tailor-{cores}-workers")
    try:
        parallel = drive(spread.url, "/recommend_batch", batch, 2 * cores, args.seconds, True)
        print(f"batch, {cores} workers", parallel, flush=True)
    finally:
        spread.stop()
    assert single["errors"] == parallel["errors"] == 0, "/recommend_batch calls failed"
    batch_rate = parallel["rps"] * size

    for (name, c), r in results.items():
        base = results[("noop /recommend", c)]
        rows.append(
            [
                name,
                c,
                int(r["requests"]),
                round(r["rps"]),
                round(r["p50"], 2),
                round(r["p95"], 2),
                round(r["p99"], 2),
                round(r["p50"] - base["p50"], 2),
                round(r["rps"] / base["rps"], 2),
                int(r["errors"]),
            ]
        )
    rows.sort(key=lambda row: (row[0] != "noop /recommend", str(row[0]), int(row[1])))  # type: ignore[call-overload]
    report = table(
        [
            "endpoint",
            "concurrency",
            "requests",
            "req/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "p50 − no-op ms",
            "× no-op req/s",
            "errors",
        ],
        rows,
    )
    overhead = results[("Tailor /recommend", 1)]["p50"] - results[("noop /recommend", 1)]["p50"]
    share = results[("Tailor /recommend", 16)]["rps"] / results[("noop /recommend", 16)]["rps"]
    summary = table(
        ["target", "measured", "met"],
        [
            [
                "/recommend p50 overhead at concurrency 1 ≤ 3 ms",
                f"{overhead:.2f} ms",
                "yes" if overhead <= 3 else "no",
            ],
            [
                "/recommend req/s at concurrency 16 ≥ 70 % of the no-op's",
                f"{share:.0%}",
                "yes" if share >= 0.7 else "no",
            ],
            [
                f"/recommend_batch ≥ 20,000 recipients/s with filters ({cores} workers, "
                f"one per core; {2 * cores} calls in flight)",
                f"{batch_rate:,.0f} recipients/s ({size:,} per call, p50 {parallel['p50']:.0f} ms)",
                "yes" if batch_rate >= 20_000 else "no",
            ],
            [
                "/recommend_batch, 1 worker, one call at a time",
                f"{single['rps'] * size:,.0f} recipients/s (p50 {single['p50']:.0f} ms)",
                "",
            ],
            ["server peak RSS (all processes), Tailor", f"{service.peak_rss / 2**20:,.0f} MiB", ""],
            ["server peak RSS (all processes), no-op", f"{noop_rss / 2**20:,.0f} MiB", ""],
        ],
    )
    text = (
        f"{len(snapshot.customers):,} customers, {len(snapshot.items):,} items; "
        f"{args.workers} worker(s); load generator on the same machine "
        f"(asyncio + aiohttp), {args.seconds:.0f} s per row.\n\n{report}\n\n{summary}\n"
    )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="a trained home (kept)")
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    scratch = None
    home = args.home
    if home is None:
        scratch = Path(tempfile.mkdtemp(prefix="tailor-bench-serving-"))
        home = scratch / "home"
    if not (home / "features").exists():
        build_home(home, args.customers)
    logs = Path(tempfile.mkdtemp(prefix="tailor-bench-serving-logs-"))
    shutil.rmtree(home / "online", ignore_errors=True)
    text = latency_part(home, args, logs)
    print(text)
    if not args.no_record:
        record("Serving", text)
    print(f"server logs: {logs}")
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
