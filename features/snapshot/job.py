"""The snapshot job: its entry points (from the event store, from DataFrames) and the
orchestration of its stages, from identity to triggers, into a :class:`Snapshot`."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from features.data.contracts import CONSENT_EVENTS
from features.data.store import INGESTED_AT, EventStore, connect, fetch_frame
from features.errors import InputError, NotFoundError
from features.identity.match import TrainedMatchers
from features.identity.overrides import Override, load_overrides
from features.identity.resolution import resolve_identities
from features.pii.hashing import KeyedHasher
from features.pii.masking import HasherSource, home_hasher
from features.progress import Progress
from features.segments import SegmentSet
from features.settings import FeatureConfig
from features.snapshot.customers import _customer_aggregates, _customer_table
from features.snapshot.interactions import _affinity, _interactions, _pair_stats
from features.snapshot.items import _item_features
from features.snapshot.people import _consent_at, _number_people, _resolve_events
from features.snapshot.persistence import _SnapshotWriter
from features.snapshot.sql import _timestamp
from features.snapshot.tables import SNAPSHOT_FORMAT, Snapshot
from features.snapshot.triggers import _triggers

# Consent and deliverability events, kept with their properties by the selective pass.
_CONSENT_TYPES = ", ".join(f"'{kind}'" for kind in CONSENT_EVENTS)


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
    hasher: HasherSource | None = None,
) -> Snapshot:
    """Compute a snapshot from the event store (DuckDB over its Parquet files).

    ``write_to``: also write it under this folder (as :func:`write_snapshot` does),
    each table in the background as soon as it is computed; the folder appears,
    complete, when this returns (``manifest["path"]``). ``matchers``: share one
    trained identity matcher among the builds of one job (see
    :class:`features.identity.match.TrainedMatchers`). Identity overrides kept
    beside the store apply. ``hasher``: the keyed hash the identity tables show
    e-mails and phones as (``KeyedHasher.from_settings(settings.privacy,
    settings.home)``, or a callable making it, called only when two records share a
    key); default: the key of the store's home (``store.root.parent``),
    which is that hasher when the settings give no ``privacy.hash_key``.

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
            con,
            as_of,
            config,
            segments,
            phone_region,
            progress,
            writer,
            overrides,
            matchers,
            hasher=hasher if hasher is not None else partial(home_hasher, store.root.parent),
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
    hasher: KeyedHasher | None = None,
) -> Snapshot:
    """Compute a snapshot from DataFrames in the contract formats (typed).

    ``catalog_history`` may carry ``_ingested_at`` (one row per catalog version);
    without it every row counts as ingested at the epoch. ``hasher``: the keyed hash
    of the identity tables' e-mails and phones; default a random key of this call's
    own (its keys compare within this snapshot only).
    """
    from features.data.contracts import CATALOG, CUSTOMERS, EVENTS

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
        if hasher is None:
            hasher = KeyedHasher("call", secrets.token_bytes(32))
        return _compute(con, as_of, config, segments, phone_region, None, None, hasher=hasher)
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
    *,
    hasher: HasherSource,
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
            hasher=hasher,
            phone_region=phone_region,
            config=config.identity,
            overrides=overrides,
            matchers=matchers,
        )
        con.execute(
            f"""
            CREATE TEMP TABLE sparse AS
            SELECT ts, event_type, customer_id, anonymous_id, item_id, price,
                   coalesce(price, 0) * coalesce(quantity, 1) AS value,
                   -- no order id: the purchase is an order of its own (see ``orders``)
                   CASE WHEN event_type = 'purchase' THEN order_id END AS order_key,
                   CASE WHEN event_type <> 'purchase' THEN properties END AS properties
            FROM events
            WHERE ts < $as_of AND event_type IN ('purchase', 'stock_change', {_CONSENT_TYPES})
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
    # Consent and deliverability events decide consent for everyone, consented to
    # profiling or not; a withdrawal before as_of leaves the person out of every
    # profile, interaction, segment and trigger below, as a record without consent.
    base = _consent_at(con, base)
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
