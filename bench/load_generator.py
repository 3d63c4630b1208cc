"""The open-loop load generator that drives the real service in the serving benchmarks.

Who is asked (:class:`Audience`: known, personalised customers and the items of a home's
snapshot), when (:func:`timetable`: request *i* due at ``i / rate`` seconds, its family
drawn from a mix with a fixed seed), with what (:class:`Bodies`: request bodies, and
realistic ``/events`` calls answering earlier ``/choose`` decisions), and the sending
(:func:`open_loop`: each request sent when due, whether or not earlier ones have
answered, its latency measured from the due time), with what each request did
(:class:`Outcome`). ``bench.soak`` and ``bench.serving`` drive the service with it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

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
