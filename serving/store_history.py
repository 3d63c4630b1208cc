"""What loading a snapshot into the online store reads from the event store: recent
events, every purchase, and each customer's sends and clicks per content variant."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from features.data.store import EventStore, connect
from serving.profiles import PROFILE_EVENTS


def store_history(
    store: EventStore, as_of: pd.Timestamp, recent_days: float, attribution_window: timedelta
) -> dict[str, Any]:
    """From the event store: recent events, all purchases and all sends with clicks."""
    con = connect()
    try:
        store.register(con, "events", "events")
        since = as_of - pd.Timedelta(days=recent_days)
        event_list = ", ".join(f"'{e}'" for e in PROFILE_EVENTS + ("stock_change",))
        recent = con.execute(
            "SELECT event_id, ts, event_type, customer_id, anonymous_id, item_id, campaign_id, "
            f"slot, content_id, properties FROM events WHERE ts >= ? AND ts < ? "
            f"AND event_type IN ({event_list})",
            [since.to_pydatetime(), as_of.to_pydatetime()],
        ).df()
        purchases = con.execute(
            "SELECT DISTINCT customer_id, anonymous_id, item_id FROM events "
            "WHERE event_type = 'purchase' AND ts < ?",
            [as_of.to_pydatetime()],
        ).df()
        window = attribution_window.total_seconds()
        responses = con.execute(
            f"""
            WITH sends AS (
                SELECT customer_id, campaign_id, content_id, ts FROM events
                WHERE event_type = 'email_sent' AND content_id IS NOT NULL
                  AND customer_id IS NOT NULL AND campaign_id IS NOT NULL AND ts < $as_of
            ), clicks AS (
                SELECT customer_id, campaign_id, ts FROM events
                WHERE event_type = 'email_click' AND campaign_id IS NOT NULL AND ts < $as_of
            )
            SELECT s.customer_id, s.content_id, count(*) AS sends,
                   count(*) FILTER (WHERE EXISTS (
                       SELECT 1 FROM clicks c WHERE c.customer_id = s.customer_id
                         AND c.campaign_id = s.campaign_id AND c.ts >= s.ts
                         AND epoch(c.ts) <= epoch(s.ts) + {window}
                   )) AS clicks
            FROM sends s GROUP BY ALL
            """,
            {"as_of": as_of.to_pydatetime()},
        ).df()
    finally:
        con.close()
    return {"recent": recent, "purchases": purchases, "responses": responses}


def response_rows(responses: pd.DataFrame, canonical: dict[str, str]) -> list[tuple[Any, ...]]:
    if responses.empty:
        return []
    frame = responses.assign(
        customer_id=responses["customer_id"].astype(str).map(lambda s: canonical.get(s, s))
    )
    grouped = frame.groupby(["customer_id", "content_id"], as_index=False)[
        ["sends", "clicks"]
    ].sum()
    return list(
        zip(
            grouped["customer_id"],
            grouped["content_id"].astype(str),
            grouped["sends"].astype(int),
            grouped["clicks"].astype(int),
            strict=True,
        )
    )
