"""The people of a snapshot: identity numbered into person numbers, every event
resolved to one, and each person's consent and subscription state."""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.data.store import fetch_frame
from features.identity.resolution import Identity
from features.settings import FeatureConfig
from features.snapshot.sql import TYPE_CODES


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
