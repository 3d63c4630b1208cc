"""Triggers at request time, from the online profile.

Cart and browse abandonment are recomputed from the customer's recent events
(those before the snapshot plus everything posted since), with the same rules and
thresholds as the feature job's SQL (``features.snapshot``), so an add-to-cart
posted now makes ``cart_abandoned`` active ``cart_abandon_hours`` later. Lapsing
and back-in-stock come from the snapshot, dropped once a later purchase answers
them.
"""

from __future__ import annotations

from dataclasses import dataclass

from features.settings import TriggerConfig

HOUR = 3600.0
DAY = 86400.0
LIVE_TRIGGERS = ("cart_abandoned", "browse_abandoned")


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
    """
    events = sorted((e for e in recent if e[0] < now), key=lambda e: e[0])
    ttl = {name: hours * HOUR for name, hours in config.ttl_hours.items()}
    out: list[ActiveTrigger] = []

    last_cart: dict[str, float] = {}
    for ts, kind, item in events:
        if kind == "add_to_cart" and item is not None:
            last_cart[item] = ts
    for item, cart_ts in last_cart.items():
        answered = any(
            ts > cart_ts and kind in ("purchase", "remove_from_cart") and i == item
            for ts, kind, i in events
        )
        fired = cart_ts + config.cart_abandon_hours * HOUR
        if not answered:
            out.append(ActiveTrigger("cart_abandoned", item, fired, fired + ttl["cart_abandoned"]))

    views: dict[str, list[float]] = {}
    for ts, kind, item in events:
        if (
            kind == "product_view"
            and item is not None
            and now - ts <= config.browse_lookback_days * DAY
        ):
            views.setdefault(item, []).append(ts)
    for item, times in views.items():
        if len(times) < config.browse_min_views:
            continue
        first = times[0]
        nth = times[config.browse_min_views - 1]
        answered = any(
            ts >= first and kind in ("add_to_cart", "purchase") and i == item
            for ts, kind, i in events
        )
        fired = nth + config.browse_abandon_hours * HOUR
        if not answered:
            out.append(
                ActiveTrigger("browse_abandoned", item, fired, fired + ttl["browse_abandoned"])
            )

    purchases = [(ts, i) for ts, kind, i in events if kind == "purchase"]
    for row in snapshot_triggers:
        name = str(row["trigger"])
        if name in LIVE_TRIGGERS:
            continue
        item = None if row.get("item_id") is None else str(row["item_id"])
        fired = float(row["fired_at"])  # type: ignore[arg-type]
        expires = float(row["expires_at"])  # type: ignore[arg-type]
        if name == "lapsing" and any(
            snapshot_last_purchase is None or ts > snapshot_last_purchase for ts, _ in purchases
        ):
            continue
        if name == "back_in_stock" and any(ts >= fired and i == item for ts, i in purchases):
            continue
        out.append(ActiveTrigger(name, item, fired, expires))
    active = [t for t in out if t.fired_at <= now < t.expires_at]
    return sorted(active, key=lambda t: (-t.fired_at, t.trigger, t.item_id or ""))
