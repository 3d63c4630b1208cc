"""Identity resolution: every event ends up on one canonical customer id.

Deterministic only. Two customer records are the same person when they share a
normalised email (trimmed, lower-cased) or a normalised phone number (E.164);
merges are transitive (connected components). A ``login`` / ``identify`` event
links an anonymous id to a customer, so that device's earlier browsing is
attributed to the customer; an anonymous id seen with two different people (a
shared device) merges nobody and is recorded as a conflict instead.

The text work is vectorised (Arrow compute); only values outside ASCII take
Python's own string methods, so the result is exactly Python's ``str.strip`` /
``str.lower`` / ``re`` semantics. The id work is SQL (DuckDB) and one sparse
connected-components call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from features.store import fetch_frame

MAPPING_COLUMNS = ["source_type", "source_id", "canonical_id"]
NANP_REGIONS = frozenset({"US", "CA"})
# The ASCII characters Python's str.isspace() accepts: what str.strip() removes and
# what the ``\s`` of a ``re`` pattern matches, among ASCII text.
_ASCII_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "


@dataclass
class Identity:
    """Result of :func:`resolve_identities`.

    Attributes
    ----------
    mapping : pandas.DataFrame
        ``source_type`` (customer, anonymous, email, phone), ``source_id``,
        ``canonical_id``; one row per source id. Emails and phones appear only
        as SHA-256 digests of their normalised form.
    conflicts : pandas.DataFrame
        ``anonymous_id``, ``canonical_ids`` (sorted, comma-joined), ``n_customers``:
        anonymous ids linked to more than one person, left unmerged.
    """

    mapping: pd.DataFrame
    conflicts: pd.DataFrame

    def canonical(self, source_type: str) -> pd.Series:
        """Canonical id indexed by source id, for one source type."""
        rows = self.mapping[self.mapping["source_type"] == source_type]
        return pd.Series(rows["canonical_id"].to_numpy(), index=rows["source_id"].to_numpy())


def _text(values: pd.Series) -> tuple[pa.Array, np.ndarray]:
    """The values as an Arrow string array, and a mask of those outside ASCII."""
    array = pa.array(values.astype("string[pyarrow]"), type=pa.large_string())
    ascii_ = pc.fill_null(pc.string_is_ascii(array), True)
    return array, ~np.asarray(ascii_, dtype=bool)


def _series(array: pa.Array, index: pd.Index) -> pd.Series:
    return pd.Series(array, index=index, dtype="string[pyarrow]")


def normalise_email(emails: pd.Series) -> pd.Series:
    """Trim and lower-case; values without an ``@`` become NA."""
    array, other = _text(emails)
    text = pc.ascii_lower(pc.ascii_trim(array, characters=_ASCII_SPACE))
    out = _series(pc.if_else(pc.match_substring(text, "@"), text, None), emails.index)
    if other.any():
        rest = emails[other].astype(str).str.strip().str.lower()
        out[other] = rest.where(rest.str.contains("@", regex=False))
    return out


def normalise_phone(phones: pd.Series, region: str = "US") -> pd.Series:
    """Phone numbers as E.164 (``+14155552671``); numbers that do not parse become NA.

    Parameters
    ----------
    phones : pandas.Series of str
        Numbers as written (any punctuation, with or without a country code).
    region : str
        ISO region assumed for numbers written without a country code.
    """
    array, other = _text(phones)
    text = pc.ascii_trim(array, characters=_ASCII_SPACE)
    digits = pc.replace_substring_regex(text, r"[\t\n\x0b\x0c\r\x1c-\x1f ().\-]", "")
    # Already international ("+44 20 7946 0958"): E.164 is "+" and the digits.
    fast = pc.if_else(pc.match_substring_regex(digits, r"^\+[1-9][0-9]{7,14}$"), digits, None)
    if region in NANP_REGIONS:
        # North American numbers written with 10 digits (or 1 + 10): E.164 is +1 and
        # the 10 digits; parse only what this does not cover.
        ten = pc.match_substring_regex(digits, r"^1?[2-9][0-9]{2}[2-9][0-9]{6}$")
        last_ten = pc.binary_join_element_wise(
            pa.scalar("+1", pa.large_string()),
            pc.utf8_slice_codeunits(digits, -10),
            pa.scalar("", pa.large_string()),
        )
        fast = pc.if_else(pc.and_(ten, pc.is_null(fast)), last_ten, fast)
    out = _series(fast, phones.index)
    raw = _series(text, phones.index)
    if other.any():
        # Outside ASCII, Python's own rules (``\s`` and ``\d`` are Unicode there).
        out[other] = _python_fast_phone(phones[other].astype(str).str.strip(), region)
        raw[other] = phones[other].astype(str).str.strip()
    table: dict[str, str | None] = {}
    for value in raw[out.isna() & raw.notna()].unique():  # one parse per distinct number
        try:
            parsed = phonenumbers.parse(str(value), region)
        except phonenumbers.NumberParseException:
            table[str(value)] = None
            continue
        table[str(value)] = (
            phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            if phonenumbers.is_possible_number(parsed)
            else None
        )
    if table:
        out = out.fillna(raw.map(table).astype("string[pyarrow]"))
    return out


def _python_fast_phone(text: pd.Series, region: str) -> pd.Series:
    """The E.164 shortcuts with Python's ``re`` (for text outside ASCII)."""

    def shortcut(value: str) -> str | None:
        digits = re.sub(r"[\s().\-]", "", value)
        if re.fullmatch(r"\+[1-9]\d{7,14}", digits):
            return digits
        if region in NANP_REGIONS and re.fullmatch(r"1?[2-9]\d{2}[2-9]\d{6}", digits):
            return "+1" + digits[-10:]
        return None

    return pd.Series([shortcut(v) for v in text], index=text.index, dtype="string[pyarrow]")


def resolve_identities(
    customers: pd.DataFrame,
    links: pd.DataFrame,
    *,
    extra_customer_ids: pd.Series | None = None,
    phone_region: str = "US",
) -> Identity:
    """Merge customer records and attach anonymous ids.

    Parameters
    ----------
    customers : pandas.DataFrame
        Columns ``customer_id``, ``email``, ``phone`` (one row per record).
    links : pandas.DataFrame
        Columns ``customer_id``, ``anonymous_id``: pairs seen together on
        ``login`` / ``identify`` events (or any event carrying both).
    extra_customer_ids : pandas.Series, optional
        Customer ids seen in events but absent from ``customers``.
    phone_region : str
        Region for phone numbers without a country code.

    Returns
    -------
    Identity
        The canonical id of a person is the smallest customer id among their
        records, so it is stable while records are only added.
    """

    def strings(values: pd.Series) -> pa.Array:
        return pa.array(values.astype("string[pyarrow]"), type=pa.large_string())

    records = pa.table(
        {
            "seq": np.arange(len(customers)),
            "customer_id": strings(customers["customer_id"]),
            "email": strings(normalise_email(customers["email"])),
            "phone": strings(normalise_phone(customers["phone"], phone_region)),
        }
    )
    pairs = pa.table({c: strings(links[c]) for c in ("customer_id", "anonymous_id")})
    extra = pa.table(
        {
            "customer_id": strings(
                extra_customer_ids if extra_customer_ids is not None else pd.Series([], dtype=str)
            )
        }
    )
    con = duckdb.connect()
    try:
        for name, frame in (("records", records), ("pairs", pairs), ("extra", extra)):
            con.register(name, frame)
        # Every customer id, numbered in id order (byte order of UTF-8 = code point order).
        con.execute(
            """
            CREATE TABLE ids AS
            SELECT customer_id, (row_number() OVER (ORDER BY customer_id) - 1)::INTEGER AS pos
            FROM (SELECT customer_id FROM records UNION SELECT customer_id FROM pairs
                  UNION SELECT customer_id FROM extra)
            WHERE customer_id IS NOT NULL
            """
        )
        con.execute(
            """
            CREATE TABLE keyed AS
            SELECT i.pos, k.kind, k.value, k.seq FROM (
                SELECT seq, customer_id, 'email' AS kind, email AS value FROM records
                WHERE email IS NOT NULL
                UNION ALL
                SELECT seq, customer_id, 'phone' AS kind, phone AS value FROM records
                WHERE phone IS NOT NULL) k
            JOIN ids i USING (customer_id)
            """
        )
        con.execute(
            "CREATE TABLE keys AS SELECT kind, value, min(seq) AS first_seq, min(pos) AS pos, "
            "(row_number() OVER () - 1)::INTEGER AS code FROM keyed GROUP BY kind, value"
        )
        n = _count(con, "ids")
        edges = con.execute(
            "SELECT k.pos, c.code FROM keyed k JOIN keys c USING (kind, value)"
        ).fetchnumpy()
        # Bipartite graph customers ↔ keys; components are people.
        size = n + _count(con, "keys")
        graph = sp.coo_matrix(
            (
                np.ones(len(edges["pos"]), dtype=np.int8),
                (np.asarray(edges["pos"]), n + np.asarray(edges["code"])),
            ),
            shape=(size, size),
        )
        _, labels = connected_components(graph, directed=False)
        # Smallest customer id in each component: ids are numbered in id order.
        first = np.full(labels.max() + 1 if size else 0, n, dtype=np.int64)
        np.minimum.at(first, labels[:n], np.arange(n))
        con.register("canonical_pos", pa.table({"pos": np.arange(n), "to": first[labels[:n]]}))
        con.execute(
            "CREATE TABLE person AS SELECT i.pos, i.customer_id, c.customer_id AS canonical_id "
            "FROM ids i JOIN canonical_pos x ON x.pos = i.pos JOIN ids c ON c.pos = x.to"
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
            SELECT source_type, source_id, canonical_id FROM (
                SELECT 'customer' AS source_type, customer_id AS source_id, canonical_id,
                       0 AS part, pos AS ord FROM person
                UNION ALL
                SELECT 'anonymous', anonymous_id, canonical_id, 1,
                       row_number() OVER (ORDER BY anonymous_id) FROM linked WHERE n = 1
                UNION ALL
                -- Emails and phones only as digests, in order of first appearance.
                SELECT k.kind, sha256(k.value), p.canonical_id,
                       CASE k.kind WHEN 'email' THEN 2 ELSE 3 END, k.first_seq
                FROM keys k JOIN person p USING (pos))
            ORDER BY part, ord
            """,
        )
        conflicts = fetch_frame(
            con,
            "SELECT anonymous_id, string_agg(canonical_id, ',' ORDER BY canonical_id) "
            "AS canonical_ids, count(*) AS n_customers FROM linked WHERE n > 1 "
            "GROUP BY anonymous_id ORDER BY anonymous_id",
        )
    finally:
        con.close()
    if conflicts.empty:
        conflicts = pd.DataFrame(columns=["anonymous_id", "canonical_ids", "n_customers"])
    return Identity(mapping=mapping, conflicts=conflicts)


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    ((count,),) = con.execute(f"SELECT count(*) FROM {table}").fetchall()
    return int(count)
