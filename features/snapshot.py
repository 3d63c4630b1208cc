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
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from features.contracts import EVENT_TYPES
from features.errors import InputError, NotFoundError, WriteFailed
from features.identity import CONFLICT_COLUMNS, LINK_COLUMNS, Identity, resolve_identities
from features.identity_match import TrainedMatchers, personal_keys
from features.identity_overrides import Override, load_overrides
from features.locks import exclusive_lock
from features.progress import Progress
from features.segments import SegmentSet
from features.settings import FeatureConfig
from features.store import INGESTED_AT, STRING_DTYPE, EventStore, connect, fetch_frame

logger = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 1

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
    write_to: Path | None = None,
    matchers: TrainedMatchers | None = None,
    lock_timeout: float | None = None,
) -> Snapshot:
    """Compute a snapshot from the event store (DuckDB over its Parquet files).

    ``write_to``: also write it under this folder (as :func:`write_snapshot` does),
    each table in the background as soon as it is computed; the folder appears,
    complete, when this returns (``manifest["path"]``). ``matchers``: share one
    trained identity matcher among the builds of one job (see
    :class:`features.identity_match.TrainedMatchers`). Identity overrides kept
    beside the store apply.

    One build writes under ``write_to`` at a time (the lock ``write_to/.lock``); a
    second waits up to ``lock_timeout`` seconds (``None``: as long as it takes),
    then fails with :class:`~features.errors.JobFailed`. A folder that cannot be
    written fails with :class:`~features.errors.WriteFailed`, earlier snapshots
    untouched.
    """
    if not store.files("events"):
        raise NotFoundError(f"no events in the store at {store.root}; run `tailor ingest` first")
    con = connect()
    writer = (
        _SnapshotWriter(write_to, as_of, lock_timeout=lock_timeout)
        if write_to is not None
        else None
    )
    try:
        store.register(con, "events", "events")
        store.register(con, "customers", "customers_history")
        con.execute(_customers_as_of_sql(as_of))
        store.register(con, "catalog", "catalog_history")
        overrides = load_overrides(store.root)
        snapshot = _compute(
            con, as_of, config, segments, phone_region, progress, writer, overrides, matchers
        )
        snapshot.manifest["store_batches"] = len(store._history())
        if writer is not None:
            snapshot.manifest["path"] = str(writer.finish(snapshot.manifest))
        return snapshot
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
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
            history = history.append_column(
                INGESTED_AT,
                pa.array(
                    [datetime(1970, 1, 1, tzinfo=UTC)] * history.num_rows,
                    pa.timestamp("us", tz="UTC"),
                ),
            )
        con.register("catalog_history", history)
        return _compute(con, as_of, config, segments, phone_region, None, None)
    finally:
        con.close()


def _conform(frame: pd.DataFrame | None, schema: Any, keep_extra: bool = True) -> Any:
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


def _customers_as_of_sql(as_of: datetime) -> str:
    """The view ``customers``: each customer's record as it stood at ``as_of``.

    The store keeps every ingested version of a record. A version takes effect at its
    ``consent_updated_ts`` (else when it was ingested); the record at ``as_of`` is the
    latest version in effect before it (ties: the later ingest), so a consent change
    made after ``as_of`` never reaches a historical snapshot. A customer whose every
    version took effect later (a backfill) keeps the earliest one, as an item first
    catalogued later does.
    """
    moment = _timestamp(as_of)
    effective = f"coalesce(consent_updated_ts, {INGESTED_AT})"
    return (
        "CREATE VIEW customers AS SELECT * FROM customers_history QUALIFY row_number() "
        f"OVER (PARTITION BY customer_id ORDER BY {effective} < {moment} DESC, "
        f"CASE WHEN {effective} < {moment} THEN -epoch_us({effective}) "
        f"ELSE epoch_us({effective}) END, {INGESTED_AT} DESC) = 1"
    )


# --------------------------------------------------------------------------- computation
# The resolved event table stores an event type as its position in EVENT_TYPES (a
# one-byte code instead of a string); the SQL names types through ``_is``.
TYPE_CODES = {name: code for code, name in enumerate(EVENT_TYPES)}


def _is(*event_types: str) -> str:
    """SQL predicate on the type code ``et``: ``_is("purchase")`` → ``et = 6``."""
    codes = ", ".join(str(TYPE_CODES[t]) for t in event_types)
    return f"et IN ({codes})"


def _timestamp(moment: datetime) -> str:
    """A UTC timestamp literal (microsecond precision)."""
    return f"TIMESTAMPTZ '{moment.astimezone(UTC).isoformat()}'"


# Hour of the day of a UTC timestamp, by integer arithmetic on microseconds (exact,
# and far cheaper than calendar functions on ten million rows).
_UTC_HOUR = "((epoch_us(ts) % 86400000000 + 86400000000) % 86400000000) // 3600000000"
_AS_OF_US = "epoch_us($as_of)"
_AGE_DAYS = f"({_AS_OF_US} - epoch_us(ts)) / 86400e6"


def _compute(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    config: FeatureConfig,
    segments: SegmentSet,
    phone_region: str,
    progress: Progress | None,
    writer: _SnapshotWriter | None,
    overrides: Sequence[Override] = (),
    matchers: TrainedMatchers | None = None,
) -> Snapshot:
    """The snapshot in stages; each stage's seconds go to the manifest. With a
    ``writer``, each table is handed to it as soon as it is final.

    The store's events are read three times: the login links, one selective pass for
    the few types needed row by row (purchases, stock changes), and one pass that
    resolves every event to a person number and stores it as a narrow integer-coded
    table, ``ev``. Every aggregate after that reads ``ev`` (in memory), not the store.
    """
    if as_of.tzinfo is None:
        raise InputError("as_of", as_of, "must be timezone-aware (UTC)")
    as_of = as_of.astimezone(UTC)
    started = time.perf_counter()
    stages: dict[str, float] = {}
    mark = started

    def step(stage: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages[stage] = round(now - mark, 3)
        mark = now
        if progress is not None:
            progress(f"{stage} ({stages[stage]:.2f} s)")

    def hand_over(**tables: pd.DataFrame) -> None:
        if writer is not None:
            for name, frame in tables.items():
                writer.frame(name, frame)

    params: dict[str, object] = {"as_of": as_of}
    # Identity: customer records + login/identify links before as_of.
    con.execute(
        "CREATE TEMP TABLE customer_records AS SELECT customer_id, email, phone, country, "
        "signup_ts, consent_email, consent_personalization, consent_updated_ts, "
        "json_extract_string(attributes, '$.timezone') AS timezone, attributes FROM customers"
    )
    customers = fetch_frame(
        con, "SELECT customer_id, email, phone, attributes FROM customer_records"
    )
    links = fetch_frame(
        con,
        "SELECT DISTINCT customer_id, anonymous_id FROM events "
        "WHERE ts < $as_of AND event_type IN ('login', 'identify') "
        "AND customer_id IS NOT NULL AND anonymous_id IS NOT NULL",
        params,
    )
    # Identity resolution (mostly Python) runs beside the next pass (DuckDB, which
    # leaves the GIL while it works): purchases and stock changes, the few event types
    # needed row by row, in one selective pass (the type filter is pushed into the
    # scan, so the other rows are barely read).
    with ThreadPoolExecutor(max_workers=1) as pool:
        resolving = pool.submit(
            resolve_identities,
            customers,
            links,
            phone_region=phone_region,
            config=config.identity,
            overrides=overrides,
            matchers=matchers,
        )
        con.execute(
            """
            CREATE TEMP TABLE sparse AS
            SELECT ts, event_type, customer_id, anonymous_id, item_id, price,
                   coalesce(price, 0) * coalesce(quantity, 1) AS value,
                   -- no order id: the purchase is an order of its own (see ``orders``)
                   CASE WHEN event_type = 'purchase' THEN order_id END AS order_key,
                   CASE WHEN event_type = 'stock_change' THEN properties END AS properties
            FROM events
            WHERE ts < $as_of AND event_type IN ('purchase', 'stock_change')
            """,
            params,
        )
        identity = resolving.result()
    base = _number_people(con, identity, config, numbered=None)
    step("identity")

    _resolve_events(con, params)
    # A customer id with neither a record nor a login link is a person of its own;
    # such ids are numbered after the others, and their events updated in place.
    unnumbered = fetch_frame(
        con, "SELECT DISTINCT unnumbered FROM ev WHERE unnumbered IS NOT NULL"
    )["unnumbered"]
    if len(unnumbered):
        identity = identity.with_customers(unnumbered.astype(str).tolist())
        numbered = fetch_frame(con, "SELECT * FROM person")
        base = _number_people(con, identity, config, numbered=numbered)
        con.execute(
            "UPDATE ev SET pid = i.pid, personal = i.personalised FROM ids i "
            "WHERE i.is_customer AND ev.unnumbered = i.source_id"
        )
    # Unsubscribes decide sendability for everyone, consented to profiling or not.
    unsub = fetch_frame(
        con,
        "SELECT customer_id, last_unsubscribe_ts FROM person JOIN (SELECT pid, max(ts) "
        f"AS last_unsubscribe_ts FROM ev WHERE {_is('unsubscribe')} GROUP BY pid) USING (pid)",
    )
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
    events_read = con.execute("SELECT count(*) FROM ev").fetchall()[0]
    hand_over(
        identity=identity.mapping,
        identity_conflicts=identity.conflicts,
        identity_links=identity.links,
    )
    step("events resolved")

    _customer_aggregates(con, config, as_of, params)
    step("customer aggregates")
    _pair_stats(con, config, as_of, params)
    affinity = _affinity(con)
    items = _item_features(con, as_of)
    interactions, user_ids, item_ids = _interactions(con, items, config, params)
    hand_over(items=items, category_affinity=affinity)
    if writer is not None:
        writer.matrix(interactions, user_ids, item_ids)
    step("items, interactions, affinity")
    customers_out = _customer_table(con, base, config, as_of, params)
    hand_over(customers=customers_out)
    step("customer table")
    # Only the columns the segments read, of the profiled rows.
    profiled = customers_out.loc[
        customers_out["personalised"], ["customer_id", *segments.variables]
    ]
    memberships = segments.evaluate(profiled)
    step("segments")
    triggers = _triggers(con, config, params)
    hand_over(segments=memberships, triggers=triggers)
    step("triggers")

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
            "identity_links": len(identity.links),
        },
        "identity": identity.report,
        "features": {
            "customers": _schema(customers_out),
            "items": _schema(items),
        },
        "segments": {s.name: s.expression for s in segments.segments},
        "segment_sizes": memberships["segment"].value_counts().to_dict(),
        "trigger_counts": triggers["trigger"].value_counts().to_dict(),
        "config": json.loads(config.model_dump_json()),
        "seconds": round(time.perf_counter() - started, 3),
        "stage_seconds": stages,
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


def _number_people(
    con: duckdb.DuckDBPyConnection,
    identity: Identity,
    config: FeatureConfig,
    numbered: pd.DataFrame | None,
) -> pd.DataFrame:
    """Register the identity, number its people and build the id lookup ``ids``.

    A person number (``pid``) stands for the canonical id in every aggregate, so the
    passes over the events group and join on integers. People already ``numbered``
    keep their number; new ones are numbered after them, in id order.

    Returns
    -------
    pandas.DataFrame
        The consent base (:func:`_consent_base`), one row per person, with its
        ``pid``.
    """
    con.register("idmap", pa.Table.from_pandas(identity.mapping, preserve_index=False))
    base = _consent_base(con, config)
    ids = base["customer_id"].to_numpy()
    if numbered is None:
        pid = np.arange(len(ids), dtype=np.int32)
    else:
        known = pd.Series(numbered["pid"].to_numpy(), index=numbered["customer_id"].to_numpy())
        found = np.array(known.reindex(ids).to_numpy(dtype=float, na_value=np.nan))
        new = np.isnan(found)
        found[new] = len(numbered) + np.arange(int(new.sum()))
        pid = found.astype(np.int32)
    base["pid"] = pid
    _register_people(con, base)
    # One lookup for every id an event may carry; one join resolves it.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE ids AS
        SELECT m.source_type = 'customer' AS is_customer, m.source_id, p.pid, p.personalised
        FROM idmap m JOIN person p ON p.customer_id = m.canonical_id
        WHERE m.source_type IN ('customer', 'anonymous')
        """
    )
    return base


def _register_people(con: duckdb.DuckDBPyConnection, base: pd.DataFrame) -> None:
    """``person``: each person of ``base`` with their number, id and consent to
    profiling; ``r``, their row in ``base`` (customer id order, so ordering by ``r``
    orders by id without comparing strings); and their sign-up time and time zone,
    which the customer table reads."""
    con.register(
        "person_frame",
        pa.table(
            {
                "pid": base["pid"].to_numpy(dtype=np.int32),
                "customer_id": pa.array(base["customer_id"], pa.string()),
                "personalised": base["personalised"].to_numpy(dtype=bool),
                "r": np.arange(len(base), dtype=np.int32),
                "signup_ts": pa.array(base["signup_ts"], pa.timestamp("us", tz="UTC")),
                "timezone": pa.array(base["timezone"], pa.string()),
            }
        ),
    )
    con.execute("CREATE OR REPLACE TEMP TABLE person AS SELECT * FROM person_frame")
    con.unregister("person_frame")


def _resolve_events(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> None:
    """``ev``: every event before as_of with its person number, narrow and integer-coded.

    ``personal``: the person consented to profiling (only such events build profiles).
    ``unnumbered``: the customer id of an event no id in ``ids`` resolves (else null).
    """
    codes = ", ".join(f"('{name}', {code})" for name, code in TYPE_CODES.items())
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE event_codes AS "
        f"SELECT event_type, et::UTINYINT AS et FROM (VALUES {codes}) t(event_type, et)"
    )
    con.execute(
        """
        CREATE TEMP TABLE ev AS
        SELECT e.ts, c.et, e.item_id, i.pid, coalesce(i.personalised, false) AS personal,
               CASE WHEN i.pid IS NULL THEN e.customer_id END AS unnumbered
        FROM events e
        LEFT JOIN event_codes c ON c.event_type = e.event_type
        LEFT JOIN ids i ON i.is_customer = (e.customer_id IS NOT NULL)
                       AND i.source_id = coalesce(e.customer_id, e.anonymous_id)
        WHERE e.ts < $as_of
        """,
        params,
    )


def _consent_base(con: duckdb.DuckDBPyConnection, config: FeatureConfig) -> pd.DataFrame:
    """One row per canonical customer with consent state (conservative merge).

    A person consents only if every record of theirs does; a missing value is no
    consent. Country, timezone and attributes come from the canonical record. A
    person with no customer record at all gets ``assume_consent_when_unknown``.
    """
    default = "true" if config.assume_consent_when_unknown else "false"
    people = fetch_frame(
        con,
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
                   arg_min(timezone, pick) AS timezone,
                   arg_min(attributes, pick) AS attributes
            FROM rec GROUP BY canonical_id
        )
        SELECT p.customer_id,
               coalesce(g.consent_email, {default}) AS consent_email,
               coalesce(g.consent_personalization, {default}) AS consent_personalization,
               g.consent_updated_ts, g.signup_ts, g.country, g.timezone, g.attributes
        FROM (SELECT DISTINCT canonical_id AS customer_id FROM idmap
              WHERE source_type = 'customer') p
        LEFT JOIN grouped g ON g.canonical_id = p.customer_id
        ORDER BY p.customer_id
        """,
    )
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
    whens = " ".join(f"WHEN {TYPE_CODES[t]} THEN {float(w)!r}" for t, w in sorted(weights.items()))
    return f"(CASE et {whens} ELSE 0.0 END)"


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


ATTRIBUTE_PREFIX = "attr_"
_NUMERIC_JSON = ("BIGINT", "UBIGINT", "DOUBLE", "BOOLEAN")


def _attribute_columns(
    con: duckdb.DuckDBPyConnection,
    attributes: pd.Series,
    personal: np.ndarray,
    excluded: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The customer record's ``attributes`` JSON as typed columns ``attr_<key>``.

    Keys in ``excluded`` (lower-cased: names, date of birth, address and the other
    fields identity resolution compares) identify a person and describe no taste;
    they never become features.

    A key whose every value is a JSON number or boolean is a number (``float64``,
    booleans 0/1); any other key is text (a JSON string as is, a nested value as its
    JSON), which models encode as categories. Keys are lower-cased with anything but
    letters, digits and ``_`` made ``_``. Null for customers without consent to
    profiling, and where the key is absent.

    Raises
    ------
    InputError
        A value that is not a JSON object, or two keys that name one column.
    """
    n = len(attributes)
    con.register(
        "attribute_rows",
        pa.table(
            {
                "r": np.arange(n, dtype=np.int64),
                "attributes": pa.array(attributes.where(personal, None), pa.string()),
            }
        ),
    )
    bad = fetch_frame(
        con,
        "SELECT attributes FROM attribute_rows WHERE attributes IS NOT NULL AND NOT "
        "coalesce(json_valid(attributes) AND json_type(attributes::JSON) = 'OBJECT', false) "
        "LIMIT 3",
    )
    if len(bad):
        raise InputError("attributes", bad["attributes"].tolist(), "must be JSON objects")
    values = fetch_frame(
        con,
        """
        SELECT t.r, j.key, j.type,
               CASE WHEN j.type = 'BOOLEAN' THEN CAST(j.value::VARCHAR = 'true' AS DOUBLE)
                    WHEN j.type IN ('BIGINT', 'UBIGINT', 'DOUBLE')
                    THEN CAST(j.value::VARCHAR AS DOUBLE) END AS number,
               CASE WHEN j.type = 'VARCHAR' THEN j.value ->> '$'
                    ELSE j.value::VARCHAR END AS text
        FROM attribute_rows t, json_each(t.attributes) j
        WHERE t.attributes IS NOT NULL AND j.type <> 'NULL'
        ORDER BY j.key, t.r
        """,
    )
    out: dict[str, Any] = {}
    named: dict[str, str] = {}
    for key, rows in values.groupby("key", sort=True):
        if str(key).lower() in excluded:
            continue
        name = ATTRIBUTE_PREFIX + "".join(
            ch if ch.isascii() and (ch.isalnum() or ch == "_") else "_" for ch in str(key).lower()
        )
        if name in named:
            raise InputError("attributes", [named[name], key], f"two keys name one column {name}")
        named[name] = str(key)
        where = rows["r"].to_numpy(dtype=np.int64)
        if rows["type"].isin(_NUMERIC_JSON).all():
            column = np.full(n, np.nan)
            column[where] = rows["number"].to_numpy(dtype=float)
            out[name] = column
        else:
            text = np.full(n, None, dtype=object)
            text[where] = rows["text"].to_numpy(dtype=object)
            out[name] = pd.array(text, dtype=STRING_DTYPE)
    return out


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
    """Lifecycle stage per customer (ages in days, NaN when unknown); see the module
    docstring for the rules."""
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


# --------------------------------------------------------------------------- persistence
def snapshot_dir(root: Path, as_of: datetime) -> Path:
    """``root/as_of=YYYY-MM-DDTHH:MM:SSZ``."""
    return Path(root) / f"as_of={as_of.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def load_identity(path: Path, manifest: dict[str, Any] | None = None) -> Identity:
    """The identity tables of the snapshot folder ``path``."""
    if manifest is None:
        manifest = json.loads((path / "manifest.json").read_text())
    links = path / "identity_links.parquet"  # absent from snapshots written before links
    conflicts = pd.read_parquet(path / "identity_conflicts.parquet")
    if "anonymous_id" in conflicts:  # written when shared devices were the only conflicts
        conflicts = pd.DataFrame(
            {
                "kind": "anonymous",
                "key": conflicts["anonymous_id"],
                "n_customers": conflicts["n_customers"],
                "reason": "shared_device",
                "customer_ids": conflicts["canonical_ids"],
            },
            columns=CONFLICT_COLUMNS,
        )
    return Identity(
        pd.read_parquet(path / "identity.parquet"),
        conflicts,
        pd.read_parquet(links) if links.exists() else pd.DataFrame(columns=LINK_COLUMNS),
        manifest.get("identity", {}),
    )


def write_snapshot(snapshot: Snapshot, root: Path) -> Path:
    """Write every table atomically (a temporary folder renamed into place)."""
    writer = _SnapshotWriter(root, snapshot.as_of, workers=2)
    try:
        # The customer table takes most of the time; the rest is written beside it.
        writer.frame("customers", snapshot.customers)
        writer.frame("items", snapshot.items)
        writer.frame("category_affinity", snapshot.category_affinity)
        writer.frame("segments", snapshot.segments)
        writer.frame("triggers", snapshot.triggers)
        writer.frame("identity", snapshot.identity.mapping)
        writer.frame("identity_conflicts", snapshot.identity.conflicts)
        writer.frame("identity_links", snapshot.identity.links)
        writer.matrix(snapshot.interactions, snapshot.user_ids, snapshot.item_ids)
        return writer.finish(snapshot.manifest)
    except BaseException:
        writer.abandon()
        raise


class _SnapshotWriter:
    """Writes a snapshot's files into a temporary folder on background threads (the
    Parquet writer works outside the GIL, so computing goes on meanwhile), then
    renames the folder into place: readers see all of a snapshot or none of it.

    It holds the lock of ``root`` from start to finish or abandon, so two builds
    never interleave their renames; under it, folders left by a build that died
    are tidied (a snapshot it had moved aside is moved back)."""

    def __init__(
        self, root: Path, as_of: datetime, workers: int = 1, lock_timeout: float | None = None
    ) -> None:
        self.final = snapshot_dir(root, as_of)
        self.tmp = self.final.with_name(self.final.name + f"{_TMP}{os.getpid()}")
        self._held = ExitStack()
        what = f"the feature snapshots under {root}"
        self._held.enter_context(
            exclusive_lock(Path(root), what=what, timeout=lock_timeout, keep_file=False)
        )
        try:
            _tidy(Path(root))
            if self.tmp.exists():
                shutil.rmtree(self.tmp)
            self.tmp.mkdir(parents=True)
        except OSError as error:
            self._held.close()
            raise WriteFailed(self.tmp, error) from error
        except BaseException:
            self._held.close()
            raise
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshot")
        self._pending: list[Future[Any]] = []

    def frame(self, name: str, frame: pd.DataFrame) -> None:
        """Write ``frame`` as ``name.parquet`` (it must not change afterwards)."""
        path = self.tmp / f"{name}.parquet"
        self._pending.append(self._pool.submit(frame.to_parquet, path, index=False))

    def matrix(
        self, interactions: sp.csr_matrix, user_ids: np.ndarray, item_ids: np.ndarray
    ) -> None:
        """The interaction matrix and its row and column ids."""
        self._pending.append(
            self._pool.submit(
                sp.save_npz, self.tmp / "interactions.npz", interactions, compressed=False
            )
        )
        self.frame("users", pd.DataFrame({"customer_id": user_ids}))
        self.frame("item_index", pd.DataFrame({"item_id": item_ids}))

    def finish(self, manifest: dict[str, Any]) -> Path:
        """Wait for every file, add the manifest and move the folder into place."""
        try:
            try:
                for future in self._pending:
                    future.result()
            finally:
                self._pool.shutdown()
            (self.tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        except OSError as error:
            raise WriteFailed(self.tmp, error) from error
        final = self.final
        old = final.with_name(final.name + f"{_OLD}{os.getpid()}")
        try:
            if final.exists():
                final.rename(old)
                self.tmp.rename(final)
                shutil.rmtree(old)
            else:
                self.tmp.rename(final)
        except OSError as error:
            if old.exists() and not final.exists():
                old.rename(final)  # the snapshot it was to replace stays
            raise WriteFailed(final, error) from error
        self._held.close()
        return final

    def abandon(self) -> None:
        """Stop and remove the temporary folder (the computation failed)."""
        try:
            self._pool.shutdown(cancel_futures=True)
            shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            self._held.close()


_TMP = ".tmp-"
_OLD = ".old-"


def _tidy(root: Path) -> None:
    """Folders a dead build left under ``root``: its unfinished copy removed, and a
    snapshot it had moved aside (to replace it) moved back if nothing replaced it."""
    for folder in root.glob("as_of=*"):
        name = folder.name
        if _TMP in name:
            shutil.rmtree(folder)
        elif _OLD in name:
            final = folder.with_name(name.split(_OLD)[0])
            if final.exists():
                shutil.rmtree(folder)
            else:
                folder.rename(final)


def latest_snapshot(root: Path) -> Path:
    """The newest complete snapshot folder under ``root``."""
    folders = sorted(
        p
        for p in Path(root).glob("as_of=*")
        if p.is_dir()
        and _TMP not in p.name  # a build's copy, complete or not, is not yet a snapshot
        and _OLD not in p.name
        and (p / "manifest.json").exists()
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
        identity=load_identity(path, manifest),
        manifest=manifest,
    )
