"""The item table: one row per item (catalogued or seen in events) with its recent
views, carts and purchases, conversion rate and price band."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pandas as pd

from features.data.store import fetch_frame
from features.snapshot.sql import _is, _timestamp


def _item_features(con: duckdb.DuckDBPyConnection, as_of: datetime) -> pd.DataFrame:
    s30 = _timestamp(as_of - timedelta(days=30))
    view, cart, buy = _is("product_view"), _is("add_to_cart"), _is("purchase")
    items = fetch_frame(
        con,
        f"""
        WITH counts AS (
            SELECT item_id,
                   sum(n) FILTER (WHERE {view} AND recency = 2) AS views_7d,
                   sum(n) FILTER (WHERE {view} AND recency >= 1) AS views_30d,
                   sum(n) FILTER (WHERE {cart} AND recency = 2) AS carts_7d,
                   sum(n) FILTER (WHERE {cart} AND recency >= 1) AS carts_30d,
                   sum(n) FILTER (WHERE {buy} AND recency = 2) AS purchases_7d,
                   sum(n) FILTER (WHERE {buy} AND recency >= 1) AS purchases_30d
            FROM item_counts GROUP BY item_id
        ), stats AS (
            SELECT item_id,
                   coalesce(c.views_7d, 0) AS views_7d, coalesce(c.views_30d, 0) AS views_30d,
                   coalesce(c.carts_7d, 0) AS carts_7d, coalesce(c.carts_30d, 0) AS carts_30d,
                   coalesce(c.purchases_7d, 0) AS purchases_7d,
                   coalesce(c.purchases_30d, 0) AS purchases_30d,
                   -- one row per (person, item): counting rows counts distinct people
                   p.buyers_or_viewers_30d
            FROM (SELECT item_id, count(pid) FILTER (WHERE last_ts >= {s30})
                      AS buyers_or_viewers_30d
                  FROM pair_stats GROUP BY item_id) p
            LEFT JOIN counts c USING (item_id)
        ), prior AS (
            SELECT (sum(purchases_30d) + 1.0) / (sum(views_30d) + 1.0) AS rate FROM stats
        )
        SELECT coalesce(c.item_id, s.item_id) AS item_id,
               c.category, c.brand, c.price, c.in_stock,
               coalesce(s.views_7d, 0) AS views_7d,
               coalesce(s.views_30d, 0) AS views_30d,
               coalesce(s.carts_7d, 0) AS carts_7d,
               coalesce(s.carts_30d, 0) AS carts_30d,
               coalesce(s.purchases_7d, 0) AS purchases_7d,
               coalesce(s.purchases_30d, 0) AS purchases_30d,
               coalesce(s.buyers_or_viewers_30d, 0) AS customers_30d,
               -- purchases per view, shrunk towards the store-wide rate (20 views' weight)
               (coalesce(s.purchases_30d, 0) + 20 * (SELECT rate FROM prior))
                   / (coalesce(s.views_30d, 0) + 20) AS conversion_rate,
               -- price tertile within the category, by percent rank (cheapest = 0)
               CASE WHEN c.price IS NULL THEN NULL
                    ELSE ['low', 'mid', 'high'][1 + least(2, floor(3 * percent_rank() OVER (
                        PARTITION BY c.category, c.price IS NULL ORDER BY c.price))::INT)]
               END AS price_band,
               c.item_id IS NOT NULL AS in_catalog
        FROM catalog_now c FULL OUTER JOIN stats s ON c.item_id = s.item_id
        ORDER BY item_id
        """,
    )
    return items
