"""(Person, item) interactions: the weighted, time-decayed pass over the events with
an item (``pair_stats``, ``item_counts``), category affinity, and the interaction
matrix."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.data.store import fetch_frame
from features.settings import FeatureConfig
from features.snapshot.sql import _AGE_DAYS, _AS_OF_US, TYPE_CODES, _is, _timestamp


def _weight_case(weights: dict[str, float]) -> str:
    whens = " ".join(f"WHEN {TYPE_CODES[t]} THEN {float(w)!r}" for t, w in sorted(weights.items()))
    return f"(CASE et {whens} ELSE 0.0 END)"


def _pair_stats(
    con: duckdb.DuckDBPyConnection,
    config: FeatureConfig,
    as_of: datetime,
    params: dict[str, Any],
) -> None:
    """Two passes over the events with an item.

    ``pair_stats``, per (person, item): the decayed, weighted interaction strength
    ``w`` (used for profiled people only: the interaction matrix and category
    affinity), the product views of the last 90 days (the viewed price index) and
    the last event (``pid`` is null for an unresolved visitor).
    ``item_counts``, per (item, event type, recency): 2 = within 7 days, 1 = within
    30, 0 = older. A few thousand groups, so far cheaper than windowed counts per
    (person, item) pair."""
    weight = _weight_case(config.interaction_weights)
    s7, s30, s90 = (_timestamp(as_of - timedelta(days=d)) for d in (7, 30, 90))
    items = f"item_id IS NOT NULL AND et IS DISTINCT FROM {TYPE_CODES['stock_change']}"
    con.execute(
        f"""
        CREATE TEMP TABLE pair_stats AS
        SELECT pid, item_id, personal,
               sum({weight} * pow(0.5, {_AGE_DAYS} / {config.half_life_days!r})) AS w,
               count_if({_is("product_view")} AND ts >= {s90}) AS views_90d,
               max(ts) AS last_ts
        FROM ev WHERE {items}
        GROUP BY pid, item_id, personal
        """,
        params,
    )
    con.execute(
        f"""
        CREATE TEMP TABLE item_counts AS
        SELECT item_id, et, (ts >= {s7})::INTEGER + (ts >= {s30})::INTEGER AS recency,
               count(*) AS n
        FROM ev WHERE {items} AND {_is("product_view", "add_to_cart", "purchase")}
        GROUP BY ALL
        """
    )


def _affinity(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """``affinity``: each profiled person's decayed, weighted share per category,
    ranked; returned with customer ids."""
    con.execute(
        """
        CREATE TEMP TABLE affinity AS
        WITH w AS (
            SELECT s.pid, c.category, sum(s.w) AS w
            FROM pair_stats s JOIN catalog_now c ON s.item_id = c.item_id
            WHERE s.personal AND c.category IS NOT NULL
            GROUP BY s.pid, c.category
            HAVING sum(s.w) > 0
        )
        SELECT pid, category, w / sum(w) OVER (PARTITION BY pid) AS affinity,
               row_number() OVER (PARTITION BY pid ORDER BY w DESC, category) AS rank
        FROM w
        """
    )
    return fetch_frame(
        con,
        "SELECT p.customer_id, a.category, a.affinity, a.rank FROM affinity a "
        "JOIN person p USING (pid) ORDER BY p.r, a.rank",
    )


def _interactions(
    con: duckdb.DuckDBPyConnection,
    items: pd.DataFrame,
    config: FeatureConfig,
    params: dict[str, Any],
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """The interaction matrix from ``pair_stats``: rows are profiled customers with at
    least one weighted interaction, in id order; columns are ``items`` in order.

    ``pair_stats.w`` decays from ``as_of`` (in double precision); with
    ``interaction_decay = "last_activity"`` each row is rescaled so that age counts
    from the customer's own last interaction: a customer inactive for a year keeps the
    shape of their history instead of fading to (float32) zero."""
    item_ids = items["item_id"].astype(str).to_numpy()
    con.register("item_pos", pd.DataFrame({"item_id": item_ids, "col": np.arange(len(item_ids))}))
    con.execute(
        """
        CREATE TEMP TABLE users AS
        SELECT pid, customer_id, (row_number() OVER (ORDER BY r) - 1)::INTEGER AS r
        FROM person WHERE pid IN (SELECT pid FROM pair_stats WHERE personal AND w > 0)
        """
    )
    user_ids = con.execute("SELECT customer_id FROM users ORDER BY r").fetchnumpy()["customer_id"]
    weight = "s.w"
    if config.interaction_decay == "last_activity":
        # 0.5^((as_of - ts) / h) · 2^((as_of - last) / h) = 0.5^((last - ts) / h); the
        # exponent is capped where 2^x leaves double precision.
        last = "max(epoch_us(s.last_ts)) OVER (PARTITION BY s.pid)"
        weight = (
            f"s.w * pow(2.0, least(({_AS_OF_US} - {last}) / 86400e6 / "
            f"{config.half_life_days!r}, 1000))"
        )
    coo = con.execute(
        f"SELECT u.r, x.col AS c, {weight} AS w FROM pair_stats s JOIN users u USING (pid) "
        "JOIN item_pos x ON s.item_id = x.item_id WHERE s.personal AND s.w > 0",
        params if "$as_of" in weight else None,
    ).fetchnumpy()
    matrix = sp.csr_matrix(
        (np.asarray(coo["w"], dtype=np.float32), (np.asarray(coo["r"]), np.asarray(coo["c"]))),
        shape=(len(user_ids), len(item_ids)),
        dtype=np.float32,
    )
    matrix.sort_indices()
    return matrix, np.asarray(user_ids, dtype=str), item_ids
