"""Serving speed: the decision service against a no-op BentoML endpoint, side by side.

    python -m bench.serving [--home PATH] [--seconds 8] [--workers 1] [--only events]

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

With events (``--only events`` runs just this part; ``--label`` names its section):

* **mixed run**: decisions (``/recommend`` 3 : 1 ``/choose``) sent open-loop at a fixed
  rate (``--mixed-rate``, default 50 decisions/s, on ``--workers``) with 20 % of all
  requests ``POST /events`` (1–5 events each, ``bench.load_generator``'s realistic events
  for known customers), beside the same timetable with the events left out — the same
  decisions at the same instants. Latency counts from each request's due time
  (queueing included); decision p50 / p99 of each run and their ratio;
* **durable /events throughput**: 8 concurrent clients, each posting batches of 1,
  10 and 100 fresh events back to back, on ``--workers`` and on a worker per core —
  events acknowledged (written with fsync) per second.

Targets: decision p99 with events ≤ 2× without; durable /events ≥ 2,000 events/s
on 2 cores. BentoML's access log stays on, as ``tailor serve`` runs the service;
server logs are kept in a temporary folder printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np

from bench.load_generator import (
    HEADERS,
    KEYS,
    Audience,
    Bodies,
    Outcome,
    Planned,
    open_loop,
    session_for,
    timetable,
)
from bench.results import record, table
from bench.server import TAILOR, Server, build_home, hold_home
from features.snapshot import latest_snapshot, load_snapshot

EVENT_BATCHES = (1, 10, 100)
EVENT_CLIENTS = 8


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


def _percentiles(outcomes: list[Outcome]) -> tuple[float | None, float | None]:
    # Failed requests count too, at the time they failed (a timeout is 30 s): an
    # overloaded run must not look fast because its slowest answers never came.
    ms = np.asarray([o.latency for o in outcomes]) * 1000
    if not len(ms):
        return None, None
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def settle(url: str, audience: Audience, *, quick: float = 0.5, limit: float = 300.0) -> float:
    """Wait until a lone /recommend answers within ``quick`` seconds: requests a
    client gave up on are still worked through by the server, and a measurement
    started on that backlog would time it, not itself. Returns the seconds waited."""
    began = time.monotonic()
    body = {"customer_id": audience.customers[0], "n": 10}
    with httpx.Client(base_url=url, headers=HEADERS, timeout=limit) as client:
        while time.monotonic() - began < limit:
            asked = time.monotonic()
            client.post("/recommend", json=body)
            if time.monotonic() - asked < quick:
                break
    waited = time.monotonic() - began
    if waited > 1.0:
        print(f"waited {waited:.0f} s for the server's backlog to drain", flush=True)
    return waited


def mixed_runs(url: str, audience: Audience, rate: float, seconds: float) -> dict[str, Any]:
    """Decisions at ``rate``/s open-loop, once alone and once with 20 % of all
    requests ``/events``; the decision timetable is the same in both."""
    plan = timetable(rate / 0.8, seconds, {"recommend": 0.6, "choose": 0.2, "events": 0.2})
    alone = [p for p in plan if p.family != "events"]
    bodies = Bodies(audience, run_id=f"mixed-{uuid.uuid4().hex[:8]}")

    async def run(entries: list[Planned]) -> tuple[list[Outcome], float]:
        async with session_for(256) as session:
            begun = time.monotonic()
            outcomes = await open_loop(session, url, entries, bodies, start=begun + 0.2)
            return outcomes, time.monotonic() - begun

    asyncio.run(run([p for p in alone if p.at < 2.0]))  # warm up: 2 s of decisions
    out: dict[str, Any] = {}
    # Decisions alone first: events posted by the other run change later decisions
    # (a customer with new events is re-ranked on the spot).
    for name, entries in (("decisions only", alone), ("decisions + 20 % /events", plan)):
        settle(url, audience)
        outcomes, elapsed = asyncio.run(run(entries))
        decisions = [o for o in outcomes if o.family != "events"]
        events = [o for o in outcomes if o.family == "events"]
        p50, p99 = _percentiles(decisions)
        e50, e99 = _percentiles(events)
        out[name] = {
            "requests": len(outcomes),
            "decisions": len(decisions),
            "decision_failures": sum(not o.ok for o in decisions),
            "p50": p50,
            "p99": p99,
            "events_calls": len(events),
            "events_failures": sum(not o.ok for o in events),
            "events_acked": sum(len(o.acked_ids) for o in events),
            "events_p50": e50,
            "events_p99": e99,
            "lag_p99": float(np.percentile([o.lag for o in outcomes], 99)) * 1000,
            "elapsed": elapsed,
        }
        print(name, out[name], flush=True)
    return out


def events_throughput(
    url: str, audience: Audience, size: int, clients: int, seconds: float
) -> dict[str, float]:
    """``clients`` clients posting ``size`` fresh events per call back to back for
    ``seconds``: events acknowledged per second and call latency."""
    bodies = Bodies(audience, run_id=f"burst-{size}-{uuid.uuid4().hex[:8]}")
    calls = itertools.count()
    latencies: list[float] = []
    acked = 0
    errors = 0

    async def go() -> float:
        nonlocal acked, errors
        async with session_for(clients) as session:
            stop = time.monotonic() + seconds

            async def client() -> None:
                nonlocal acked, errors
                while time.monotonic() < stop:
                    body = json.dumps({"events": bodies.events(next(calls), size)})
                    started = time.monotonic()
                    try:
                        async with session.post(url + "/events", data=body) as response:
                            payload = await response.read()
                            status = response.status
                    except (aiohttp.ClientError, TimeoutError):
                        errors += 1
                        continue
                    latencies.append(time.monotonic() - started)
                    if status != 200:
                        errors += 1
                        continue
                    answer = json.loads(payload)
                    acked += int(answer["accepted"]) + int(answer["duplicates"])

            begun = time.monotonic()
            await asyncio.gather(*(client() for _ in range(clients)))
            return time.monotonic() - begun

    elapsed = asyncio.run(go())
    ms = np.asarray(latencies) * 1000
    return {
        "calls": float(len(latencies)),
        "acked": float(acked),
        "events_per_s": acked / elapsed,
        "p50": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p99": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
        "errors": float(errors),
    }


def events_part(home: Path, args: argparse.Namespace, logs: Path) -> str:
    """The mixed run and durable /events throughput: the "Serving with events" section."""
    audience = Audience.of_home(home)
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    throughput: dict[tuple[int, int], dict[str, float]] = {}
    with serve(TAILOR, home, args.workers, logs, "tailor-events") as service:
        mixed = mixed_runs(service.url, audience, args.mixed_rate, args.mixed_seconds)
        for size in EVENT_BATCHES:
            settle(service.url, audience)
            throughput[(args.workers, size)] = events_throughput(
                service.url, audience, size, EVENT_CLIENTS, args.seconds
            )
            print(args.workers, "workers", size, throughput[(args.workers, size)], flush=True)
    mixed_rss = service.peak_rss
    if cores != args.workers:
        with serve(TAILOR, home, cores, logs, f"tailor-events-{cores}-workers") as spread:
            for size in EVENT_BATCHES:
                settle(spread.url, audience)
                throughput[(cores, size)] = events_throughput(
                    spread.url, audience, size, EVENT_CLIENTS, args.seconds
                )
                print(cores, "workers", size, throughput[(cores, size)], flush=True)

    def cell(value: float | None) -> object:
        return "" if value is None else round(value, 2)

    mixed_table = table(
        [
            "run",
            "requests",
            "decisions",
            "failed decisions",
            "decision p50 ms",
            "decision p99 ms",
            "/events calls",
            "failed /events",
            "events acknowledged",
            "/events p50 ms",
            "/events p99 ms",
            "generator lag p99 ms",
        ],
        [
            [
                name,
                r["requests"],
                r["decisions"],
                r["decision_failures"],
                cell(r["p50"]),
                cell(r["p99"]),
                r["events_calls"],
                r["events_failures"],
                r["events_acked"],
                cell(r["events_p50"]),
                cell(r["events_p99"]),
                round(r["lag_p99"], 2),
            ]
            for name, r in mixed.items()
        ],
    )
    burst_table = table(
        [
            "workers",
            "events per call",
            "clients",
            "calls",
            "events acknowledged",
            "events/s",
            "call p50 ms",
            "call p99 ms",
            "errors",
        ],
        [
            [
                workers,
                size,
                EVENT_CLIENTS,
                int(r["calls"]),
                int(r["acked"]),
                round(r["events_per_s"]),
                round(r["p50"], 2),
                round(r["p99"], 2),
                int(r["errors"]),
            ]
            for (workers, size), r in throughput.items()
        ],
    )
    alone, loaded = mixed["decisions only"], mixed["decisions + 20 % /events"]
    ratio = (loaded["p99"] or 0.0) / alone["p99"] if alone["p99"] else float("nan")
    best_key = max(throughput, key=lambda k: throughput[k]["events_per_s"])
    best = throughput[best_key]["events_per_s"]
    summary = table(
        ["target", "measured", "met"],
        [
            [
                "decision p99 with 20 % /events ≤ 2× without",
                f"{ratio:.1f}× ({cell(loaded['p99'])} ms against {cell(alone['p99'])} ms)",
                "yes" if ratio <= 2 else "no",
            ],
            [
                f"durable /events ≥ 2,000 events/s on {cores} cores",
                f"{best:,.0f} events/s ({best_key[1]} per call, {best_key[0]} worker(s))",
                "yes" if best >= 2000 else "no",
            ],
            ["server peak RSS (all processes), mixed run", f"{mixed_rss / 2**20:,.0f} MiB", ""],
        ],
    )
    return (
        f"{len(audience.customers):,} customers with personalisation consent; mixed run: "
        f"{args.mixed_rate:g} decisions/s (/recommend 3 : 1 /choose) for "
        f"{args.mixed_seconds:g} s open-loop on {args.workers} worker(s), latency from each "
        "request's due time, failed requests counted at the time they failed; /events "
        f"carry 1–5 events each. Throughput: {EVENT_CLIENTS} clients back to back, "
        f"{args.seconds:g} s per row. Load generator on the same machine; its 1-minute "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
        f"(other work included).\n\n"
        f"{mixed_table}\n\n{burst_table}\n\n{summary}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="a trained home (kept)")
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--only", choices=("latency", "events"), default=None, help="run one part only"
    )
    parser.add_argument(
        "--mixed-rate", type=float, default=50.0, help="decisions/s of the mixed run"
    )
    parser.add_argument(
        "--mixed-seconds", type=float, default=20.0, help="length of each mixed run"
    )
    parser.add_argument(
        "--label", default=None, help="added to the events section's title, e.g. 'before'"
    )
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    scratch = None
    home = args.home
    if home is None:
        scratch = Path(tempfile.mkdtemp(prefix="tailor-bench-serving-"))
        home = scratch / "home"
    held = hold_home(home)  # noqa: F841 (the lock lasts as long as this run)
    if not (home / "features").exists():
        build_home(home, args.customers)
    logs = Path(tempfile.mkdtemp(prefix="tailor-bench-serving-logs-"))
    if args.only in (None, "latency"):
        shutil.rmtree(home / "online", ignore_errors=True)
        text = latency_part(home, args, logs)
        print(text)
        if not args.no_record:
            record("Serving", text)
    if args.only in (None, "events"):
        shutil.rmtree(home / "online", ignore_errors=True)
        text = events_part(home, args, logs)
        print(text)
        if not args.no_record:
            title = "Serving with events" + (f" ({args.label})" if args.label else "")
            record(title, text)
    print(f"server logs: {logs}")
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
