"""Point-in-time feature snapshots: customers, items, interactions, segments, triggers.

A snapshot is computed *as of* a UTC time and reads only events strictly before
it, so a model trained on it never sees the future. The computation is SQL run by
DuckDB over three inputs (views named ``events``, ``customers`` and
``catalog_history``), whether those come from the Parquet event store
(:func:`build_snapshot`) or from DataFrames (:func:`compute_snapshot`); the SQL is
the one definition of every feature.

Windows are half-open, ``[as_of - N days, as_of)``: an event exactly N days old
counts in the N-day window and not in any shorter one.

Consent: customers without ``consent_personalization`` get a row with their
consent and subscription state only — no behavioural feature, segment, trigger
or interaction is computed for them.

Engagement score (last 30 days), documented weights::

    ln(1 + 1·opens + 3·clicks + 0.2·product views + 2·carts + 10·purchases)

Price sensitivity, from the catalog version current at ``as_of``: the price index
of an item is its list price over its category's median list price;
``viewed_price_index_90d`` and ``purchased_price_index`` average it over a customer's
product views (90 days) and purchases, and ``discount_purchase_share`` is the share of
purchases paid at least 1 % below list price.

Lifecycle stage, first match wins: ``loyal`` (more than 5 purchases in 90 days),
``new_subscriber`` (signed up within 14 days, no purchase ever), ``new`` (signed up
or first purchase within 30 days), ``active`` (a purchase within 90 days),
``at_risk`` (last purchase 90–180 days ago), ``lapsed`` (more than 180 days),
``engaged_no_purchase`` (3+ email clicks or 5+ product views in 30 days, no
purchase in 90), otherwise ``prospect``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.contracts import EVENT_TYPES
from features.errors import InputError, NotFoundError
from features.identity import Identity, resolve_identities
from features.segments import SegmentSet
from features.settings import FeatureConfig
from features.store import INGESTED_AT, EventStore, connect

logger = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 1
Progress = Callable[[str], None]

# Customer columns that may be null for a personalised customer, and why.
NULLABLE_CUSTOMER_FEATURES = {
    "country": "not given",
    "signup_ts": "not given",
    "timezone": "not given",
    "first_event_ts": "no event before as_of",
    "last_event_ts": "no event before as_of",
    "days_since_last_event": "no event before as_of",
    "first_purchase_ts": "never purchased",
    "last_purchase_ts": "never purchased",
    "recency_days": "never purchased",
    "aov": "never purchased",
    "aov_percentile": "never purchased",
    "purchase_gap_median_days": "fewer than two orders",
    "email_open_rate_90d": "no email sent in 90 days",
    "email_click_rate_90d": "no email sent in 90 days",
    "viewed_price_index_90d": "no product view of a priced, categorised item in 90 days",
    "purchased_price_index": "never purchased a priced, categorised item",
    "discount_purchase_share": "never purchased a priced, catalogued item at a known price",
    "top_category": "no interaction with a catalogued item",
    "top_category_affinity": "no interaction with a catalogued item",
    "preferred_send_hour_local": "timezone unknown",
    "consent_updated_ts": "not given",
}


@dataclass
class Snapshot:
    """Every table of one feature snapshot.

    Attributes
    ----------
    as_of : datetime
        UTC; only events strictly before it were read.
    customers : pandas.DataFrame
        One row per canonical customer.
    items : pandas.DataFrame
        One row per item (catalog or seen in events).
    category_affinity : pandas.DataFrame
        ``customer_id, category, affinity, rank``: decayed, weighted share.
    interactions : scipy.sparse.csr_matrix of float32, shape (n_users, n_items)
        Event-weighted, time-decayed interaction strength.
    user_ids, item_ids : numpy.ndarray of str
        Row and column ids of ``interactions``.
    segments : pandas.DataFrame
        ``customer_id, segment``: one row per membership.
    triggers : pandas.DataFrame
        ``customer_id, trigger, item_id, fired_at, expires_at``: active at ``as_of``.
    identity : Identity
        The id mapping and the recorded conflicts.
    manifest : dict
        Row counts, feature lists, configuration and lineage.
    """

    as_of: datetime
    customers: pd.DataFrame
    items: pd.DataFrame
    category_affinity: pd.DataFrame
    interactions: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    segments: pd.DataFrame
    triggers: pd.DataFrame
    identity: Identity
    manifest: dict[str, Any] = field(default_factory=dict)


def behaviour_feature_names(config: FeatureConfig) -> list[str]:
    """Names of the customer features a segment may use (the behavioural profile)."""
    counts = [f"{t}_{w}d" for t in EVENT_TYPES for w in config.windows_days]
    return [
        "country",
        "signup_ts",
        "timezone",
        "first_event_ts",
        "last_event_ts",
        "days_since_last_event",
        "first_purchase_ts",
        "last_purchase_ts",
        "recency_days",
        "frequency",
        "orders",
        "monetary",
        "monetary_90d",
        "aov",
        "aov_percentile",
        "purchase_gap_median_days",
        "viewed_price_index_90d",
        "purchased_price_index",
        "discount_purchase_share",
        *counts,
        "email_open_rate_90d",
        "email_click_rate_90d",
        "engagement_score",
        "top_category",
        "top_category_affinity",
        "lifecycle",
        "preferred_send_hour_utc",
        "preferred_send_hour_local",
    ]


CONSENT_COLUMNS = [
    "customer_id",
    "personalised",
    "consent_email",
    "consent_personalization",
    "consent_updated_ts",
    "unsubscribed",
    "sendable",
]


# --------------------------------------------------------------------------- entry points
def build_snapshot(
    store: EventStore,
    *,
    as_of: datetime,
    config: FeatureConfig,
    segments: SegmentSet,
    phone_region: str = "US",
    progress: Progress | None = None,
) -> Snapshot:
    """Compute a snapshot from the event store (DuckDB over its Parquet files)."""
    if not store.files("events"):
        raise NotFoundError(f"no events in the store at {store.root}; run `tailor ingest` first")
    con = connect()
    try:
        store.register(con, "events", "events")
        store.register(con, "customers", "customers_history")
        con.execute(
            f"CREATE VIEW customers AS SELECT * FROM customers_history QUALIFY row_number() "
            f"OVER (PARTITION BY customer_id ORDER BY {INGESTED_AT} DESC) = 1"
        )
        store.register(con, "catalog", "catalog_history")
        snapshot = _compute(con, as_of, config, segments, phone_region, progress)
        snapshot.manifest["store_batches"] = len(store._history())
        return snapshot
    finally:
        con.close()


def compute_snapshot(
    events: pd.DataFrame,
    *,
    as_of: datetime,
    config: FeatureConfig,
    segments: SegmentSet,
    customers: pd.DataFrame | None = None,
    catalog_history: pd.DataFrame | None = None,
    phone_region: str = "US",
) -> Snapshot:
    """Compute a snapshot from DataFrames in the contract formats (typed).

    ``catalog_history`` may carry ``_ingested_at`` (one row per catalog version);
    without it every row counts as ingested at the epoch.
    """
    from features.contracts import CATALOG, CUSTOMERS, EVENTS

    con = connect()
    try:
        con.register("events", _conform(events, EVENTS.arrow_schema()))
        con.register("customers", _conform(customers, CUSTOMERS.arrow_schema(), keep_extra=False))
        history = _conform(catalog_history, CATALOG.arrow_schema())
        if INGESTED_AT not in history.column_names:
            import pyarrow as pa

            history = history.append_column(
                INGESTED_AT,
                pa.array(
                    [datetime(1970, 1, 1, tzinfo=UTC)] * history.num_rows,
                    pa.timestamp("us", tz="UTC"),
                ),
            )
        con.register("catalog_history", history)
        return _compute(con, as_of, config, segments, phone_region, None)
    finally:
        con.close()


def _conform(frame: pd.DataFrame | None, schema: Any, keep_extra: bool = True) -> Any:
    import pyarrow as pa

    if frame is None:
        return schema.empty_table()
    frame = frame.copy()
    for name in schema.names:
        if name not in frame.columns:
            frame[name] = None
    columns = list(schema.names) + (
        [c for c in frame.columns if c not in schema.names] if keep_extra else []
    )
    fields = [schema.field(n) for n in schema.names]
    extra = [pa.field(c, pa.timestamp("us", tz="UTC")) for c in columns[len(fields) :]]
    return pa.Table.from_pandas(
        frame[columns], schema=pa.schema(fields + extra), preserve_index=False
    )


# --------------------------------------------------------------------------- computation
def _compute(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    config: FeatureConfig,
    segments: SegmentSet,
    phone_region: str,
    progress: Progress | None,
) -> Snapshot:
    if as_of.tzinfo is None:
        raise InputError("as_of", as_of, "must be timezone-aware (UTC)")
    as_of = as_of.astimezone(UTC)
    started = time.perf_counter()

    def step(message: str) -> None:
        if progress is not None:
            progress(f"{message} ({time.perf_counter() - started:.1f} s)")

    params = {"as_of": as_of}
    # Identity: customer records + login/identify links before as_of.
    con.execute(
        "CREATE TEMP TABLE customer_records AS SELECT *, "
        "json_extract_string(attributes, '$.timezone') AS timezone FROM customers"
    )
    customers = con.execute("SELECT customer_id, email, phone FROM customer_records").df()
    # One scan for both: every customer id seen, with the anonymous ids it logged in from.
    con.execute(
        "CREATE TEMP TABLE seen AS SELECT DISTINCT customer_id, CASE WHEN event_type IN "
        "('login', 'identify') THEN anonymous_id END AS anonymous_id "
        "FROM events WHERE ts < $as_of AND customer_id IS NOT NULL",
        params,
    )
    links = con.execute("SELECT * FROM seen WHERE anonymous_id IS NOT NULL").df()
    seen = con.execute("SELECT DISTINCT customer_id FROM seen").df()["customer_id"]
    identity = resolve_identities(
        customers, links, extra_customer_ids=seen, phone_region=phone_region
    )
    con.register("idmap", identity.mapping)
    step("identity resolved")

    base = _consent_base(con, config)
    con.register("people", base)
    # Events carry a person number (``pid``, the rank of the canonical id) instead of
    # the id: every aggregate below groups and joins on integers, and the string id
    # comes back from ``person`` only in the (small) outputs. pid order is id order.
    con.execute(
        "CREATE TEMP TABLE person AS SELECT (row_number() OVER (ORDER BY customer_id) - 1)"
        "::INTEGER AS pid, customer_id, personalised FROM people"
    )
    # One lookup for every id an event may carry; one join resolves it.
    con.execute(
        """
        CREATE TEMP TABLE ids AS
        SELECT m.source_type = 'customer' AS is_customer, m.source_id, p.pid, p.personalised
        FROM idmap m JOIN person p ON p.customer_id = m.canonical_id
        WHERE m.source_type IN ('customer', 'anonymous')
        """
    )
    con.execute(
        """
        CREATE TEMP TABLE ev AS
        SELECT e.ts, e.event_type, e.item_id, e.price, e.quantity,
               CASE WHEN e.event_type = 'purchase' THEN coalesce(e.order_id, e.event_id) END
                   AS order_key,
               CASE WHEN e.event_type = 'stock_change' THEN e.properties END AS properties,
               i.pid, coalesce(i.personalised, false) AS personal,
               (epoch_us($as_of) - epoch_us(e.ts)) / 86400e6 AS age_days
        FROM events e
        LEFT JOIN ids i ON i.is_customer = (e.customer_id IS NOT NULL)
                       AND i.source_id = coalesce(e.customer_id, e.anonymous_id)
        WHERE e.ts < $as_of
        """,
        params,
    )
    # Only customers who consented to personalisation are profiled.
    con.execute("CREATE TEMP VIEW evp AS SELECT * FROM ev WHERE personal")
    # Unsubscribes decide sendability for everyone, consented to profiling or not.
    unsub = con.execute(
        "SELECT customer_id, last_unsubscribe_ts FROM person JOIN (SELECT pid, max(ts) "
        "AS last_unsubscribe_ts FROM ev WHERE event_type = 'unsubscribe' GROUP BY pid) "
        "USING (pid)"
    ).df()
    base = _apply_unsubscribes(base, unsub)
    con.execute(
        f"""
        CREATE TEMP TABLE catalog_now AS
        SELECT * FROM catalog_history
        -- The version current at as_of; an item first catalogued later (a backfill
        -- against today's catalog) keeps its earliest version.
        QUALIFY row_number() OVER (
            PARTITION BY item_id
            ORDER BY {INGESTED_AT} < $as_of DESC,
                     CASE WHEN {INGESTED_AT} < $as_of THEN -epoch_us({INGESTED_AT})
                          ELSE epoch_us({INGESTED_AT}) END
        ) = 1
        """,
        params,
    )
    events_read = con.execute("SELECT count(*) FROM ev").fetchone()
    step("events read")

    behaviour = _customer_behaviour(con, config, params)
    behaviour = behaviour.merge(_price_sensitivity(con), on="customer_id", how="left")
    affinity = con.execute(_affinity_sql(config)).df()
    step("customer features")
    customers_out = _customer_table(base, behaviour, affinity, as_of, config.windows_days)
    items = _item_features(con)
    step("item features")
    interactions, user_ids, item_ids = _interactions(con, config, items)
    step("interaction matrix")
    personal = customers_out[customers_out["personalised"]]
    memberships = segments.evaluate(personal)
    triggers = _triggers(con, config, params)
    step("segments and triggers")

    manifest = {
        "format": SNAPSHOT_FORMAT,
        "as_of": as_of.isoformat(),
        "created_at": datetime.now(UTC).isoformat(),
        "events_read": int(events_read[0]) if events_read else 0,
        "rows": {
            "customers": len(customers_out),
            "personalised_customers": int(customers_out["personalised"].sum()),
            "items": len(items),
            "category_affinity": len(affinity),
            "interactions_nnz": int(interactions.nnz),
            "segments": len(memberships),
            "triggers": len(triggers),
            "identity": len(identity.mapping),
            "identity_conflicts": len(identity.conflicts),
        },
        "features": {
            "customers": _schema(customers_out),
            "items": _schema(items),
        },
        "segments": {s.name: s.expression for s in segments.segments},
        "segment_sizes": memberships["segment"].value_counts().to_dict(),
        "trigger_counts": triggers["trigger"].value_counts().to_dict(),
        "config": json.loads(config.model_dump_json()),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return Snapshot(
        as_of=as_of,
        customers=customers_out,
        items=items,
        category_affinity=affinity,
        interactions=interactions,
        user_ids=user_ids,
        item_ids=item_ids,
        segments=memberships,
        triggers=triggers,
        identity=identity,
        manifest=manifest,
    )


def _schema(frame: pd.DataFrame) -> dict[str, str]:
    return {str(c): str(t) for c, t in frame.dtypes.items()}


def _consent_base(con: duckdb.DuckDBPyConnection, config: FeatureConfig) -> pd.DataFrame:
    """One row per canonical customer with consent state (conservative merge).

    A person consents only if every record of theirs does; a missing value is no
    consent. Country and timezone come from the canonical record. A person with no
    customer record at all gets ``assume_consent_when_unknown``.
    """
    default = "true" if config.assume_consent_when_unknown else "false"
    people = con.execute(
        f"""
        WITH rec AS (
            SELECT m.canonical_id, c.*,
                   CASE WHEN c.customer_id = m.canonical_id THEN '' ELSE c.customer_id END
                       AS pick
            FROM customer_records c
            JOIN idmap m ON m.source_type = 'customer' AND m.source_id = c.customer_id
        ), grouped AS (
            SELECT canonical_id,
                   bool_and(coalesce(consent_email, false)) AS consent_email,
                   bool_and(coalesce(consent_personalization, false))
                       AS consent_personalization,
                   max(consent_updated_ts) AS consent_updated_ts,
                   min(signup_ts) AS signup_ts,
                   arg_min(country, pick) AS country,
                   arg_min(timezone, pick) AS timezone
            FROM rec GROUP BY canonical_id
        )
        SELECT p.customer_id,
               coalesce(g.consent_email, {default}) AS consent_email,
               coalesce(g.consent_personalization, {default}) AS consent_personalization,
               g.consent_updated_ts, g.signup_ts, g.country, g.timezone
        FROM (SELECT DISTINCT canonical_id AS customer_id FROM idmap
              WHERE source_type = 'customer') p
        LEFT JOIN grouped g ON g.canonical_id = p.customer_id
        ORDER BY p.customer_id
        """
    ).df()
    people["personalised"] = people["consent_personalization"]
    return people


def _apply_unsubscribes(people: pd.DataFrame, unsub: pd.DataFrame) -> pd.DataFrame:
    people = people.drop(columns=["unsubscribed", "sendable"], errors="ignore")
    last = pd.to_datetime(
        people[["customer_id"]].merge(unsub, on="customer_id", how="left")["last_unsubscribe_ts"],
        utc=True,
    ).set_axis(people.index)
    # A consent update after the unsubscribe is a re-subscription.
    resubscribed = (people["consent_updated_ts"] > last).fillna(False)
    people["unsubscribed"] = (last.notna() & ~resubscribed).astype(bool)
    people["sendable"] = people["consent_email"] & ~people["unsubscribed"]
    return people


def _weight_case(weights: dict[str, float]) -> str:
    whens = " ".join(f"WHEN '{t}' THEN {float(w)!r}" for t, w in sorted(weights.items()))
    return f"(CASE event_type {whens} ELSE 0.0 END)"


def _customer_behaviour(
    con: duckdb.DuckDBPyConnection, config: FeatureConfig, params: dict[str, Any]
) -> pd.DataFrame:
    """Behavioural aggregates per customer: one pass over the events into a narrow
    (customer, event type) table, then everything per customer from that.

    The window counts (one column per event type and window) are that narrow table
    laid out wide by a numpy scatter on (person, event type): a reshape, no
    arithmetic, and much cheaper than some 65 filtered sums in one SQL aggregate."""
    windows = sorted(set(config.windows_days) | {30, 90})
    con.execute(
        "CREATE TEMP TABLE per_type AS SELECT pid, event_type, count(*) AS n, "
        + "".join(f"count_if(age_days <= {w}) AS w{w}, " for w in windows)
        + "min(ts) AS first_ts, max(ts) AS last_ts, "
        "sum(coalesce(price, 0) * coalesce(quantity, 1)) AS value, "
        "coalesce(sum(coalesce(price, 0) * coalesce(quantity, 1)) "
        "FILTER (WHERE age_days <= 90), 0) AS value_90d "
        "FROM evp GROUP BY pid, event_type"
    )

    def of(event_type: str, column: str) -> str:
        return f"coalesce(sum({column}) FILTER (WHERE event_type = '{event_type}'), 0)"

    frame = con.execute(
        f"""
        WITH orders AS (
            SELECT pid, order_key, min(ts) AS ts
            FROM evp WHERE event_type = 'purchase' GROUP BY pid, order_key
        ), order_stats AS (
            SELECT pid, count(*) AS orders, median(gap) AS gap FROM (
                SELECT pid, (epoch(ts) - epoch(lag(ts) OVER (PARTITION BY pid ORDER BY ts)))
                       / 86400.0 AS gap
                FROM orders)
            GROUP BY pid
        ), hours AS (
            SELECT pid, hour(ts) AS hr,
                   count_if(event_type IN ('email_open', 'email_click')) AS n_email,
                   count(*) AS n_all
            FROM evp GROUP BY pid, hr
        ), send_hour AS (
            SELECT pid,
                   CASE WHEN max(n_email) > 0 THEN arg_max(hr, n_email * 24 + (23 - hr))
                        ELSE arg_max(hr, n_all * 24 + (23 - hr)) END AS preferred_send_hour_utc
            FROM hours GROUP BY pid
        ), per_customer AS (
            SELECT pid,
                   min(first_ts) AS first_event_ts,
                   max(last_ts) AS last_event_ts,
                   (epoch_us($as_of) - epoch_us(max(last_ts))) / 86400e6
                       AS days_since_last_event,
                   min(first_ts) FILTER (WHERE event_type = 'purchase') AS first_purchase_ts,
                   max(last_ts) FILTER (WHERE event_type = 'purchase') AS last_purchase_ts,
                   (epoch_us($as_of)
                    - epoch_us(max(last_ts) FILTER (WHERE event_type = 'purchase'))) / 86400e6
                       AS recency_days,
                   {of("purchase", "n")}::BIGINT AS frequency,
                   {of("purchase", "value")}::DOUBLE AS monetary,
                   {of("purchase", "value_90d")}::DOUBLE AS monetary_90d,
                   {of("email_sent", "w90")}::BIGINT AS _sends_90d,
                   {of("email_open", "w90")}::BIGINT AS _opens_90d,
                   {of("email_click", "w90")}::BIGINT AS _clicks_90d,
                   ln(1 + {of("email_open", "w30")} + 3 * {of("email_click", "w30")}
                        + 0.2 * {of("product_view", "w30")} + 2 * {of("add_to_cart", "w30")}
                        + 10 * {of("purchase", "w30")}) AS engagement_score
            FROM per_type GROUP BY pid
        )
        SELECT p.customer_id, c.*, coalesce(o.orders, 0) AS orders,
               o.gap AS purchase_gap_median_days, h.preferred_send_hour_utc
        FROM per_customer c
        JOIN person p USING (pid)
        LEFT JOIN order_stats o USING (pid)
        LEFT JOIN send_hour h USING (pid)
        """,
        params,
    ).df()
    types = ", ".join(f"'{t}'" for t in EVENT_TYPES)
    narrow = con.execute(
        f"SELECT pid, list_position([{types}], event_type) - 1 AS type, "
        + ", ".join(f"w{w}" for w in config.windows_days)
        + f" FROM per_type WHERE event_type IN ({types})"
    ).fetchnumpy()
    people = con.execute("SELECT count(*) FROM person").fetchone()
    wide = np.zeros(
        (people[0] if people else 0, len(EVENT_TYPES), len(config.windows_days)), dtype=np.int64
    )
    wide[narrow["pid"], narrow["type"]] = np.column_stack(
        [narrow[f"w{w}"] for w in config.windows_days]
    )
    names = [f"{t}_{w}d" for t in EVENT_TYPES for w in config.windows_days]
    counts = pd.DataFrame(
        wide[frame.pop("pid").to_numpy()].reshape(len(frame), len(names)),
        columns=names,
        index=frame.index,
    )
    at = list(frame.columns).index("engagement_score") + 1  # where the SQL had them
    return pd.concat([frame.iloc[:, :at], counts, frame.iloc[:, at:]], axis=1)


def _price_sensitivity(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Observable price sensitivity per customer, from the catalog current at as_of.

    A price index is an item's list price over the median list price of its category
    (1.0: typical; 0.8: a fifth cheaper than typical), so customers who shop different
    categories compare. ``viewed_price_index_90d`` is its mean over the product views
    of the last 90 days, ``purchased_price_index`` over all purchases;
    ``discount_purchase_share`` is the share of purchases (with a known paid price)
    paid at least 1 % below the item's list price — bought on a discount or offer.
    """
    return con.execute(
        """
        WITH medians AS (
            SELECT category, median(price) AS median_price FROM catalog_now
            WHERE category IS NOT NULL AND price > 0 GROUP BY category
        ), priced AS (
            SELECT e.pid, e.event_type, e.age_days, e.price AS paid, c.price AS list_price,
                   c.price / m.median_price AS price_index
            FROM evp e
            JOIN catalog_now c ON e.item_id = c.item_id
            JOIN medians m ON m.category = c.category
            WHERE e.event_type IN ('product_view', 'purchase') AND c.price > 0
        )
        SELECT p.customer_id,
               avg(price_index) FILTER (WHERE event_type = 'product_view' AND age_days <= 90)
                   AS viewed_price_index_90d,
               avg(price_index) FILTER (WHERE event_type = 'purchase')
                   AS purchased_price_index,
               avg(CASE WHEN paid < 0.99 * list_price THEN 1.0 ELSE 0.0 END)
                   FILTER (WHERE event_type = 'purchase' AND paid IS NOT NULL)
                   AS discount_purchase_share
        FROM priced JOIN person p USING (pid)
        GROUP BY p.customer_id
        """
    ).df()


def _affinity_sql(config: FeatureConfig) -> str:
    weight = _weight_case(config.interaction_weights)
    return f"""
        WITH w AS (
            SELECT e.pid, c.category,
                   sum({weight} * pow(0.5, e.age_days / {config.half_life_days!r})) AS w
            FROM evp e JOIN catalog_now c ON e.item_id = c.item_id
            WHERE c.category IS NOT NULL
            GROUP BY e.pid, c.category
            HAVING w > 0
        )
        SELECT p.customer_id, w.category, w.w / sum(w.w) OVER (PARTITION BY w.pid) AS affinity,
               row_number() OVER (PARTITION BY w.pid ORDER BY w.w DESC, w.category) AS rank
        FROM w JOIN person p USING (pid)
        ORDER BY w.pid, rank
    """


def _customer_table(
    base: pd.DataFrame,
    behaviour: pd.DataFrame,
    affinity: pd.DataFrame,
    as_of: datetime,
    windows: tuple[int, ...],
) -> pd.DataFrame:
    table = base.merge(behaviour, on="customer_id", how="left")
    personal = table["personalised"].to_numpy()
    count_columns = [f"{t}_{w}d" for t in EVENT_TYPES for w in windows]
    count_columns += ["frequency", "orders", "_sends_90d", "_opens_90d", "_clicks_90d"]
    for column in count_columns:
        table[column] = pd.to_numeric(table[column]).fillna(0).astype("Int64")
    for column in ("monetary", "monetary_90d", "engagement_score"):
        table[column] = table[column].fillna(0.0).astype("float64")
    sends = table["_sends_90d"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        table["email_open_rate_90d"] = np.where(sends > 0, table["_opens_90d"] / sends, np.nan)
        table["email_click_rate_90d"] = np.where(sends > 0, table["_clicks_90d"] / sends, np.nan)
        table["aov"] = np.where(table["orders"] > 0, table["monetary"] / table["orders"], np.nan)
    buyers = table["aov"].notna() & table["personalised"]
    table["aov_percentile"] = np.nan
    table.loc[buyers, "aov_percentile"] = (
        table.loc[buyers, "aov"].round(2).rank(pct=True, method="max")
    )
    table["days_since_last_event"] = table["days_since_last_event"].astype("float64")

    top = affinity[affinity["rank"] == 1].set_index("customer_id")
    table["top_category"] = table["customer_id"].map(top["category"])
    table["top_category_affinity"] = table["customer_id"].map(top["affinity"]).astype("float64")
    table["lifecycle"] = _lifecycle(table, as_of)
    hour = table["preferred_send_hour_utc"]
    table["preferred_send_hour_utc"] = hour.fillna(-1).astype("Int64")
    table["preferred_send_hour_local"] = _local_hours(
        table["preferred_send_hour_utc"], table["timezone"], as_of
    )
    table = table.drop(columns=["_sends_90d", "_opens_90d", "_clicks_90d"])
    # No behavioural profile without consent: only consent and subscription state.
    behavioural = [c for c in table.columns if c not in CONSENT_COLUMNS]
    for column in behavioural:
        table[column] = table[column].where(personal)
    ordered = CONSENT_COLUMNS + [c for c in table.columns if c not in CONSENT_COLUMNS]
    return table[ordered].sort_values("customer_id", ignore_index=True)


def _lifecycle(table: pd.DataFrame, as_of: datetime) -> np.ndarray:
    """Lifecycle stage per customer; see the module docstring for the rules."""
    now = pd.Timestamp(as_of)
    recency = table["recency_days"].to_numpy(dtype=float, na_value=np.nan)
    bought = ~np.isnan(recency)
    signup_age = ((now - table["signup_ts"]).dt.total_seconds() / 86400).to_numpy(
        dtype=float, na_value=np.nan
    )
    first_purchase_age = ((now - table["first_purchase_ts"]).dt.total_seconds() / 86400).to_numpy(
        dtype=float, na_value=np.nan
    )
    recent_buyer = bought & (recency <= 90)
    engaged = ((table["email_click_30d"] >= 3) | (table["product_view_30d"] >= 5)).to_numpy()
    conditions = [
        table["purchase_90d"].to_numpy() > 5,
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


def _local_hours(utc_hours: pd.Series, timezones: pd.Series, as_of: datetime) -> pd.Series:
    """The UTC send hour in the customer's own zone (on the as_of date); -1 if unknown."""
    out = pd.Series(-1, index=utc_hours.index, dtype="Int64")
    day = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    for tz in timezones.dropna().unique():
        try:
            zone = ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            continue
        rows = (timezones == tz).to_numpy() & (utc_hours >= 0).to_numpy()
        offset = day.astimezone(zone).utcoffset()
        shift = int(offset.total_seconds() // 3600) if offset is not None else 0
        out[rows] = (utc_hours[rows] + shift) % 24
    return out


def _item_features(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    items = con.execute(
        """
        WITH stats AS (
            SELECT item_id,
                   count_if(event_type = 'product_view' AND age_days <= 7) AS views_7d,
                   count_if(event_type = 'product_view' AND age_days <= 30) AS views_30d,
                   count_if(event_type = 'add_to_cart' AND age_days <= 7) AS carts_7d,
                   count_if(event_type = 'add_to_cart' AND age_days <= 30) AS carts_30d,
                   count_if(event_type = 'purchase' AND age_days <= 7) AS purchases_7d,
                   count_if(event_type = 'purchase' AND age_days <= 30) AS purchases_30d,
                   count(DISTINCT pid) FILTER (WHERE age_days <= 30) AS buyers_or_viewers_30d,
                   max(ts) AS last_event_ts
            FROM ev WHERE item_id IS NOT NULL AND event_type <> 'stock_change'
            GROUP BY item_id
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
        """
    ).df()
    return items


def _interactions(
    con: duckdb.DuckDBPyConnection, config: FeatureConfig, items: pd.DataFrame
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    weight = _weight_case(config.interaction_weights)
    item_ids = items["item_id"].astype(str).to_numpy()
    con.register("item_pos", pd.DataFrame({"item_id": item_ids, "col": np.arange(len(item_ids))}))
    con.execute(
        f"""
        CREATE TEMP TABLE pairs AS
        SELECT pid, item_id,
               sum({weight} * pow(0.5, age_days / {config.half_life_days!r})) AS w
        FROM evp WHERE item_id IS NOT NULL AND event_type <> 'stock_change'
        GROUP BY pid, item_id HAVING w > 0
        """
    )
    # Rows are customers in id order; dense_rank over the same order gives the row.
    user_ids = con.execute(
        "SELECT customer_id FROM person WHERE pid IN (SELECT pid FROM pairs) ORDER BY pid"
    ).fetchnumpy()["customer_id"]
    coo = con.execute(
        "SELECT dense_rank() OVER (ORDER BY p.pid) - 1 AS r, x.col AS c, p.w "
        "FROM pairs p JOIN item_pos x ON p.item_id = x.item_id"
    ).fetchnumpy()
    matrix = sp.csr_matrix(
        (np.asarray(coo["w"], dtype=np.float32), (np.asarray(coo["r"]), np.asarray(coo["c"]))),
        shape=(len(user_ids), len(item_ids)),
        dtype=np.float32,
    )
    matrix.sort_indices()
    return matrix, np.asarray(user_ids, dtype=str), item_ids


def _triggers(
    con: duckdb.DuckDBPyConnection, config: FeatureConfig, params: dict[str, Any]
) -> pd.DataFrame:
    t = config.triggers
    ttl = {name: hours * 3600.0 for name, hours in t.ttl_hours.items()}
    sql = f"""
    WITH carts AS (
        SELECT pid, item_id, max(ts) AS cart_ts FROM evp
        WHERE event_type = 'add_to_cart' GROUP BY pid, item_id
    ), cart AS (
        SELECT 'cart_abandoned' AS trigger, c.pid, c.item_id,
               c.cart_ts + to_seconds({t.cart_abandon_hours * 3600.0!r}) AS fired_at,
               c.cart_ts + to_seconds({t.cart_abandon_hours * 3600.0 + ttl["cart_abandoned"]!r})
                   AS expires_at
        FROM carts c
        WHERE NOT EXISTS (
            SELECT 1 FROM evp p WHERE p.pid = c.pid AND p.item_id = c.item_id
              AND p.event_type IN ('purchase', 'remove_from_cart') AND p.ts > c.cart_ts)
    ), views AS (
        SELECT pid, item_id, ts,
               row_number() OVER (PARTITION BY pid, item_id ORDER BY ts) AS n,
               min(ts) OVER (PARTITION BY pid, item_id) AS first_view
        FROM evp WHERE event_type = 'product_view' AND age_days <= {t.browse_lookback_days!r}
    ), browse AS (
        SELECT 'browse_abandoned' AS trigger, v.pid, v.item_id,
               v.ts + to_seconds({t.browse_abandon_hours * 3600.0!r}) AS fired_at,
               v.ts + to_seconds({t.browse_abandon_hours * 3600.0 + ttl["browse_abandoned"]!r})
                   AS expires_at
        FROM views v
        WHERE v.n = {t.browse_min_views}
          AND NOT EXISTS (
            SELECT 1 FROM evp p WHERE p.pid = v.pid AND p.item_id = v.item_id
              AND p.event_type IN ('add_to_cart', 'purchase') AND p.ts >= v.first_view)
    ), orders AS (
        SELECT pid, order_key, min(ts) AS ts FROM evp
        WHERE event_type = 'purchase' GROUP BY pid, order_key
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
    ), stock AS (
        SELECT item_id, ts, json_extract_string(properties, '$.in_stock') IN ('true', '1')
               AS in_stock
        FROM ev WHERE event_type = 'stock_change'
        UNION ALL
        SELECT item_id, {INGESTED_AT} AS ts, in_stock FROM catalog_history
        WHERE in_stock IS NOT NULL AND {INGESTED_AT} < $as_of
    ), stock_seq AS (
        SELECT item_id, ts, in_stock,
               lag(in_stock) OVER (PARTITION BY item_id ORDER BY ts) AS was_in_stock,
               row_number() OVER (PARTITION BY item_id ORDER BY ts DESC) AS latest
        FROM stock
    ), restocks AS (
        SELECT item_id, max(ts) AS restock_ts FROM stock_seq
        WHERE in_stock AND was_in_stock = false GROUP BY item_id
    ), still_in_stock AS (
        SELECT item_id FROM stock_seq WHERE latest = 1 AND in_stock
    ), back AS (
        SELECT DISTINCT 'back_in_stock' AS trigger, v.pid, r.item_id,
               r.restock_ts AS fired_at,
               r.restock_ts + to_seconds({ttl["back_in_stock"]!r}) AS expires_at
        FROM restocks r
        JOIN still_in_stock s ON s.item_id = r.item_id
        JOIN evp v ON v.item_id = r.item_id AND v.event_type = 'product_view'
             AND v.ts < r.restock_ts
             AND v.ts >= r.restock_ts - to_seconds({t.back_in_stock_lookback_days * 86400.0!r})
        WHERE NOT EXISTS (
            SELECT 1 FROM evp p WHERE p.pid = v.pid AND p.item_id = r.item_id
              AND p.event_type = 'purchase' AND p.ts >= r.restock_ts)
    ), fired AS (
        SELECT * FROM cart UNION ALL SELECT * FROM browse
        UNION ALL SELECT * FROM lapsing UNION ALL SELECT * FROM back
    )
    SELECT p.customer_id, f.trigger, f.item_id, f.fired_at, f.expires_at
    FROM fired f JOIN person p USING (pid)
    WHERE fired_at <= $as_of AND expires_at > $as_of
    ORDER BY customer_id, trigger, item_id
    """
    return con.execute(sql, params).df()


# --------------------------------------------------------------------------- persistence
def snapshot_dir(root: Path, as_of: datetime) -> Path:
    """``root/as_of=YYYY-MM-DDTHH:MM:SSZ``."""
    return Path(root) / f"as_of={as_of.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def write_snapshot(snapshot: Snapshot, root: Path) -> Path:
    """Write every table atomically (a temporary folder renamed into place)."""
    final = snapshot_dir(root, snapshot.as_of)
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    snapshot.customers.to_parquet(tmp / "customers.parquet", index=False)
    snapshot.items.to_parquet(tmp / "items.parquet", index=False)
    snapshot.category_affinity.to_parquet(tmp / "category_affinity.parquet", index=False)
    snapshot.segments.to_parquet(tmp / "segments.parquet", index=False)
    snapshot.triggers.to_parquet(tmp / "triggers.parquet", index=False)
    snapshot.identity.mapping.to_parquet(tmp / "identity.parquet", index=False)
    snapshot.identity.conflicts.to_parquet(tmp / "identity_conflicts.parquet", index=False)
    sp.save_npz(tmp / "interactions.npz", snapshot.interactions)
    pd.DataFrame({"customer_id": snapshot.user_ids}).to_parquet(tmp / "users.parquet")
    pd.DataFrame({"item_id": snapshot.item_ids}).to_parquet(tmp / "item_index.parquet")
    (tmp / "manifest.json").write_text(json.dumps(snapshot.manifest, indent=2, default=str))
    if final.exists():
        old = final.with_name(final.name + f".old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    return final


def latest_snapshot(root: Path) -> Path:
    """The newest complete snapshot folder under ``root``."""
    folders = sorted(
        p for p in Path(root).glob("as_of=*") if p.is_dir() and (p / "manifest.json").exists()
    )
    if not folders:
        raise NotFoundError(f"no feature snapshot under {root}; run `tailor features build`")
    return folders[-1]


def load_snapshot(path: Path) -> Snapshot:
    """Read a snapshot written by :func:`write_snapshot`."""
    path = Path(path)
    manifest = json.loads((path / "manifest.json").read_text())
    if manifest.get("format") != SNAPSHOT_FORMAT:
        raise InputError("snapshot format", manifest.get("format"), f"expected {SNAPSHOT_FORMAT}")
    return Snapshot(
        as_of=datetime.fromisoformat(manifest["as_of"]),
        customers=pd.read_parquet(path / "customers.parquet"),
        items=pd.read_parquet(path / "items.parquet"),
        category_affinity=pd.read_parquet(path / "category_affinity.parquet"),
        interactions=sp.load_npz(path / "interactions.npz").tocsr(),
        user_ids=pd.read_parquet(path / "users.parquet")["customer_id"].to_numpy(dtype=str),
        item_ids=pd.read_parquet(path / "item_index.parquet")["item_id"].to_numpy(dtype=str),
        segments=pd.read_parquet(path / "segments.parquet"),
        triggers=pd.read_parquet(path / "triggers.parquet"),
        identity=Identity(
            pd.read_parquet(path / "identity.parquet"),
            pd.read_parquet(path / "identity_conflicts.parquet"),
        ),
        manifest=manifest,
    )
