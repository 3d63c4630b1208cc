"""Triggers at request time, from the online profile.

Cart and browse abandonment are recomputed from the customer's recent events
(those before the snapshot plus everything posted since), with the same rules and
thresholds as the feature job's SQL (``features.snapshot``), so an add-to-cart
posted now makes ``cart_abandoned`` active ``cart_abandon_hours`` later. Lapsing
and back-in-stock come from the snapshot, dropped once a later purchase answers
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from features.settings import TriggerConfig
from serving.profiles import Profile, RecentSelection

HOUR = 3600.0
DAY = 86400.0
LIVE_TRIGGERS = ("cart_abandoned", "browse_abandoned")
TRIGGER_EVENTS = ("add_to_cart", "remove_from_cart", "product_view", "purchase")


def trigger_events(
    now: float, as_of: float, config: TriggerConfig, back_in_stock_hours: float = 0.0
) -> RecentSelection:
    """The recent events :func:`active_triggers` needs at ``now`` — and every event
    since the snapshot (``as_of``), which live scoring reads.

    A cart older than its delay plus time to live cannot be active, a view older than
    the browse lookback does not count, and what answers a cart or a browse comes
    after it, inside the same window. A purchase answers back-in-stock only after the
    trigger fired, so within its time to live (``back_in_stock_hours``: the longest a
    snapshot's trigger lives, when it was built under another setting); lapsing reads
    the live last purchase time instead (``last_purchase`` of
    :func:`active_triggers`). Tested equal to reading everything.
    """
    window = max(
        config.browse_lookback_days * DAY,
        (config.cart_abandon_hours + config.ttl_hours["cart_abandoned"]) * HOUR,
        max(config.ttl_hours["back_in_stock"], back_in_stock_hours) * HOUR,
    )
    return RecentSelection(every_since=as_of, since=now - window, kinds=TRIGGER_EVENTS)


@dataclass(frozen=True)
class ActiveTrigger:
    trigger: str
    item_id: str | None
    fired_at: float
    expires_at: float


def active_triggers(
    recent: list[tuple[float, str, str | None]],
    snapshot_triggers: list[dict[str, object]],
    *,
    now: float,
    config: TriggerConfig,
    snapshot_last_purchase: float | None = None,
    last_purchase: float | None = None,
) -> list[ActiveTrigger]:
    """Triggers active at ``now`` (epoch seconds), newest first.

    Parameters
    ----------
    recent : list of (ts, event_type, item_id)
        The customer's recent events, any order.
    snapshot_triggers : list of dict
        The snapshot's triggers of this customer (``trigger, item_id, fired_at,
        expires_at``; epoch seconds).
    snapshot_last_purchase : float, optional
        The snapshot's last purchase time, to tell a newer purchase.
    last_purchase : float, optional
        The latest purchase known live (it may be older than ``recent`` reaches).
    """
    if not recent and not snapshot_triggers:
        return []
    ttl = {name: hours * HOUR for name, hours in config.ttl_hours.items()}
    lookback = config.browse_lookback_days * DAY
    # One pass: the latest time of each kind of answer per item, and the views.
    last_cart: dict[str, float] = {}
    cart_answered: dict[str, float] = {}  # latest purchase / remove_from_cart
    browse_answered: dict[str, float] = {}  # latest add_to_cart / purchase
    bought: dict[str, float] = {}
    latest_purchase = -math.inf if last_purchase is None else last_purchase
    views: dict[str, list[float]] = {}
    for ts, kind, item in recent:
        if ts >= now:
            continue
        if kind == "purchase":
            latest_purchase = max(latest_purchase, ts)
        if item is None:
            continue
        if kind == "add_to_cart":
            last_cart[item] = max(last_cart.get(item, -math.inf), ts)
            browse_answered[item] = max(browse_answered.get(item, -math.inf), ts)
        elif kind == "purchase":
            cart_answered[item] = max(cart_answered.get(item, -math.inf), ts)
            browse_answered[item] = max(browse_answered.get(item, -math.inf), ts)
            bought[item] = max(bought.get(item, -math.inf), ts)
        elif kind == "remove_from_cart":
            cart_answered[item] = max(cart_answered.get(item, -math.inf), ts)
        elif kind == "product_view" and now - ts <= lookback:
            views.setdefault(item, []).append(ts)
    out: list[ActiveTrigger] = []
    for item, cart_ts in last_cart.items():
        if cart_answered.get(item, -math.inf) > cart_ts:
            continue
        fired = cart_ts + config.cart_abandon_hours * HOUR
        out.append(ActiveTrigger("cart_abandoned", item, fired, fired + ttl["cart_abandoned"]))
    for item, times in views.items():
        if len(times) < config.browse_min_views:
            continue
        times.sort()
        if browse_answered.get(item, -math.inf) >= times[0]:
            continue
        fired = times[config.browse_min_views - 1] + config.browse_abandon_hours * HOUR
        out.append(ActiveTrigger("browse_abandoned", item, fired, fired + ttl["browse_abandoned"]))
    for row in snapshot_triggers:
        name = str(row["trigger"])
        if name in LIVE_TRIGGERS:
            continue
        item = None if row.get("item_id") is None else str(row["item_id"])
        fired = float(row["fired_at"])  # type: ignore[arg-type]
        expires = float(row["expires_at"])  # type: ignore[arg-type]
        if name == "lapsing" and latest_purchase > (snapshot_last_purchase or -math.inf):
            continue
        if name == "back_in_stock" and item is not None and bought.get(item, -math.inf) >= fired:
            continue
        out.append(ActiveTrigger(name, item, fired, expires))
    active = [t for t in out if t.fired_at <= now < t.expires_at]
    return sorted(active, key=lambda t: (-t.fired_at, t.trigger, t.item_id or ""))


def profile_triggers(profile: Profile, now: float, config: TriggerConfig) -> list[ActiveTrigger]:
    """Triggers of an online profile active at ``now``.

    The live last purchase stands in for purchases older than the profile's recent
    events reach (see :func:`trigger_events`); one stamped at or after ``now`` does
    not count, as in :func:`active_triggers`.
    """
    last = profile.last_purchase_ts
    return active_triggers(
        profile.recent,
        profile.snapshot_triggers,
        now=now,
        config=config,
        snapshot_last_purchase=profile.snapshot_last_purchase_ts,
        last_purchase=last if last is not None and last < now else None,
    )
