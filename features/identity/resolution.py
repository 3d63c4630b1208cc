"""Identity resolution: every event ends up on one canonical customer id.

Customer records are linked into people by three kinds of evidence:

- **Exact keys**: a normalised e-mail (trimmed, lower-cased; optionally Gmail-style)
  or phone number (E.164) shared by records. A key merges nobody when it is a
  placeholder (``noemail@…``, ``0000000000``; settings), when more records share it
  than ``max_records_per_key`` (a store phone, a shared inbox), or when the records
  sharing it carry different first names (a household phone) — each refusal is a row
  of the conflicts table.
- **Probabilistic matches** (:mod:`features.identity.match`): records whose names,
  date of birth, address and keys agree well enough (Fellegi-Sunter match
  probability above the threshold) are linked, and the pair keeps its probability
  and per-field evidence.
- **Overrides** (:mod:`features.identity.overrides`): a reviewer's merges and splits.

People are the connected components of these links. A component with more than
``max_records_per_person`` records keeps no probabilistic links and, if still too
large, no links at all (reported). A ``login`` / ``identify`` event links an
anonymous id to a person, so that device's earlier browsing is attributed to them;
an anonymous id seen with two different people (a shared device) merges nobody and
is a conflict.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from features.data.store import fetch_frame
from features.identity.match import MatchResult, TrainedMatchers, field_sql, match_records
from features.identity.overrides import Override
from features.pii.contacts import (
    is_placeholder_email,
    is_placeholder_phone,
    key_text,
    normalise_email,
    normalise_phone,
)
from features.pii.masking import HasherSource, resolved
from features.settings import IdentityConfig

MAPPING_COLUMNS = ["source_type", "source_id", "canonical_id", "linked_by", "match_probability"]
CONFLICT_COLUMNS = ["kind", "key", "n_customers", "reason", "customer_ids"]
LINK_COLUMNS = ["customer_a", "customer_b", "via", "key", "match_probability", "evidence"]
# Two first names at least this similar (Jaro-Winkler) may be one person's.
SAME_NAME_SIMILARITY = 0.85
VIA = ("email", "phone", "probabilistic", "override")
EMAIL, PHONE, PROBABILISTIC, OVERRIDE = range(4)


@dataclass
class Identity:
    """Result of :func:`resolve_identities`.

    Attributes
    ----------
    mapping : pandas.DataFrame
        ``source_type`` (customer, anonymous, email, phone), ``source_id``,
        ``canonical_id``, ``linked_by`` (the kinds of link that joined the record to
        its person, comma-joined: email, phone, probabilistic, override, login; empty
        for a person of one record) and ``match_probability`` (the strongest link's;
        1 for exact keys and overrides, null when unlinked). One row per source id;
        e-mails and phones appear only as keyed hashes of their normalised form
        (``hasher.hash(key_text(kind, value))``, as the suppression list keeps them),
        and only those that linked records.
    conflicts : pandas.DataFrame
        ``kind`` (anonymous, email, phone, match, person), ``key`` (the anonymous id, a
        key's keyed hash, or the smallest customer id of a pair or person),
        ``n_customers``, ``reason`` (shared_device, placeholder, over_limit,
        names_differ, different_person, matches_over_limit, person_over_limit) and
        ``customer_ids`` (sorted, comma-joined): every link that was refused.
    links : pandas.DataFrame
        The links used: ``customer_a`` < ``customer_b``, ``via``, ``key`` (a key's
        keyed hash), ``match_probability`` and ``evidence`` (JSON per compared field:
        level and match weight; probabilistic links only).
    report : dict
        Counts (records, people, links by kind, conflicts by reason) and whether and
        how probabilistic matching ran.
    """

    mapping: pd.DataFrame
    conflicts: pd.DataFrame
    links: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LINK_COLUMNS))
    report: dict[str, Any] = field(default_factory=dict)

    def canonical(self, source_type: str) -> pd.Series:
        """Canonical id indexed by source id, for one source type."""
        rows = self.mapping[self.mapping["source_type"] == source_type]
        return pd.Series(rows["canonical_id"].to_numpy(), index=rows["source_id"].to_numpy())

    def with_customers(self, customer_ids: Sequence[str]) -> Identity:
        """This identity plus each customer id it does not know, as a person of one."""
        known = set(self.mapping.loc[self.mapping["source_type"] == "customer", "source_id"])
        new = sorted({str(c) for c in customer_ids} - known)
        if not new:
            return self
        rows = pd.DataFrame(
            {
                "source_type": "customer",
                "source_id": new,
                "canonical_id": new,
                "linked_by": "",
                "match_probability": np.nan,
            }
        )
        customers = self.mapping["source_type"] == "customer"
        mapping = pd.concat(
            [self.mapping[customers], rows, self.mapping[~customers]], ignore_index=True
        )
        report = dict(self.report)
        report["people"] = report.get("people", 0) + len(new)
        report["records"] = report.get("records", 0) + len(new)
        return Identity(mapping, self.conflicts, self.links, report)


def resolve_identities(
    customers: pd.DataFrame,
    links: pd.DataFrame,
    *,
    hasher: HasherSource,
    phone_region: str = "US",
    config: IdentityConfig | None = None,
    overrides: Sequence[Override] = (),
    matchers: TrainedMatchers | None = None,
) -> Identity:
    """Link customer records into people and attach anonymous ids.

    Parameters
    ----------
    customers : pandas.DataFrame
        ``customer_id``, ``email``, ``phone`` and optionally ``attributes`` (JSON text
        holding the fields probabilistic matching compares); one row per record.
    links : pandas.DataFrame
        ``customer_id``, ``anonymous_id``: pairs seen together on ``login`` /
        ``identify`` events (or any event carrying both).
    hasher : KeyedHasher or callable
        The keyed hash that stands for an e-mail or phone in the tables returned
        (``KeyedHasher.from_settings(settings.privacy, settings.home)``): no table
        holds one in the clear, nor a plain digest of one, which a list of every phone
        number would reverse. A callable making it is called only when some key is
        shown (no key is read or made for records that share none).
    phone_region : str
        Region for phone numbers without a country code.
    config : IdentityConfig, optional
        Guards and matching settings (defaults when omitted).
    overrides : sequence of Override
        Reviewer merges and splits, oldest first.
    matchers : TrainedMatchers, optional
        Reuse a probabilistic matcher an earlier build of the same job trained.

    Returns
    -------
    Identity
        The canonical id of a person is the smallest customer id among their
        records, so it is stable while records are only added. Customer ids seen
        only in events join with :meth:`Identity.with_customers`.
    """
    config = config or IdentityConfig()
    con = duckdb.connect()
    try:
        n = _load_records(con, customers, links, phone_region, config)
        refusals = _guard_keys(con, config, hasher)
        edges = _key_edges(con)
        matched, matched_edges, kept_apart = _probabilistic(con, config, matchers)
        if not matched_edges.empty:
            edges = pd.concat([edges, matched_edges], ignore_index=True)
        ids = fetch_frame(con, "SELECT customer_id FROM ids ORDER BY pos")["customer_id"]
        edges, unknown = _apply_overrides(edges, overrides, ids)
        labels, edges, too_big = _people(n, edges, config.max_records_per_person)
        first = np.full(labels.max() + 1 if n else 0, n, dtype=np.int64)
        np.minimum.at(first, labels, np.arange(n))
        canonical = ids.to_numpy()[first[labels]] if n else np.array([], dtype=object)
        con.register("canonical", pa.table({"pos": np.arange(n), "canonical_id": canonical}))
        con.execute(
            "CREATE TABLE person AS SELECT i.pos, i.customer_id, c.canonical_id "
            "FROM ids i JOIN canonical c USING (pos)"
        )
        mapping = _mapping(con, edges, n)
        refusals = pd.concat(
            [f for f in (refusals, kept_apart) if not f.empty] or [refusals],
            ignore_index=True,
        )
        conflicts = _conflicts(con, refusals, too_big, ids)
        used = _links_frame(edges, ids)
    finally:
        con.close()
    report = _report(mapping, conflicts, used, matched, unknown, len(overrides))
    return Identity(mapping=mapping, conflicts=conflicts, links=used, report=report)


def _strings(values: pd.Series | np.ndarray) -> pa.Array:
    return pa.array(pd.Series(values).astype("string[pyarrow]"), type=pa.large_string())


def _load_records(
    con: duckdb.DuckDBPyConnection,
    customers: pd.DataFrame,
    links: pd.DataFrame,
    phone_region: str,
    config: IdentityConfig,
) -> int:
    """Tables ``ids`` (every customer id, numbered in id order), ``records`` (keys and
    comparison fields per record) and ``pairs`` (login links); the number of ids."""
    email = normalise_email(customers["email"], gmail=config.gmail_normalisation)
    phone = normalise_phone(customers["phone"], phone_region)
    attributes = customers["attributes"] if "attributes" in customers else None
    con.register(
        "raw",
        pa.table(
            {
                "seq": np.arange(len(customers)),
                "customer_id": _strings(customers["customer_id"]),
                "email": _strings(email),
                "phone": _strings(phone),
                "email_placeholder": is_placeholder_email(email, config.placeholder_emails),
                "phone_placeholder": is_placeholder_phone(phone, config.placeholder_phones),
                "attributes": _strings(
                    attributes if attributes is not None else pd.Series([None] * len(customers))
                ),
            }
        ),
    )
    con.register(
        "pairs", pa.table({c: _strings(links[c]) for c in ("customer_id", "anonymous_id")})
    )
    # Every customer id, numbered in id order (byte order of UTF-8 = code point order).
    con.execute(
        """
        CREATE TABLE ids AS
        SELECT customer_id, (row_number() OVER (ORDER BY customer_id) - 1)::INTEGER AS pos
        FROM (SELECT customer_id FROM raw UNION SELECT customer_id FROM pairs)
        WHERE customer_id IS NOT NULL
        """
    )
    # One row per record (the first row of a repeated id), its keys and fields.
    con.execute(
        f"""
        CREATE TABLE records AS
        SELECT i.pos, r.customer_id, r.email, r.phone, r.email_placeholder,
               r.phone_placeholder, {field_sql(config.extra_fields)}
        FROM raw r JOIN ids i USING (customer_id)
        QUALIFY row_number() OVER (PARTITION BY r.customer_id ORDER BY r.seq) = 1
        """
    )
    ((count,),) = con.execute("SELECT count(*) FROM ids").fetchall()
    return int(count)


def _guard_keys(
    con: duckdb.DuckDBPyConnection, config: IdentityConfig, hasher: HasherSource
) -> pd.DataFrame:
    """Table ``keys``: each e-mail and phone with the records holding it, when it may
    not link them why, and (held by two or more records, the only keys any table
    shows) its keyed hash. Returns the refused keys held by two or more records."""
    con.execute(
        """
        CREATE TABLE keyed AS
        SELECT DISTINCT pos, 'email' AS kind, email AS value, email_placeholder AS placeholder
        FROM records WHERE email IS NOT NULL
        UNION ALL
        SELECT DISTINCT pos, 'phone', phone, phone_placeholder FROM records
        WHERE phone IS NOT NULL
        """
    )
    con.execute(
        """
        CREATE TABLE keys AS
        SELECT kind, value, count(*) AS n, min(pos) AS first_pos,
               CASE WHEN bool_or(placeholder) THEN 'placeholder'
                    WHEN count(*) > $limit THEN 'over_limit' END AS refused
        FROM keyed GROUP BY kind, value
        """,
        {"limit": config.max_records_per_key},
    )
    if config.name_check:
        # Records sharing a key whose first names are not alike: not one person.
        con.execute(
            """
            UPDATE keys SET refused = 'names_differ' FROM (
                SELECT DISTINCT a.kind, a.value FROM keyed a
                JOIN keyed b ON a.kind = b.kind AND a.value = b.value AND a.pos < b.pos
                JOIN records ra ON ra.pos = a.pos JOIN records rb ON rb.pos = b.pos
                JOIN keys k ON k.kind = a.kind AND k.value = a.value
                WHERE k.refused IS NULL AND k.n >= 2
                  AND jaro_winkler_similarity(ra.first_name, rb.first_name) < $same
            ) d WHERE keys.kind = d.kind AND keys.value = d.value
            """,
            {"same": SAME_NAME_SIMILARITY},
        )
    _hash_keys(con, hasher)
    return fetch_frame(
        con,
        """
        SELECT k.kind, k.key, k.n AS n_customers, k.refused AS reason,
               string_agg(r.customer_id, ',' ORDER BY r.customer_id) AS customer_ids
        FROM keys k JOIN keyed USING (kind, value) JOIN records r USING (pos)
        WHERE k.refused IS NOT NULL AND k.n >= 2
        GROUP BY k.kind, k.value, k.key, k.n, k.refused
        ORDER BY k.n DESC, k.kind, key
        """,
    )


def _hash_keys(con: duckdb.DuckDBPyConnection, hasher: HasherSource) -> None:
    """Column ``keys.key``: the keyed hash of each key held by two or more records (null
    for the others, which no table shows). DuckDB has no HMAC: the distinct keys are
    hashed here, one HMAC each, and joined back."""
    shared = fetch_frame(con, "SELECT kind, value FROM keys WHERE n >= 2")
    kinds = shared["kind"].astype(str).to_numpy()
    values = shared["value"].astype(str).to_numpy()
    hashed = np.empty(len(shared), dtype=object)
    if len(shared):  # else no key is needed: none is read (or made)
        keyed = resolved(hasher)
        hashed[:] = [keyed.hash(key_text(k, v)) for k, v in zip(kinds, values, strict=True)]
    con.register(
        "key_hashes",
        pa.table({"kind": _strings(kinds), "value": _strings(values), "key": _strings(hashed)}),
    )
    con.execute(
        "CREATE OR REPLACE TABLE keys AS SELECT k.*, h.key FROM keys k "
        "LEFT JOIN key_hashes h USING (kind, value)"
    )
    con.unregister("key_hashes")


def _key_edges(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Links through accepted keys: each record to the key's first record."""
    return fetch_frame(
        con,
        f"""
        SELECT k.first_pos AS a, e.pos AS b,
               CASE k.kind WHEN 'email' THEN {EMAIL} ELSE {PHONE} END AS via,
               k.key, 1.0 AS match_probability, NULL::VARCHAR AS evidence
        FROM keys k JOIN keyed e USING (kind, value)
        WHERE k.refused IS NULL AND k.n >= 2 AND e.pos <> k.first_pos
        """,
    )


def _probabilistic(
    con: duckdb.DuckDBPyConnection, config: IdentityConfig, matchers: TrainedMatchers | None
) -> tuple[MatchResult, pd.DataFrame, pd.DataFrame]:
    """How the matcher ran, the links it makes (as ``a``, ``b`` positions) and the
    probable matches it kept apart (as conflict rows)."""
    none = pd.DataFrame()
    if config.probabilistic == "off":
        return MatchResult.skipped("off in settings"), none, none
    # Keys that may link nobody are no evidence either; a household phone still is.
    records = fetch_frame(
        con,
        """
        SELECT r.* EXCLUDE (pos, email, phone, email_placeholder, phone_placeholder),
               CASE WHEN ke.refused IN ('placeholder', 'over_limit') THEN NULL
                    ELSE r.email END AS email,
               CASE WHEN kp.refused IN ('placeholder', 'over_limit') THEN NULL
                    ELSE r.phone END AS phone
        FROM records r
        LEFT JOIN keys ke ON ke.kind = 'email' AND ke.value = r.email
        LEFT JOIN keys kp ON kp.kind = 'phone' AND kp.value = r.phone
        ORDER BY r.pos
        """,
    )
    result = match_records(records, config, matchers)
    apart = result.refused
    if not apart.empty:
        apart = pd.DataFrame(
            {
                "kind": "match",
                "key": apart["customer_a"].to_numpy(),
                "n_customers": 2,
                "reason": "different_person",
                "customer_ids": (apart["customer_a"] + "," + apart["customer_b"]).to_numpy(),
            }
        )
    edges = none
    if not result.pairs.empty:
        con.register("matched", pa.Table.from_pandas(result.pairs, preserve_index=False))
        edges = fetch_frame(
            con,
            f"""
            SELECT ia.pos AS a, ib.pos AS b, {PROBABILISTIC} AS via, NULL::VARCHAR AS key,
                   m.match_probability, m.evidence
            FROM matched m JOIN ids ia ON ia.customer_id = m.customer_a
            JOIN ids ib ON ib.customer_id = m.customer_b
            """,
        )
    return result, edges, apart


def _apply_overrides(
    edges: pd.DataFrame, overrides: Sequence[Override], ids: pd.Series
) -> tuple[pd.DataFrame, list[str]]:
    """The links after the reviewer's splits and merges, in the order they were made;
    and the customer ids overrides name that are not in the data."""
    position = pd.Series(np.arange(len(ids)), index=ids.to_numpy())
    unknown: list[str] = []
    edges = edges.reset_index(drop=True)
    for override in overrides:
        missing = [c for c in override.customer_ids if c not in position.index]
        unknown += missing
        pos = [int(position[c]) for c in override.customer_ids if c in position.index]
        if override.action == "split" and pos:
            edges = edges[(edges["a"] != pos[0]) & (edges["b"] != pos[0])]
        elif override.action == "merge" and len(pos) >= 2:
            added = pd.DataFrame(
                {
                    "a": pos[0],
                    "b": pos[1:],
                    "via": OVERRIDE,
                    "key": None,
                    "match_probability": 1.0,
                    "evidence": json.dumps({"reason": override.reason, "at": override.at}),
                }
            )
            edges = pd.concat([edges, added], ignore_index=True)
    return edges.reset_index(drop=True), sorted(set(unknown))


def _components(n: int, edges: pd.DataFrame) -> np.ndarray:
    a = edges["a"].to_numpy(dtype=np.int64)
    b = edges["b"].to_numpy(dtype=np.int64)
    graph = sp.coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels)


def _people(
    n: int, edges: pd.DataFrame, cap: int
) -> tuple[np.ndarray, pd.DataFrame, list[tuple[np.ndarray, str]]]:
    """Connected components, with the size guard: a person of more than ``cap``
    records loses its probabilistic links, then (if still too large) every link but
    the overrides. Returns the labels, the links kept and, per person so broken up,
    their records and why."""
    if n == 0:
        return np.zeros(0, dtype=np.int64), edges, []
    labels = _components(n, edges)
    broken: list[tuple[np.ndarray, str]] = []
    steps = (((PROBABILISTIC,), "matches_over_limit"), ((EMAIL, PHONE), "person_over_limit"))
    for droppable, reason in steps:
        sizes = np.bincount(labels)
        big = sizes[labels] > cap
        if not big.any():
            break
        a = edges["a"].to_numpy(dtype=np.int64)
        drop = big[a] & edges["via"].isin(droppable).to_numpy()
        broken += [(np.flatnonzero(labels == c), reason) for c in np.unique(labels[a[drop]])]
        edges = edges[~drop].reset_index(drop=True)
        labels = _components(n, edges)
    return labels, edges, broken


def _mapping(con: duckdb.DuckDBPyConnection, edges: pd.DataFrame, n: int) -> pd.DataFrame:
    ends = pd.DataFrame(
        {
            "pos": np.concatenate([edges["a"].to_numpy(), edges["b"].to_numpy()]),
            "via": np.tile(edges["via"].to_numpy(), 2),
            "p": np.tile(edges["match_probability"].to_numpy(dtype=float), 2),
        }
    )
    names = np.array(VIA, dtype=object)
    by_record = ends.groupby("pos").agg(
        linked_by=("via", lambda v: ",".join(names[np.unique(v.to_numpy(dtype=np.int64))])),
        match_probability=("p", "max"),
    )
    linked = pd.DataFrame({"pos": np.arange(n)}).merge(
        by_record, left_on="pos", right_index=True, how="left"
    )
    con.register(
        "linked_records",
        pa.table(
            {
                "pos": linked["pos"].to_numpy(dtype=np.int64),
                "linked_by": _strings(linked["linked_by"].astype("string").fillna("")),
                "match_probability": linked["match_probability"].to_numpy(dtype=float),
            }
        ),
    )
    # Anonymous ids: attached to the one person they logged in as, or a conflict.
    con.execute(
        """
        CREATE TABLE linked AS
        SELECT anonymous_id, canonical_id, count(*) OVER (PARTITION BY anonymous_id) AS n
        FROM (SELECT DISTINCT p.anonymous_id, c.canonical_id
              FROM pairs p JOIN person c USING (customer_id)
              WHERE p.anonymous_id IS NOT NULL)
        """
    )
    mapping = fetch_frame(
        con,
        """
        SELECT source_type, source_id, canonical_id, linked_by, match_probability FROM (
            SELECT 'customer' AS source_type, p.customer_id AS source_id, p.canonical_id,
                   l.linked_by, CASE WHEN isnan(l.match_probability) THEN NULL
                                     ELSE l.match_probability END AS match_probability,
                   0 AS part, p.pos AS ord
            FROM person p JOIN linked_records l USING (pos)
            UNION ALL
            SELECT 'anonymous', anonymous_id, canonical_id, 'login', 1.0, 1,
                   row_number() OVER (ORDER BY anonymous_id) FROM linked WHERE n = 1
            UNION ALL
            -- Keys that linked records, only as keyed hashes.
            SELECT k.kind, k.key, p.canonical_id, k.kind, 1.0,
                   CASE k.kind WHEN 'email' THEN 2 ELSE 3 END, k.first_pos
            FROM keys k JOIN person p ON p.pos = k.first_pos
            WHERE k.refused IS NULL AND k.n >= 2)
        ORDER BY part, ord
        """,
    )
    mapping["linked_by"] = mapping["linked_by"].astype("string").fillna("").astype(object)
    return mapping


def _conflicts(
    con: duckdb.DuckDBPyConnection,
    refusals: pd.DataFrame,
    broken: list[tuple[np.ndarray, str]],
    ids: pd.Series,
) -> pd.DataFrame:
    devices = fetch_frame(
        con,
        "SELECT 'anonymous' AS kind, anonymous_id AS key, count(*) AS n_customers, "
        "'shared_device' AS reason, "
        "string_agg(canonical_id, ',' ORDER BY canonical_id) AS customer_ids "
        "FROM linked WHERE n > 1 GROUP BY anonymous_id ORDER BY anonymous_id",
    )
    names = ids.to_numpy()
    persons = pd.DataFrame(
        {
            "kind": "person",
            "key": [str(min(names[m])) for m, _ in broken],
            "n_customers": [len(m) for m, _ in broken],
            "reason": [reason for _, reason in broken],
            "customer_ids": [",".join(sorted(names[m])) for m, _ in broken],
        }
    )
    frames = [f for f in (devices, refusals, persons) if not f.empty]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CONFLICT_COLUMNS})
    out = pd.concat(frames, ignore_index=True)[CONFLICT_COLUMNS]
    out["n_customers"] = out["n_customers"].astype(np.int64)
    return out


def _links_frame(edges: pd.DataFrame, ids: pd.Series) -> pd.DataFrame:
    names = ids.to_numpy()
    a = names[edges["a"].to_numpy(dtype=np.int64)]
    b = names[edges["b"].to_numpy(dtype=np.int64)]
    swap = a > b
    return pd.DataFrame(
        {
            "customer_a": np.where(swap, b, a),
            "customer_b": np.where(swap, a, b),
            "via": np.array(VIA, dtype=object)[edges["via"].to_numpy(dtype=np.int64)],
            "key": edges["key"].to_numpy(dtype=object),
            "match_probability": edges["match_probability"].to_numpy(dtype=float),
            "evidence": edges["evidence"].to_numpy(dtype=object),
        },
        columns=LINK_COLUMNS,
    )


def _report(
    mapping: pd.DataFrame,
    conflicts: pd.DataFrame,
    links: pd.DataFrame,
    matched: MatchResult,
    unknown: list[str],
    n_overrides: int,
) -> dict[str, Any]:
    customers = mapping[mapping["source_type"] == "customer"]
    return {
        "records": len(customers),
        "people": int(customers["canonical_id"].nunique()),
        "links": {k: int(v) for k, v in links["via"].value_counts().sort_index().items()},
        "conflicts": {
            k: int(v) for k, v in conflicts["reason"].value_counts().sort_index().items()
        },
        "probabilistic": {
            "ran": matched.ran,
            "reason": matched.reason,
            "fields": list(matched.fields),
            "model": matched.model,
        },
        "overrides": n_overrides,
        "overrides_unknown_ids": unknown,
    }
