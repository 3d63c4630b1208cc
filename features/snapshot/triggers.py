"""The triggers active at ``as_of`` (cart and browse abandoned, lapsing, back in
stock), in SQL over the profiled events, orders and stock changes."""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

from features.data.store import INGESTED_AT, fetch_frame
from features.settings import FeatureConfig
from features.snapshot.sql import _AGE_DAYS, _is


def _triggers(
    con: duckdb.DuckDBPyConnection, config: FeatureConfig, params: dict[str, Any]
) -> pd.DataFrame:
    t = config.triggers
    ttl = {name: hours * 3600.0 for name, hours in t.ttl_hours.items()}
    # Items back in stock at as_of: the last restock (out of stock, then in), from
    # stock_change events and from changes of in_stock between catalog ingests.
    con.execute(
        f"""
        CREATE TEMP TABLE restocks AS
        WITH stock AS (
            SELECT item_id, ts, json_extract_string(properties, '$.in_stock') IN ('true', '1')
                   AS in_stock
            FROM sparse WHERE event_type = 'stock_change'
            UNION ALL
            SELECT item_id, {INGESTED_AT} AS ts, in_stock FROM catalog_history
            WHERE in_stock IS NOT NULL AND {INGESTED_AT} < $as_of
        ), stock_seq AS (
            SELECT item_id, ts, in_stock,
                   lag(in_stock) OVER (PARTITION BY item_id ORDER BY ts) AS was_in_stock,
                   row_number() OVER (PARTITION BY item_id ORDER BY ts DESC) AS latest
            FROM stock
        ), last_restock AS (
            SELECT item_id, max(ts) AS restock_ts FROM stock_seq
            WHERE in_stock AND was_in_stock = false GROUP BY item_id
        )
        SELECT r.item_id, r.restock_ts FROM last_restock r
        JOIN stock_seq s ON s.item_id = r.item_id AND s.latest = 1 AND s.in_stock
        """,
        params,
    )
    # The profiled events the triggers read: carts, removals, purchases, and the views
    # recent enough for a browse or of an item back in stock.
    con.execute(
        f"""
        CREATE TEMP TABLE tev AS
        SELECT pid, item_id, et, ts, {_AGE_DAYS} AS age_days FROM ev
        WHERE personal AND (
            {_is("add_to_cart", "remove_from_cart", "purchase")}
            OR ({_is("product_view")} AND ({_AGE_DAYS} <= {t.browse_lookback_days!r}
                                          OR item_id IN (SELECT item_id FROM restocks))))
        """,
        params,
    )
    cart, view = _is("add_to_cart"), _is("product_view")
    sql = f"""
    WITH carts AS (
        SELECT pid, item_id, max(ts) AS cart_ts FROM tev
        WHERE {cart} GROUP BY pid, item_id
    ), cart AS (
        SELECT 'cart_abandoned' AS trigger, c.pid, c.item_id,
               c.cart_ts + to_seconds({t.cart_abandon_hours * 3600.0!r}) AS fired_at,
               c.cart_ts + to_seconds({t.cart_abandon_hours * 3600.0 + ttl["cart_abandoned"]!r})
                   AS expires_at
        FROM carts c
        WHERE NOT EXISTS (
            SELECT 1 FROM tev p WHERE p.pid = c.pid AND p.item_id = c.item_id
              AND p.{_is("purchase", "remove_from_cart")} AND p.ts > c.cart_ts)
    ), views AS (
        -- per (person, item): the first view, and the view that makes a browse
        SELECT pid, item_id, min(ts) AS first_view,
               min(ts, {t.browse_min_views})[{t.browse_min_views}] AS ts
        FROM tev WHERE {view} AND age_days <= {t.browse_lookback_days!r}
        GROUP BY pid, item_id HAVING count(*) >= {t.browse_min_views}
    ), browse AS (
        SELECT 'browse_abandoned' AS trigger, v.pid, v.item_id,
               v.ts + to_seconds({t.browse_abandon_hours * 3600.0!r}) AS fired_at,
               v.ts + to_seconds({t.browse_abandon_hours * 3600.0 + ttl["browse_abandoned"]!r})
                   AS expires_at
        FROM views v
        WHERE NOT EXISTS (
            SELECT 1 FROM tev p WHERE p.pid = v.pid AND p.item_id = v.item_id
              AND p.{_is("add_to_cart", "purchase")} AND p.ts >= v.first_view)
    ), gaps AS (
        SELECT pid, max(ts) AS last_ts, median(gap) AS gap FROM (
            SELECT pid, ts, epoch(ts) - epoch(lag(ts) OVER (PARTITION BY pid ORDER BY ts)) AS gap
            FROM orders)
        GROUP BY pid HAVING count(gap) >= 1 AND median(gap) > 0
    ), lapsing AS (
        SELECT 'lapsing' AS trigger, pid, NULL::VARCHAR AS item_id,
               last_ts + to_seconds({t.lapsing_gap_multiple!r} * gap) AS fired_at,
               last_ts + to_seconds({t.lapsing_gap_multiple!r} * gap + {ttl["lapsing"]!r})
                   AS expires_at
        FROM gaps
    ), back AS (
        SELECT DISTINCT 'back_in_stock' AS trigger, v.pid, r.item_id,
               r.restock_ts AS fired_at,
               r.restock_ts + to_seconds({ttl["back_in_stock"]!r}) AS expires_at
        FROM restocks r
        JOIN tev v ON v.item_id = r.item_id AND v.{view}
             AND v.ts < r.restock_ts
             AND v.ts >= r.restock_ts - to_seconds({t.back_in_stock_lookback_days * 86400.0!r})
        WHERE NOT EXISTS (
            SELECT 1 FROM tev p WHERE p.pid = v.pid AND p.item_id = r.item_id
              AND p.{_is("purchase")} AND p.ts >= r.restock_ts)
    ), fired AS (
        SELECT * FROM cart UNION ALL SELECT * FROM browse
        UNION ALL SELECT * FROM lapsing UNION ALL SELECT * FROM back
    )
    SELECT p.customer_id, f.trigger, f.item_id, f.fired_at, f.expires_at
    FROM fired f JOIN person p USING (pid)
    WHERE fired_at <= $as_of AND expires_at > $as_of
    ORDER BY customer_id, trigger, item_id
    """
    return fetch_frame(con, sql, params)
