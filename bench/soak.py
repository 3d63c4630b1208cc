"""Soak: the real service under a fixed request rate for minutes, a champion reload halfway.

    python -m bench.soak [--home PATH] [--rate 200] [--minutes 10] [--workers N] [--json]
                         [--no-record] [--label TEXT]

Builds (or reuses, with ``--home``) a trained home like ``bench.serving``, starts the
real service on 127.0.0.1 (``bentoml serve serving.service:Tailor``, the online
stores emptied first) and drives it **open-loop**: request *i* is due at ``i / rate``
seconds whether or not earlier ones have answered, and its latency is measured from
that due time, so time spent queueing (in the client's connection pool, the socket
or the server) counts — no coordinated omission. The mix, drawn with a fixed seed:

* ``/recommend`` (70 %): one known customer, 10 items;
* ``/choose`` (15 %): subject and offer slots in turn;
* ``/events`` (10 %): 1–5 events per call for known customers — product views, an
  ``add_to_cart`` now and then, and ``email_open`` / ``email_click`` answering an
  earlier ``/choose`` decision (its decision id, content and propensity) — each
  with a unique event id;
* ``/recommend_batch`` (5 %): 50 recipients, in stock and not yet purchased.

Halfway, every registered champion is registered again as a new version and the
``champion`` alias moved to it (``--reload promote``, the default), then
``POST /admin/reload`` is called; so the reload loads new models, as a promotion
would (``--reload call`` only calls the endpoint; ``--reload none`` skips it).

Per minute: requests, failures (any non-2xx answer, connection error or timeout),
p50 / p99 latency of each endpoint family, the server's RSS (all its processes) and
CPU, and the recommender versions that answered. At the end: a least-squares RSS
trend in MiB per minute (over the whole run and over the minutes after the reload;
the verdict judges the latter, when there are at least three), whether every
acknowledged event is in the online event log, the errors in the server's log, and
one verdict line. The run is bounded: ``rate × minutes`` requests
are scheduled, each with a timeout, and it stops by itself.

The load generator shares the machine with the server; ``lag`` (how late requests
were sent against their timetable) shows when the generator itself fell behind.

The requests are drawn and sent by :mod:`bench.load_generator`; the figures, the
verdict and the report are :mod:`bench.soak_report`'s. This module runs the soak: the
server, the reload halfway, what the online event log and the server's log hold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.load_generator import (
    KEYS,
    MIX,
    Audience,
    Bodies,
    Outcome,
    open_loop,
    session_for,
    timetable,
)
from bench.results import record
from bench.server import Server, build_home, hold_home
from bench.soak_report import report, summarise


# ====================================================================== reload
def promote_again(client: Any) -> dict[str, str]:
    """Register every champion's artifacts again as a new version and move the
    ``champion`` alias to it, as a promotion would; returns ``{name: new version}``."""
    from models.registry import CHAMPION, champion_version

    promoted: dict[str, str] = {}
    for model in client.search_registered_models():
        current = champion_version(client, model.name)
        if current is None:
            continue
        new = client.create_model_version(model.name, current.source, run_id=current.run_id)
        client.set_registered_model_alias(model.name, CHAMPION, new.version)
        promoted[model.name] = str(new.version)
    return promoted


async def _reload_at(
    session: aiohttp.ClientSession,
    url: str,
    at: float,
    start: float,
    promote: Callable[[], dict[str, str]] | None,
) -> dict[str, Any]:
    await asyncio.sleep(max(0.0, start + at - time.monotonic()))
    began = time.monotonic()
    report: dict[str, Any] = {"at": began - start, "promoted": {}}
    try:
        report["promoted"] = await asyncio.to_thread(promote) if promote is not None else {}
    except Exception as error:  # reported as the soak's failure, the load goes on
        report |= {"status": 0, "error": f"promotion failed: {type(error).__name__}: {error}"}
        return report
    called = time.monotonic()
    try:
        async with session.post(
            url + "/admin/reload", data="{}", timeout=aiohttp.ClientTimeout(total=120)
        ) as response:
            text = await response.text()
            report["status"] = response.status
    except (aiohttp.ClientError, TimeoutError) as error:
        report |= {"status": 0, "error": f"{type(error).__name__}: {error}"}
        text = ""
    report["seconds"] = time.monotonic() - called
    if report["status"] == 200:
        answer = json.loads(text)
        report |= {k: answer.get(k) for k in ("state", "models", "reasons")}
    elif report["status"]:
        report["error"] = f"{report['status']} {text[:300]}"
    return report


# ====================================================================== the soak
def run_soak(
    server: Server,
    audience: Audience,
    *,
    rate: float,
    seconds: float,
    mix: Mapping[str, float] = MIX,
    reload: str = "promote",
    reload_at: float | None = None,
    bucket_seconds: float = 60.0,
    connections: int = 256,
    timeout: float = 30.0,
    max_rss_slope_mib: float = 2.0,
    max_p99_ms: float = 1000.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Drive ``server`` open-loop at ``rate`` requests/s for ``seconds``, reloading at
    ``reload_at`` (default halfway); returns the result (see :func:`summarise`).

    ``reload`` is ``promote`` (re-register the champions, then call
    ``/admin/reload``), ``call`` (only the call) or ``none``. ``server`` should
    sample RSS (``rss_interval``); the online event log is read from its home.
    """
    if reload not in ("promote", "call", "none"):
        raise ValueError(f"reload {reload!r}: expected promote, call or none")
    plan = timetable(rate, seconds, mix, seed=seed)
    run_id = f"soak-{uuid.uuid4().hex[:8]}"
    bodies = Bodies(audience, run_id=run_id, seed=seed)
    promote: Callable[[], dict[str, str]] | None = None
    if reload == "promote":
        from training.tracking import configure

        # MLflow is imported before the run starts; the fluent tracking URI is set
        # too, because a version's ``models:/m-…`` source is resolved through it.
        client = configure(server.home)
        client.search_registered_models()

        def promote() -> dict[str, str]:
            return promote_again(client)

    at = seconds / 2 if reload_at is None else reload_at
    me = psutil.Process()
    cpu_before = sum(me.cpu_times()[:2])

    async def soak() -> tuple[list[Outcome], dict[str, Any] | None, float]:
        async with session_for(connections) as session:
            start = time.monotonic() + 0.5
            loop = open_loop(session, server.url, plan, bodies, start=start, timeout=timeout)
            if reload == "none":
                return await loop, None, start
            outcomes, reloaded = await asyncio.gather(
                loop, _reload_at(session, server.url, at, start, promote)
            )
            return outcomes, reloaded, start

    began = time.monotonic()
    outcomes, reloaded, start = asyncio.run(soak())
    elapsed = time.monotonic() - began
    client_cpu = (sum(me.cpu_times()[:2]) - cpu_before) / elapsed
    logged = logged_event_ids(server.home)
    result = summarise(
        outcomes,
        reloaded,
        samples=[(t - start, rss, cpu) for t, rss, cpu in server.samples],
        logged=logged,
        server_log=log_errors(server.log_path),
        rate=rate,
        seconds=seconds,
        bucket_seconds=bucket_seconds,
        client_cpu=client_cpu,
        max_rss_slope_mib=max_rss_slope_mib,
        max_p99_ms=max_p99_ms,
    )
    return {"run_id": run_id, **result}


def logged_event_ids(home: Path) -> set[str]:
    """Every event id in the home's online event log (``online/events.db``)."""
    path = home / "online" / "events.db"
    if not path.exists():
        return set()
    con = sqlite3.connect(path, timeout=30.0)
    try:
        return {str(row[0]) for row in con.execute("SELECT event_id FROM events")}
    finally:
        con.close()


def log_errors(path: Path, *, keep: int = 8) -> dict[str, Any]:
    """How many ERROR and Traceback lines the server's log holds, and the first
    distinct ones (numbers and ids masked so repeats group together)."""
    counts: Counter[str] = Counter()
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        if re.search(r"\bERROR\b|Traceback|\bCRITICAL\b", line):
            total += 1
            masked = re.sub(r"\d+(\.\d+)?", "N", line.strip())[:200]
            counts[masked] += 1
    return {"lines": total, "first": [f"{n}× {text}" for text, n in counts.most_common(keep)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="a trained home (kept)")
    parser.add_argument("--customers", type=int, default=3000, help="of a home built here")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--reload", choices=("promote", "call", "none"), default="promote")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--max-rss-slope", type=float, default=2.0, help="MiB/min for PASS")
    parser.add_argument(
        "--max-p99-ms", type=float, default=1000.0, help="per bucket and family, for PASS"
    )
    parser.add_argument(
        "--bucket-seconds", type=float, default=60.0, help="rows of the table (a minute)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-record", action="store_true", help="leave bench/RESULTS.md")
    parser.add_argument("--label", default=None, help="added to the section's title")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="tailor-soak-"))
    home = args.home or scratch / "home"
    held = hold_home(home)  # noqa: F841 (the lock lasts as long as this run)
    if not (home / "features").exists():
        build_home(home, args.customers)
    shutil.rmtree(home / "online", ignore_errors=True)
    audience = Audience.of_home(home, seed=args.seed)
    seconds = args.minutes * 60.0
    # Deployed as `tailor serve` runs it: BentoML's access log on (one line a request).
    env = {"TAILOR_SERVING__WORKERS": str(args.workers)}
    log = scratch / "server.log"
    print(
        f"soak: {args.rate:g} req/s for {args.minutes:g} min on {args.workers} worker(s); "
        f"server log {log}",
        file=sys.stderr,
    )
    load_before = os.getloadavg()[0]
    began = time.monotonic()
    with Server(home, keys=KEYS, env=env, log=log, rss_interval=1.0) as server:
        print(f"server ready in {time.monotonic() - began:.0f} s", file=sys.stderr)
        result = run_soak(
            server,
            audience,
            rate=args.rate,
            seconds=seconds,
            reload=args.reload,
            timeout=args.timeout,
            max_rss_slope_mib=args.max_rss_slope,
            max_p99_ms=args.max_p99_ms,
            bucket_seconds=args.bucket_seconds,
            seed=args.seed,
        )
    # What the server logged while it stopped (queued requests it still worked through).
    result["server_log_at_stop"] = log_errors(log)
    result["workers"] = args.workers
    result["customers"] = len(audience.customers)
    text = (
        f"{result['customers']:,} customers with personalisation consent; {args.workers} "
        f"worker(s); {args.rate:g} requests/s open-loop for {args.minutes:g} min, reload "
        f"({args.reload}) halfway; load generator on the same machine, its 1-minute load "
        f"average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other work "
        f"included).\n\n{report(result)}\n"
    )
    late = result["server_log_at_stop"]["lines"] - result["server_log"]["lines"]
    if late:
        text += f"\nserver log: {late:,} more ERROR/Traceback lines while it stopped\n"
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text)
    if not args.no_record:
        record("Soak" + (f" ({args.label})" if args.label else ""), text)
    if args.home is None:
        shutil.rmtree(home, ignore_errors=True)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
