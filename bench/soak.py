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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil

from bench.results import record, table
from bench.server import Server, build_home, hold_home
from features.snapshot import latest_snapshot, load_snapshot

KEY = "bench-serving-key"  # one key for the benchmarks, every scope
KEYS = {KEY: ["decide", "ingest", "admin"]}
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
FAMILIES = ("recommend", "recommend_batch", "choose", "events")
PATHS = {family: f"/{family}" for family in FAMILIES}
MIX: dict[str, float] = {"recommend": 0.70, "choose": 0.15, "events": 0.10, "recommend_batch": 0.05}
# Kinds of event in an /events call, and how often each is drawn.
EVENT_MIX: dict[str, float] = {
    "product_view": 0.6,
    "add_to_cart": 0.15,
    "email_open": 0.15,
    "email_click": 0.10,
}


# ====================================================================== what is asked
@dataclass(frozen=True)
class Audience:
    """Who and what the requests name: known, personalised customers and the items.

    Attributes
    ----------
    customers : tuple of str
        Customer ids of the snapshot with personalisation consent, shuffled.
    items : tuple of str
        Item ids of the snapshot.
    prices : tuple of float
        Each item's price (0 where the snapshot has none).
    """

    customers: tuple[str, ...]
    items: tuple[str, ...]
    prices: tuple[float, ...]

    @classmethod
    def of_home(cls, home: Path, *, seed: int = 0) -> Audience:
        snapshot = load_snapshot(latest_snapshot(home / "features"))
        customers = snapshot.customers
        people = [
            str(c) for c in customers.loc[customers["personalised"].astype(bool), "customer_id"]
        ]
        random.Random(seed).shuffle(people)
        items = snapshot.items
        prices = items["price"].fillna(0.0).astype(float) if "price" in items else None
        return cls(
            customers=tuple(people),
            items=tuple(str(i) for i in items["item_id"]),
            prices=tuple(prices) if prices is not None else (0.0,) * len(items),
        )


@dataclass(frozen=True)
class Planned:
    """One request of a timetable: due ``at`` seconds after the start."""

    index: int
    at: float
    family: str


def timetable(
    rate: float, seconds: float, mix: Mapping[str, float], *, seed: int = 0
) -> list[Planned]:
    """``round(rate × seconds)`` requests, one every ``1 / rate`` seconds, each of a
    family drawn from ``mix`` (weights) with a fixed seed."""
    count = int(round(rate * seconds))
    families = list(mix)
    drawn = random.Random(seed).choices(families, weights=[mix[f] for f in families], k=count)
    return [Planned(index=i, at=i / rate, family=f) for i, f in enumerate(drawn)]


class Bodies:
    """Request bodies for timetable entries; the same entry always asks the same
    decision, so two runs of one timetable are comparable.

    Events get unique ids (``<run id>-<index>-<k>``) and the current time; e-mail
    opens and clicks answer a recent ``/choose`` decision seen through
    :meth:`observe` (its customer, slot, content, decision id and propensity).
    """

    def __init__(
        self,
        audience: Audience,
        *,
        run_id: str,
        batch_size: int = 50,
        events_per_call: tuple[int, int] = (1, 5),
        seed: int = 0,
    ) -> None:
        self.audience = audience
        self.run_id = run_id
        self.batch_size = batch_size
        self.events_per_call = events_per_call
        self.seed = seed
        self._decisions: deque[dict[str, Any]] = deque(maxlen=2000)
        self._kinds = list(EVENT_MIX)
        self._weights = [EVENT_MIX[k] for k in self._kinds]

    def customer(self, index: int) -> str:
        people = self.audience.customers
        return people[(index * 7919) % len(people)]

    def build(self, planned: Planned) -> tuple[str, dict[str, Any], list[str]]:
        """``(path, body, event ids)`` of one entry (event ids only for /events)."""
        i = planned.index
        if planned.family == "recommend":
            return PATHS["recommend"], {"customer_id": self.customer(i), "n": 10}, []
        if planned.family == "choose":
            slot = "subject" if i % 2 == 0 else "offer"
            return PATHS["choose"], {"customer_id": self.customer(i), "slot": slot}, []
        if planned.family == "recommend_batch":
            people = self.audience.customers
            start = (i * self.batch_size) % len(people)
            ids = [people[(start + k) % len(people)] for k in range(self.batch_size)]
            filters = {"in_stock_only": True, "exclude_purchased": True}
            return PATHS["recommend_batch"], {"customer_ids": ids, "n": 10, "filters": filters}, []
        if planned.family == "events":
            low, high = self.events_per_call
            count = random.Random(self.seed * 1_000_003 + i).randint(low, high)
            events = self.events(i, count)
            return PATHS["events"], {"events": events}, [e["event_id"] for e in events]
        raise ValueError(f"family {planned.family!r}: expected one of {FAMILIES}")

    def events(
        self, index: int, count: int, *, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """``count`` events, with unique ids: browsing sessions of known customers
        (a new customer every 5 events, as in a batch from a tracking pipeline) and
        e-mail engagement with recent decisions."""
        rng = random.Random(self.seed * 1_000_003 + index)
        now = now or datetime.now(UTC)
        items, prices = self.audience.items, self.audience.prices
        out: list[dict[str, Any]] = []
        viewed: list[int] = []
        for k in range(count):
            customer = self.customer(index + 1 + k // 5)
            if k % 5 == 0:
                viewed = []
            kind = rng.choices(self._kinds, weights=self._weights)[0]
            event: dict[str, Any] = {
                "event_id": f"{self.run_id}-{index}-{k}",
                "ts": (now - timedelta(seconds=count - k)).isoformat(),
                "event_type": kind,
            }
            if kind in ("email_open", "email_click") and self._decisions:
                decision = self._decisions.popleft() if kind == "email_open" else self._decisions[0]
                event |= {
                    "customer_id": decision["customer_id"],
                    "campaign_id": f"{self.run_id}-campaign",
                    "slot": decision["slot"],
                    "content_id": decision["content_id"],
                    "decision_id": decision["decision_id"],
                    "propensity": decision["propensity"],
                    "channel": "email",
                }
            elif kind in ("email_open", "email_click"):
                event |= {
                    "customer_id": customer,
                    "campaign_id": f"{self.run_id}-campaign",
                    "channel": "email",
                }
            else:
                if kind == "add_to_cart" and viewed:
                    item = viewed[-1]
                else:
                    item = rng.randrange(len(items))
                    viewed.append(item)
                event |= {
                    "customer_id": customer,
                    "item_id": items[item],
                    "channel": "web",
                    "device": rng.choice(("mobile", "desktop")),
                }
                if kind == "add_to_cart":
                    event |= {"quantity": 1, "price": prices[item]}
            out.append(event)
        return out

    def observe(self, planned: Planned, body: dict[str, Any], answer: dict[str, Any]) -> None:
        """Keep a /choose decision for later e-mail events."""
        if planned.family == "choose" and answer.get("decision_id"):
            self._decisions.append(
                {
                    "customer_id": body["customer_id"],
                    "slot": body["slot"],
                    "content_id": answer.get("content_id"),
                    "decision_id": answer["decision_id"],
                    "propensity": answer.get("propensity"),
                }
            )


# ====================================================================== the open loop
@dataclass
class Outcome:
    """What one request did.

    ``at`` is when it was due (seconds after the start); ``lag`` how late the
    generator sent it; ``latency`` seconds from due to the end of the answer;
    ``status`` 0 when no HTTP answer came (connection error, timeout).
    """

    family: str
    at: float
    lag: float
    latency: float
    status: int
    error: str | None = None
    events_sent: int = 0
    acked_ids: list[str] = field(default_factory=list)
    rejected: int = 0
    version: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


async def _call(
    session: aiohttp.ClientSession,
    url: str,
    planned: Planned,
    bodies: Bodies,
    due: float,
    timeout: aiohttp.ClientTimeout,
) -> Outcome:
    lag = time.monotonic() - due
    path, body, ids = bodies.build(planned)
    outcome = Outcome(planned.family, planned.at, lag, 0.0, 0, events_sent=len(ids))
    try:
        async with session.post(url + path, data=json.dumps(body), timeout=timeout) as response:
            payload = await response.read()
            outcome.status = response.status
    except (aiohttp.ClientError, TimeoutError) as error:
        outcome.latency = time.monotonic() - due
        outcome.error = f"{type(error).__name__}: {error}"[:300]
        return outcome
    outcome.latency = time.monotonic() - due
    if not outcome.ok:
        outcome.error = f"{outcome.status} {payload[:300].decode(errors='replace')}"
        return outcome
    if planned.family == "recommend_batch":
        return outcome  # a large answer; its status is what is checked
    answer = json.loads(payload)
    if planned.family == "recommend":
        version = answer.get("model_version")
        outcome.version = None if version is None else str(version)
    elif planned.family == "choose":
        bodies.observe(planned, body, answer)
    elif planned.family == "events":
        bad = {int(r["index"]) for r in answer.get("rejected", [])}
        outcome.rejected = len(bad)
        outcome.acked_ids = [e for k, e in enumerate(ids) if k not in bad]
    return outcome


async def open_loop(
    session: aiohttp.ClientSession,
    url: str,
    plan: Sequence[Planned],
    bodies: Bodies,
    *,
    start: float,
    timeout: float = 30.0,
) -> list[Outcome]:
    """Send each planned request when it is due (``start`` + ``at``, monotonic
    seconds), without waiting for earlier answers; returns every outcome, in plan
    order, once all have answered or timed out."""
    limit = aiohttp.ClientTimeout(total=timeout)
    tasks: list[asyncio.Task[Outcome]] = []
    for planned in plan:
        due = start + planned.at
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_call(session, url, planned, bodies, due, limit)))
    return list(await asyncio.gather(*tasks))


def session_for(connections: int) -> aiohttp.ClientSession:
    """An aiohttp session with the bench key and a pool of ``connections``."""
    connector = aiohttp.TCPConnector(limit=connections)
    return aiohttp.ClientSession(connector=connector, headers=HEADERS)


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


def _ms(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if len(values) else None


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(x, y)`` points, or None with fewer than two."""
    if len(points) < 2:
        return None
    x, y = np.asarray(points, dtype=float).T
    return float(np.polyfit(x, y, 1)[0])


def summarise(
    outcomes: Sequence[Outcome],
    reloaded: dict[str, Any] | None,
    *,
    samples: Sequence[tuple[float, int, float]],
    logged: set[str],
    server_log: dict[str, Any],
    rate: float,
    seconds: float,
    bucket_seconds: float = 60.0,
    client_cpu: float = 0.0,
    max_rss_slope_mib: float = 2.0,
    max_p99_ms: float = 1000.0,
) -> dict[str, Any]:
    """Per-bucket and whole-run figures, the RSS trend and the verdict.

    ``samples`` are ``(seconds after the start, RSS bytes, CPU seconds)``; a bucket
    counts the requests *due* in it. The RSS trend is in MiB per minute.
    """
    buckets = max(1, int(np.ceil(seconds / bucket_seconds)))
    rows: list[dict[str, Any]] = []
    for b in range(buckets):
        lo, hi = b * bucket_seconds, (b + 1) * bucket_seconds
        inside = [o for o in outcomes if lo <= o.at < hi]
        row: dict[str, Any] = {
            "bucket": b,
            "from_s": lo,
            "requests": len(inside),
            "failures": sum(not o.ok for o in inside),
        }
        for family in FAMILIES:
            lat = [o.latency for o in inside if o.family == family and o.ok]
            row[family] = {"n": len(lat), "p50_ms": _ms(lat, 50), "p99_ms": _ms(lat, 99)}
        window = [(rss, cpu) for t, rss, cpu in samples if lo <= t < hi]
        row["rss_mib"] = float(np.mean([r for r, _ in window])) / 2**20 if window else None
        row["rss_end_mib"] = window[-1][0] / 2**20 if window else None
        before = [cpu for t, _, cpu in samples if t < lo]
        if window:
            first = before[-1] if before else window[0][1]
            span = min(hi, seconds) - lo
            row["server_cpu_pct"] = 100.0 * (window[-1][1] - first) / span if span > 0 else None
        else:
            row["server_cpu_pct"] = None
        row["versions"] = dict(Counter(o.version for o in inside if o.version is not None))
        rows.append(row)

    failures = [o for o in outcomes if not o.ok]
    acked = [e for o in outcomes for e in o.acked_ids]
    missing = sorted(set(acked) - logged)
    by_family = {}
    for family in FAMILIES:
        mine = [o for o in outcomes if o.family == family]
        lat = [o.latency for o in mine if o.ok]
        by_family[family] = {
            "requests": len(mine),
            "failures": sum(not o.ok for o in mine),
            "p50_ms": _ms(lat, 50),
            "p99_ms": _ms(lat, 99),
            "max_ms": _ms(lat, 100),
        }

    def trend(of: list[dict[str, Any]]) -> float | None:
        mid = bucket_seconds / 2
        return _slope([((r["from_s"] + mid) / 60.0, r["rss_mib"]) for r in of if r["rss_mib"]])

    trend_all = trend(rows)
    reload_bucket = None if reloaded is None else int(reloaded["at"] // bucket_seconds)
    after = [r for r in rows if reload_bucket is not None and r["bucket"] > reload_bucket]
    trend_after = trend(after)
    # Growth is judged on the steady part: the buckets after the reload (a reload
    # loads new models beside the old for a while), or after the first (warm-up)
    # without one; with fewer than three such buckets the run is too short to judge.
    steady = after if reloaded is not None else rows[1:]
    judged: float | None = trend(steady) if len(steady) >= 3 else None
    judged_on = "after the reload" if reloaded is not None else "after the first bucket"
    errors_by_kind = Counter(
        (o.error or "").split(" ")[0].split(":")[0] or str(o.status) for o in failures
    )

    problems: list[str] = []
    if failures:
        problems.append(f"{len(failures):,} failed requests ({dict(errors_by_kind)})")
    rejected = sum(o.rejected for o in outcomes)
    if rejected:
        problems.append(f"{rejected:,} events rejected")
    if missing:
        problems.append(f"{len(missing):,} acknowledged events missing from the online log")
    if server_log["lines"]:
        problems.append(f"{server_log['lines']:,} ERROR/Traceback lines in the server log")
    if reloaded is not None and reloaded.get("status") != 200:
        problems.append(f"reload failed: {reloaded.get('error')}")
    if reloaded is not None and reloaded.get("promoted"):
        new = reloaded["promoted"].get("tailor-recommender")
        later = [o.version for o in outcomes if o.version is not None and o.at > reloaded["at"]]
        if new is not None and new not in later:
            problems.append(f"recommender version {new} never answered after the reload")
    if judged is not None and judged > max_rss_slope_mib:
        problems.append(
            f"RSS grows {judged:+.1f} MiB/min ({judged_on}; limit {max_rss_slope_mib:.1f})"
        )
    # A service that answers everything but ever later is failing too: each bucket's
    # p99 is held to the limit, but for the reload's own bucket.
    slow = [
        f"{family} {r[family]['p99_ms']:.0f} ms in bucket {r['bucket']}"
        for r in rows
        if r["bucket"] != reload_bucket
        for family in FAMILIES
        if r[family]["p99_ms"] is not None and r[family]["p99_ms"] > max_p99_ms
    ]
    if slow:
        problems.append(
            f"p99 over {max_p99_ms:g} ms in {len(slow)} bucket-families (first: {slow[0]})"
        )
    lags = [o.lag for o in outcomes]
    reload_text = "no reload"
    if reloaded is not None:
        reload_text = (
            f"reload at {reloaded['at']:.0f} s answered {reloaded.get('status')} in "
            f"{reloaded.get('seconds', 0):.1f} s"
        )
    trend_text = "too short to judge" if judged is None else f"{judged:+.2f} MiB/min ({judged_on})"
    verdict = (
        ("PASS" if not problems else "FAIL: " + "; ".join(problems))
        + f" — {len(outcomes):,} requests at {rate:g}/s, {len(failures):,} failed; "
        f"{len(acked):,} events acknowledged, {len(acked) - len(missing):,} in the online log; "
        f"{reload_text}; RSS trend {trend_text}"
    )
    return {
        "rate": rate,
        "seconds": seconds,
        "bucket_seconds": bucket_seconds,
        "requests": len(outcomes),
        "failures": len(failures),
        "failure_kinds": dict(errors_by_kind),
        "failure_examples": [o.error for o in failures[:5]],
        "families": by_family,
        "events": {
            "sent": sum(o.events_sent for o in outcomes),
            "acknowledged": len(acked),
            "rejected": rejected,
            "missing_from_log": len(missing),
            "missing_examples": missing[:5],
        },
        "reload": reloaded,
        "buckets": rows,
        "rss_trend_mib_per_min": {
            "whole_run": trend_all,
            "after_reload": trend_after,
            "judged": judged,
            "judged_on": None if judged is None else judged_on,
        },
        "peak_rss_mib": max((s[1] for s in samples), default=0) / 2**20,
        "generator": {
            "lag_p99_ms": _ms(lags, 99),
            "lag_max_ms": _ms(lags, 100),
            "cpu_pct": 100.0 * client_cpu,
        },
        "server_log": server_log,
        "ok": not problems,
        "verdict": verdict,
    }


def report(result: dict[str, Any]) -> str:
    """The result as Markdown tables and the verdict line."""

    def pair(cell: dict[str, Any]) -> str:
        if not cell["n"]:
            return ""
        return f"{cell['p50_ms']:.1f} / {cell['p99_ms']:.1f}"

    unit = "minute" if result["bucket_seconds"] == 60 else f"{result['bucket_seconds']:g} s"
    rows = [
        [
            r["bucket"] + 1,
            r["requests"],
            r["failures"],
            *(pair(r[f]) for f in FAMILIES),
            "" if r["rss_mib"] is None else round(r["rss_mib"], 1),
            "" if r["server_cpu_pct"] is None else f"{r['server_cpu_pct']:.0f} %",
            ", ".join(f"v{v}: {n:,}" for v, n in sorted(r["versions"].items())),
        ]
        for r in result["buckets"]
    ]
    per_bucket = table(
        [
            unit,
            "requests",
            "failures",
            *(f"{f} p50 / p99 ms" for f in FAMILIES),
            "server RSS MiB",
            "server CPU",
            "recommender versions",
        ],
        rows,
    )
    fam = result["families"]
    whole = table(
        ["family", "requests", "failures", "p50 ms", "p99 ms", "max ms"],
        [
            [
                f,
                fam[f]["requests"],
                fam[f]["failures"],
                *(
                    "" if fam[f][k] is None else round(fam[f][k], 2)
                    for k in ("p50_ms", "p99_ms", "max_ms")
                ),
            ]
            for f in FAMILIES
        ],
    )
    trend = result["rss_trend_mib_per_min"]
    events = result["events"]
    reloaded = result["reload"]
    gen = result["generator"]
    lines = [
        per_bucket,
        "",
        whole,
        "",
        f"events: {events['sent']:,} sent, {events['acknowledged']:,} acknowledged, "
        f"{events['rejected']:,} rejected, {events['missing_from_log']:,} acknowledged but "
        "missing from the online log",
    ]
    if reloaded is not None:
        lines.append(
            f"reload at {reloaded['at']:.1f} s: promoted {reloaded.get('promoted') or 'nothing'}; "
            f"POST /admin/reload → {reloaded.get('status')} in {reloaded.get('seconds', 0):.2f} s, "
            f"state {reloaded.get('state')}, models {reloaded.get('models')}"
        )

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:+.2f}"

    lines += [
        f"RSS trend: {fmt(trend['whole_run'])} MiB/min over the run, "
        f"{fmt(trend['after_reload'])} MiB/min after the reload; "
        f"peak {result['peak_rss_mib']:,.0f} MiB",
        f"load generator: lag p99 {gen['lag_p99_ms']:.1f} ms, max {gen['lag_max_ms']:.1f} ms; "
        f"CPU {gen['cpu_pct']:.0f} % of a core",
        f"server log: {result['server_log']['lines']} ERROR/Traceback lines"
        + "".join(f"\n  {line}" for line in result["server_log"]["first"]),
        "",
        f"verdict: {result['verdict']}",
    ]
    return "\n".join(lines)


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
