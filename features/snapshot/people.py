"""The people of a snapshot: identity numbered into person numbers, every event
resolved to one, and each person's consent and subscription state at as_of — their
records' consent, overridden by the consent events before as_of
(:func:`_apply_consent_events`)."""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.data.contracts import CONSENT_EVENTS
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


def _consent_at(con: duckdb.DuckDBPyConnection, base: pd.DataFrame) -> pd.DataFrame:
    """``base`` with each person's consent and deliverability state at as_of, from
    their records and the consent events before it (:func:`_apply_consent_events`).

    Reads the consent events from ``sparse`` (the selective pass keeps them, with
    their properties) resolved through ``ids``. Where an event changed a person's
    consent to profiling, ``person``, ``ids`` and ``ev`` are updated, so every stage
    after this one (aggregates, interactions, segments, triggers) leaves out exactly
    the people without that consent at as_of, however it was given or withdrawn.
    """
    codes = ", ".join(f"'{kind}'" for kind in CONSENT_EVENTS)
    log = fetch_frame(
        con,
        f"""
        SELECT p.customer_id, s.ts, s.event_type,
               {_json_flag("consent_email")} AS consent_email,
               {_json_flag("consent_personalization")} AS consent_personalization,
               lower(json_extract_string(s.properties, '$.bounce_type')) AS bounce_type
        FROM sparse s
        JOIN ids i ON i.is_customer = (s.customer_id IS NOT NULL)
                  AND i.source_id = coalesce(s.customer_id, s.anonymous_id)
        JOIN person p ON p.pid = i.pid
        WHERE s.event_type IN ({codes})
        """,
    )
    before = base["personalised"].to_numpy(dtype=bool)
    base = _apply_consent_events(base, log)
    if (base["personalised"].to_numpy(dtype=bool) != before).any():
        _register_people(con, base)
        con.execute(
            "UPDATE ids SET personalised = p.personalised FROM person p "
            "WHERE ids.pid = p.pid AND ids.personalised <> p.personalised"
        )
        con.execute(
            "UPDATE ev SET personal = p.personalised FROM person p "
            "WHERE ev.pid = p.pid AND ev.personal <> p.personalised"
        )
    return base


def _json_flag(key: str) -> str:
    """SQL: the boolean ``key`` of an event's properties (JSON true / false, or the
    text true, false, 1, 0 in any case); null when absent or anything else."""
    text = f"lower(json_extract_string(s.properties, '$.{key}'))"
    return (
        f"CASE WHEN {text} IN ('true', '1') THEN true WHEN {text} IN ('false', '0') THEN false END"
    )


def _apply_consent_events(people: pd.DataFrame, log: pd.DataFrame) -> pd.DataFrame:
    """Each person's consent at as_of: their records' consent, overridden by later
    consent events.

    ``log``: ``customer_id, ts, event_type, consent_email, consent_personalization,
    bounce_type`` of every consent event before as_of (:data:`CONSENT_EVENTS`).

    Each consent (to e-mail, to profiling) is the latest statement about it: the
    records' (in effect from ``consent_updated_ts``; without one, from the start of
    time), each ``consent_change`` key present in its properties (from its ``ts``),
    and for e-mail ``unsubscribe`` (withdrawn) and ``resubscribe`` (given). At equal
    times a withdrawal wins. ``unsubscribed``: the e-mail consent in effect is an
    unsubscribe's. ``hard_bounced`` / ``complained``: a hard ``bounce`` (a
    ``bounce_type`` other than ``soft``, or none) or a ``complaint`` at or after the
    last e-mail consent given (a new consent makes the address mailable again).
    ``sendable`` = e-mail consent, not unsubscribed, not bounced, no complaint;
    ``personalised`` = consent to profiling. ``consent_email_ts`` /
    ``consent_personalization_ts``: since when each consent in effect holds (null: a
    record without a consent time).

    Returns
    -------
    pandas.DataFrame
        ``people`` in its order, with those columns set.
    """
    people = people.drop(columns=[c for c in _DERIVED if c in people.columns])
    stamp = _utc(people["consent_updated_ts"], people.index)
    people["consent_email"] = people["consent_email"].astype(bool)
    people["consent_personalization"] = people["consent_personalization"].astype(bool)
    people["consent_email_ts"] = stamp
    people["consent_personalization_ts"] = stamp
    for column in ("unsubscribed", "hard_bounced", "complained"):
        people[column] = False
    touched = people["customer_id"].astype(str).isin(set(log["customer_id"].astype(str)))
    if touched.any():  # the rest keep their records' consent
        mask = touched.to_numpy()
        states = _event_states(people[mask], log)
        for column in states.columns:
            people.loc[mask, column] = states[column].to_numpy()
    people["sendable"] = (
        people["consent_email"]
        & ~people["unsubscribed"]
        & ~people["hard_bounced"]
        & ~people["complained"]
    )
    people["personalised"] = people["consent_personalization"]
    return people


def _event_states(people: pd.DataFrame, log: pd.DataFrame) -> pd.DataFrame:
    """The consent columns of ``people`` (each with consent events in ``log``), in
    their order (see :func:`_apply_consent_events`)."""
    ids = people["customer_id"].astype(str)
    log = log.assign(
        customer_id=log["customer_id"].astype(str), ts=pd.to_datetime(log["ts"], utc=True)
    )
    kind = log["event_type"].astype(str)
    statements = [
        pd.DataFrame(
            {
                "customer_id": ids.to_numpy(),
                "field": field,
                "at": _micros(people["consent_updated_ts"]),
                "value": people[column].astype(bool).to_numpy(),
                "unsubscribe": False,
            }
        )
        for field, column in _FIELDS
    ]
    for field, column in _FIELDS:
        said = (kind == "consent_change") & log[column].notna()
        statements.append(_statements(log[said], field, log.loc[said, column].astype(bool)))
    for event, value in (("unsubscribe", False), ("resubscribe", True)):
        statements.append(
            _statements(log[kind == event], "email", value, unsubscribe=event == "unsubscribe")
        )
    entries = pd.concat(statements, ignore_index=True)
    entries["value"] = entries["value"].astype(bool)
    entries["unsubscribe"] = entries["unsubscribe"].astype(bool)
    # Latest last; at equal times grants before withdrawals, so a withdrawal wins.
    entries = entries.sort_values(
        ["customer_id", "field", "at", "value", "unsubscribe"],
        ascending=[True, True, True, False, True],
        kind="stable",
    )
    last = entries.drop_duplicates(["customer_id", "field"], keep="last")
    email = last[last["field"] == "email"].set_index("customer_id").reindex(ids)
    profiling = last[last["field"] == "profiling"].set_index("customer_id").reindex(ids)
    grants = entries[(entries["field"] == "email") & entries["value"]]
    granted = _latest(grants["customer_id"], grants["at"].to_numpy(), ids)

    def since_grant(events: pd.Series) -> np.ndarray:
        latest = _latest(log.loc[events, "customer_id"], _micros(log.loc[events, "ts"]), ids)
        return (latest != _NEVER) & (latest >= granted)

    soft = log["bounce_type"].fillna("").astype(str).eq("soft")
    return pd.DataFrame(
        {
            "consent_email": email["value"].astype(bool).to_numpy(),
            "consent_email_ts": _from_micros(email["at"].to_numpy(dtype=np.int64)),
            "consent_personalization": profiling["value"].astype(bool).to_numpy(),
            "consent_personalization_ts": _from_micros(profiling["at"].to_numpy(dtype=np.int64)),
            "unsubscribed": email["unsubscribe"].astype(bool).to_numpy(),
            "hard_bounced": since_grant((kind == "bounce") & ~soft),
            "complained": since_grant(kind == "complaint"),
        }
    )


def _statements(
    events: pd.DataFrame, field: str, value: bool | pd.Series, *, unsubscribe: bool = False
) -> pd.DataFrame:
    """Consent statements (customer, field, ts, value, unsubscribe) of ``events``."""
    values = value.to_numpy(dtype=bool) if isinstance(value, pd.Series) else value
    return pd.DataFrame(
        {
            "customer_id": events["customer_id"].to_numpy(),
            "field": field,
            "at": _micros(events["ts"]),
            "value": values,
            "unsubscribe": unsubscribe,
        },
        index=pd.RangeIndex(len(events)),
    )


def _latest(people: pd.Series, at: np.ndarray, ids: pd.Series) -> np.ndarray:
    """The latest of ``at`` per person of ``ids`` (:data:`_NEVER`: none)."""
    latest = pd.Series(at, index=people.to_numpy()).groupby(level=0).max()
    out = np.full(len(ids), _NEVER, dtype=np.int64)
    found = ids.map(latest)
    present = found.notna().to_numpy()
    out[present] = found[present].to_numpy(dtype=np.int64)
    return out


def _utc(values: pd.Series, index: pd.Index) -> pd.Series:
    """UTC timestamps (microseconds) of ``values``, on ``index``."""
    return pd.Series(pd.to_datetime(values, utc=True).array, index=index).astype(
        "datetime64[us, UTC]"
    )


def _from_micros(at: np.ndarray) -> pd.Series:
    """UTC timestamps of microseconds since the epoch (:data:`_NEVER`: NaT)."""
    stamps = pd.Series(pd.to_datetime(np.where(at == _NEVER, 0, at), unit="us", utc=True))
    return stamps.where(at != _NEVER).astype("datetime64[us, UTC]")


_FIELDS = (("email", "consent_email"), ("profiling", "consent_personalization"))
_DERIVED = (
    "consent_email_ts",
    "consent_personalization_ts",
    "unsubscribed",
    "hard_bounced",
    "complained",
    "sendable",
)
_NEVER = np.iinfo(np.int64).min
"""The time of a statement without one: before any event."""


def _micros(ts: pd.Series) -> np.ndarray:
    """Microseconds since the epoch of UTC timestamps; :data:`_NEVER` for NaT."""
    stamps = pd.to_datetime(ts, utc=True)
    out = np.full(len(stamps), _NEVER, dtype=np.int64)
    present = stamps.notna().to_numpy()
    out[present] = (
        stamps[present]
        .dt.tz_convert("UTC")
        .dt.tz_localize(None)
        .to_numpy("datetime64[us]")
        .astype(np.int64)
    )
    return out
