"""The customer table: per-person aggregates over the events, then one row per person
with consent state and, for the profiled, the behavioural features (window counts,
orders and spend, AOV, lifecycle, price sensitivity, top category, send hour in UTC
and in the customer's time zone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.data.contracts import EVENT_TYPES
from features.data.store import STRING_DTYPE, fetch_frame
from features.errors import InputError
from features.identity.match import personal_keys
from features.settings import FeatureConfig
from features.snapshot.attributes import _attribute_columns
from features.snapshot.sql import _UTC_HOUR, TYPE_CODES, _is, _timestamp
from features.snapshot.tables import CONSENT_COLUMNS


def _customer_aggregates(
    con: duckdb.DuckDBPyConnection,
    config: FeatureConfig,
    as_of: datetime,
    params: dict[str, Any],
) -> None:
    """The per-customer aggregates the customer table reads, as temporary tables.

    ``per_type``: one pass over the profiled events into (person, event type) with a
    count per window; ``hours``: one into (person, hour of day); ``purchases`` and
    ``orders``: the profiled purchases row by row (value, order) and grouped into
    orders. An event is in the N-day window when ``ts >= as_of - N days`` (its age
    is at most N days): a timestamp comparison, exact at the boundary.
    """
    windows = sorted(set(config.windows_days) | {30, 90})
    since = {w: _timestamp(as_of - timedelta(days=w)) for w in windows}
    con.execute(
        "CREATE TEMP TABLE per_type AS SELECT pid, et, count(*) AS n, "
        + "".join(f"count_if(ts >= {since[w]}) AS w{w}, " for w in windows)
        + "min(ts) AS first_ts, max(ts) AS last_ts FROM ev WHERE personal GROUP BY pid, et"
    )
    con.execute(
        f"""
        CREATE TEMP TABLE hours AS
        SELECT pid, hr, count_if({_is("email_open", "email_click")}) AS n_email,
               count(*) AS n_all
        FROM (SELECT pid, et, {_UTC_HOUR} AS hr FROM ev WHERE personal)
        GROUP BY pid, hr
        """
    )
    con.execute(
        """
        CREATE TEMP TABLE purchases AS
        SELECT i.pid, s.ts, s.item_id, s.price, s.value, s.order_key
        FROM sparse s
        JOIN ids i ON i.is_customer = (s.customer_id IS NOT NULL)
                  AND i.source_id = coalesce(s.customer_id, s.anonymous_id)
        WHERE s.event_type = 'purchase' AND i.personalised
        """
    )
    # Orders: purchases grouped by order id; a purchase without one is its own order.
    # (Event ids are unique, so this is grouping by coalesce(order_id, event_id)
    # without reading the event id column, the widest in the store.)
    con.execute(
        "CREATE TEMP TABLE orders AS SELECT pid, order_key, min(ts) AS ts FROM purchases "
        "WHERE order_key IS NOT NULL GROUP BY pid, order_key "
        "UNION ALL SELECT pid, order_key, ts FROM purchases WHERE order_key IS NULL"
    )


def _customer_table(
    con: duckdb.DuckDBPyConnection,
    base: pd.DataFrame,
    config: FeatureConfig,
    as_of: datetime,
    params: dict[str, Any],
) -> pd.DataFrame:
    """One row per person of ``base`` (in its order): consent state, and for the
    profiled the behavioural features (null for everyone else).

    Whatever comes from the (person, event type) aggregates — the window counts, one
    column per event type and window, and what is computed from them — is laid out
    by a numpy scatter on (row, event type): a reshape, no arithmetic, and much
    cheaper than dozens of filtered sums in SQL. The rest (orders, spend, send hour,
    price indices, top category) is one SQL statement, its rows in ``base`` order.
    """
    base = base.reset_index(drop=True)
    personal = base["personalised"].to_numpy(dtype=bool)
    unprofiled = ~personal
    _register_zone_shifts(con, base["timezone"], as_of)
    sql = fetch_frame(con, _customer_sql(as_of), params)
    by_type = _TypeScatter(con, len(base), sorted(set(config.windows_days) | {30, 90}))
    now = (as_of - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)  # exact

    def counts(values: np.ndarray) -> pd.arrays.IntegerArray:
        return pd.arrays.IntegerArray(values, unprofiled.copy())

    def days_before(micros: np.ndarray) -> np.ndarray:
        out = (now - micros) / 86400e6
        out[(micros == _NO_TIME) | unprofiled] = np.nan
        return out

    def w(event_type: str, days: int) -> np.ndarray:
        return by_type.column(event_type, f"w{days}")

    first_buy = by_type.column("purchase", "first_us", fill=_NO_TIME)
    last_buy = by_type.column("purchase", "last_us", fill=_NO_TIME)
    recency = days_before(last_buy)
    sends, opens, clicks = w("email_sent", 90), w("email_open", 90), w("email_click", 90)
    with np.errstate(divide="ignore", invalid="ignore"):
        open_rate = np.where(sends > 0, opens / sends, np.nan)
        click_rate = np.where(sends > 0, clicks / sends, np.nan)
    engagement = np.log(
        1
        + w("email_open", 30)
        + 3 * w("email_click", 30)
        + 0.2 * w("product_view", 30)
        + 2 * w("add_to_cart", 30)
        + 10 * w("purchase", 30)
    )
    signup_age = (pd.Timestamp(as_of) - base["signup_ts"]).dt.total_seconds().to_numpy(
        dtype=float, na_value=np.nan
    ) / 86400
    lifecycle = _lifecycle(
        purchases_90d=w("purchase", 90),
        recency=recency,
        signup_age=signup_age,
        first_purchase_age=days_before(first_buy),
        engaged=(w("email_click", 30) >= 3) | (w("product_view", 30) >= 5),
    ).astype(object)
    lifecycle[unprofiled] = None

    table = sql.to_dict("series")
    attributes = _attribute_columns(
        con, base["attributes"], personal, personal_keys(config.identity.extra_fields)
    )
    columns: dict[str, Any] = {c: base[c] for c in CONSENT_COLUMNS}
    for column in ("signup_ts", "country", "timezone"):
        columns[column] = base[column].where(personal)
    columns |= {
        "first_event_ts": table["first_event_ts"],
        "last_event_ts": table["last_event_ts"],
        "days_since_last_event": table["days_since_last_event"],
        "first_purchase_ts": _timestamps(first_buy, unprofiled),
        "last_purchase_ts": _timestamps(last_buy, unprofiled),
        "recency_days": recency,
        "frequency": counts(by_type.column("purchase", "n")),
        "monetary": table["monetary"],
        "monetary_90d": table["monetary_90d"],
        "engagement_score": np.where(personal, engagement, np.nan),
    }
    for event_type in EVENT_TYPES:
        for days in config.windows_days:
            columns[f"{event_type}_{days}d"] = counts(w(event_type, days))
    columns |= {
        "orders": table["orders"].astype("Int64"),
        "purchase_gap_median_days": table["purchase_gap_median_days"],
        "preferred_send_hour_utc": table["preferred_send_hour_utc"].astype("Int64"),
        "viewed_price_index_90d": table["viewed_price_index_90d"],
        "purchased_price_index": table["purchased_price_index"],
        "discount_purchase_share": table["discount_purchase_share"],
        "email_open_rate_90d": np.where(personal, open_rate, np.nan),
        "email_click_rate_90d": np.where(personal, click_rate, np.nan),
        "aov": table["aov"],
        "aov_percentile": _aov_percentile(table["monetary"], table["orders"], table["aov"]),
        "top_category": table["top_category"].astype(STRING_DTYPE),
        "top_category_affinity": table["top_category_affinity"],
        "lifecycle": pd.array(lifecycle, dtype=STRING_DTYPE),
        "preferred_send_hour_local": table["preferred_send_hour_local"].astype("Int64"),
    }
    clash = sorted(set(attributes) & set(columns))
    if clash:
        raise InputError("attributes", clash, "attribute names clash with feature columns")
    columns |= attributes
    return pd.DataFrame(columns, copy=False)


_NO_TIME = np.iinfo(np.int64).min  # NaT as int64 microseconds


def _timestamps(micros: np.ndarray, unknown: np.ndarray) -> pd.Series:
    """UTC timestamps from epoch microseconds; ``_NO_TIME`` and ``unknown`` rows NaT."""
    values = np.where(unknown, _NO_TIME, micros).view("datetime64[us]")
    return pd.Series(values).dt.tz_localize(UTC)


def _aov_percentile(monetary: pd.Series, orders: pd.Series, aov: pd.Series) -> np.ndarray:
    """Each buyer's average order value as a percentile among buyers (ties: max).

    Ranked at cents, from the spend rounded to cents: a float sum varies in its last
    digits with the order of summation, which must not turn a tie into two values."""
    buyers = aov.notna().to_numpy()
    cents = (monetary[buyers].round(2) / orders[buyers]).round(2).astype("float64")
    percentile = np.full(len(aov), np.nan)
    percentile[buyers] = cents.rank(pct=True, method="max").to_numpy()
    return percentile


def _lifecycle(
    *,
    purchases_90d: np.ndarray,
    recency: np.ndarray,
    signup_age: np.ndarray,
    first_purchase_age: np.ndarray,
    engaged: np.ndarray,
) -> np.ndarray:
    """Lifecycle stage per customer (ages in days, NaN when unknown); see the package
    docstring (:mod:`features.snapshot`) for the rules."""
    bought = ~np.isnan(recency)
    recent_buyer = bought & (recency <= 90)
    with np.errstate(invalid="ignore"):
        conditions = [
            purchases_90d > 5,
            (signup_age <= 14) & ~bought,
            (signup_age <= 30) | (first_purchase_age <= 30),
            recent_buyer,
            bought & (recency > 90) & (recency <= 180),
            bought & (recency > 180),
            engaged & ~recent_buyer,
        ]
    choices = ["loyal", "new_subscriber", "new", "active", "at_risk", "lapsed"]
    choices.append("engaged_no_purchase")
    return np.select(conditions, choices, default="prospect")


class _TypeScatter:
    """``per_type`` laid out per (row of the customer table, event type): one array
    per event type and field, read once from DuckDB and sorted by type."""

    def __init__(self, con: duckdb.DuckDBPyConnection, size: int, windows: list[int]) -> None:
        narrow = con.execute(
            "SELECT p.r, t.et, t.n, "
            + "".join(f"t.w{w}, " for w in windows)
            + "epoch_us(t.first_ts) AS first_us, epoch_us(t.last_ts) AS last_us "
            "FROM per_type t JOIN person p USING (pid) WHERE t.et IS NOT NULL"
        ).fetchnumpy()
        types = np.asarray(narrow.pop("et"))
        order = np.argsort(types, kind="stable")
        self._bounds = np.searchsorted(types[order], np.arange(len(EVENT_TYPES) + 1))
        self._rows = np.asarray(narrow.pop("r"))[order]
        self._fields = {name: np.asarray(values)[order] for name, values in narrow.items()}
        self._size = size

    def column(self, event_type: str, field: str, fill: int = 0) -> np.ndarray:
        code = TYPE_CODES[event_type]
        at = slice(self._bounds[code], self._bounds[code + 1])
        out = np.full(self._size, fill, dtype=np.int64)
        out[self._rows[at]] = self._fields[field][at]
        return out


def _register_zone_shifts(
    con: duckdb.DuckDBPyConnection, timezones: pd.Series, as_of: datetime
) -> None:
    """``zone_shift``: each known time zone's whole-hour offset from UTC on the as_of
    date (a zone that cannot be read has no row: its local hour is unknown)."""
    day = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    names, shifts = [], []
    for tz in timezones.dropna().unique():
        try:
            zone = ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            continue
        offset = day.astimezone(zone).utcoffset()
        names.append(str(tz))
        shifts.append(int(offset.total_seconds() // 3600) if offset is not None else 0)
    con.register(
        "zone_shift",
        pa.table({"timezone": pa.array(names, pa.string()), "shift": pa.array(shifts, pa.int32())}),
    )


def _customer_sql(as_of: datetime) -> str:
    """The customer features not read from ``per_type``, rows in ``person.r`` order;
    every column is null for a person without consent to profiling."""
    s90 = _timestamp(as_of - timedelta(days=90))

    def profiled(expression: str, name: str) -> str:
        return f"CASE WHEN p.personalised THEN {expression} END AS {name}"

    return f"""
    WITH order_stats AS (
        SELECT pid, count(*) AS orders, median(gap) AS gap FROM (
            SELECT pid, (epoch(ts) - epoch(lag(ts) OVER (PARTITION BY pid ORDER BY ts)))
                   / 86400.0 AS gap
            FROM orders)
        GROUP BY pid
    ), money AS (
        SELECT pid, sum(value) AS monetary,
               coalesce(sum(value) FILTER (WHERE ts >= {s90}), 0) AS monetary_90d
        FROM purchases GROUP BY pid
    ), send_hour AS (
        SELECT pid,
               CASE WHEN max(n_email) > 0 THEN arg_max(hr, n_email * 24 + (23 - hr))
                    ELSE arg_max(hr, n_all * 24 + (23 - hr)) END AS hour
        FROM hours GROUP BY pid
    ), span AS (
        SELECT pid, min(first_ts) AS first_ts, max(last_ts) AS last_ts
        FROM per_type GROUP BY pid
    ), indexed AS (
        -- price index: list price over the category's median list price
        SELECT c.item_id, c.price AS list_price, c.price / m.median_price AS price_index
        FROM catalog_now c
        JOIN (SELECT category, median(price) AS median_price FROM catalog_now
              WHERE category IS NOT NULL AND price > 0 GROUP BY category) m
          ON m.category = c.category
        WHERE c.price > 0
    ), viewed AS (
        -- the mean over product views, from the views per (person, item)
        SELECT s.pid, sum(s.views_90d * x.price_index) / sum(s.views_90d)
                   AS viewed_price_index_90d
        FROM pair_stats s JOIN indexed x ON x.item_id = s.item_id
        WHERE s.personal AND s.views_90d > 0
        GROUP BY s.pid
    ), bought AS (
        SELECT b.pid, avg(x.price_index) AS purchased_price_index,
               avg(CASE WHEN b.price < 0.99 * x.list_price THEN 1.0 ELSE 0.0 END)
                   FILTER (WHERE b.price IS NOT NULL) AS discount_purchase_share
        FROM purchases b JOIN indexed x ON x.item_id = b.item_id
        GROUP BY b.pid
    ), joined AS (
        SELECT p.r, p.personalised, s.first_ts, s.last_ts,
               coalesce(o.orders, 0) AS orders, o.gap,
               coalesce(m.monetary, 0)::DOUBLE AS monetary,
               coalesce(m.monetary_90d, 0)::DOUBLE AS monetary_90d,
               coalesce(h.hour, -1) AS hour, z.shift,
               v.viewed_price_index_90d, b.purchased_price_index, b.discount_purchase_share,
               t.category, t.affinity
        FROM person p
        LEFT JOIN span s USING (pid)
        LEFT JOIN money m USING (pid)
        LEFT JOIN order_stats o USING (pid)
        LEFT JOIN send_hour h USING (pid)
        LEFT JOIN viewed v USING (pid)
        LEFT JOIN bought b USING (pid)
        LEFT JOIN (SELECT pid, category, affinity FROM affinity WHERE rank = 1) t USING (pid)
        LEFT JOIN zone_shift z ON z.timezone = p.timezone
    )
    SELECT
        {profiled("first_ts", "first_event_ts")},
        {profiled("last_ts", "last_event_ts")},
        {profiled("(epoch_us($as_of) - epoch_us(last_ts)) / 86400e6", "days_since_last_event")},
        {profiled("monetary", "monetary")},
        {profiled("monetary_90d", "monetary_90d")},
        {profiled("orders", "orders")},
        {profiled("gap", "purchase_gap_median_days")},
        {profiled("hour", "preferred_send_hour_utc")},
        {profiled("viewed_price_index_90d", "viewed_price_index_90d")},
        {profiled("purchased_price_index", "purchased_price_index")},
        {profiled("discount_purchase_share", "discount_purchase_share")},
        {profiled("CASE WHEN orders > 0 THEN monetary / orders END", "aov")},
        {profiled("category", "top_category")},
        {profiled("affinity", "top_category_affinity")},
        {
        profiled(
            "CASE WHEN hour >= 0 AND shift IS NOT NULL THEN (hour + shift + 24) % 24 ELSE -1 END",
            "preferred_send_hour_local",
        )
    }
    FROM joined p
    ORDER BY p.r
    """
