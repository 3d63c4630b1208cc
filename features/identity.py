"""Identity resolution: every event ends up on one canonical customer id.

Deterministic only. Two customer records are the same person when they share a
normalised email (trimmed, lower-cased) or a normalised phone number (E.164);
merges are transitive (connected components). A ``login`` / ``identify`` event
links an anonymous id to a customer, so that device's earlier browsing is
attributed to the customer; an anonymous id seen with two different people (a
shared device) merges nobody and is recorded as a conflict instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import phonenumbers
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

MAPPING_COLUMNS = ["source_type", "source_id", "canonical_id"]
NANP_REGIONS = frozenset({"US", "CA"})


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


def normalise_email(emails: pd.Series) -> pd.Series:
    """Trim and lower-case; values without an ``@`` become NA."""
    text = emails.astype("string").str.strip().str.lower()
    return text.where(text.str.contains("@", regex=False).fillna(False))


def normalise_phone(phones: pd.Series, region: str = "US") -> pd.Series:
    """Phone numbers as E.164 (``+14155552671``); numbers that do not parse become NA.

    Parameters
    ----------
    phones : pandas.Series of str
        Numbers as written (any punctuation, with or without a country code).
    region : str
        ISO region assumed for numbers written without a country code.
    """
    text = phones.astype("string").str.strip()
    digits = text.str.replace(r"[\s().\-]", "", regex=True)
    fast = pd.Series(pd.NA, index=text.index, dtype="string")
    # Already international ("+44 20 7946 0958"): E.164 is "+" and the digits.
    international = digits.str.fullmatch(r"\+[1-9]\d{7,14}").fillna(False)
    fast[international] = digits[international]
    if region in NANP_REGIONS:
        # North American numbers written with 10 digits (or 1 + 10): E.164 is +1 and
        # the 10 digits; parse only what this does not cover.
        ten = digits.str.fullmatch(r"1?[2-9]\d{2}[2-9]\d{6}").fillna(False)
        fast[ten] = "+1" + digits[ten].str.slice(-10)
    table: dict[str, str | None] = {}
    for raw in text[fast.isna()].dropna().unique():  # one parse per distinct number
        try:
            parsed = phonenumbers.parse(str(raw), region)
        except phonenumbers.NumberParseException:
            table[str(raw)] = None
            continue
        table[str(raw)] = (
            phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            if phonenumbers.is_possible_number(parsed)
            else None
        )
    return fast.fillna(text.map(table).astype("string"))


def pseudonymise(values: pd.Index | pd.Series) -> np.ndarray:
    """SHA-256 (hex) of each value, vectorised: lets the identity table join on emails and
    phones without holding them (no PII outside the customer table)."""
    frame = pd.DataFrame({"v": np.asarray(values, dtype=object)})
    con = duckdb.connect()
    try:
        con.register("t", frame)
        digests = con.execute("SELECT sha256(v) AS d FROM t").fetchnumpy()["d"]
    finally:
        con.close()
    return np.asarray(digests, dtype=object)


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
    ids = pd.concat(
        [
            customers["customer_id"].astype("string"),
            links["customer_id"].astype("string"),
            (extra_customer_ids if extra_customer_ids is not None else pd.Series([])).astype(
                "string"
            ),
        ]
    ).dropna()
    customer_ids = np.sort(ids.unique().astype(str))
    n = len(customer_ids)
    position = pd.Series(np.arange(n), index=customer_ids)

    records = customers.assign(
        email=normalise_email(customers["email"]),
        phone=normalise_phone(customers["phone"], phone_region),
    )
    rows = position.reindex(records["customer_id"].astype(str)).to_numpy()
    key_frames = []
    for key in ("email", "phone"):
        values = records[key]
        keep = values.notna().to_numpy()
        key_frames.append(
            pd.DataFrame({"row": rows[keep], "key": key + ":" + values[keep].astype(str)})
        )
    keyed = pd.concat(key_frames, ignore_index=True)
    key_codes, key_values = pd.factorize(keyed["key"])
    # Bipartite graph customers ↔ keys; components are people.
    graph = sp.coo_matrix(
        (np.ones(len(keyed)), (keyed["row"].to_numpy(), n + key_codes)),
        shape=(n + len(key_values), n + len(key_values)),
    )
    _, labels = connected_components(graph, directed=False)
    customer_labels = labels[:n]
    # Smallest customer id in each component (ids are sorted, so the first seen).
    first = pd.Series(np.arange(n)).groupby(customer_labels).transform("min").to_numpy()
    canonical_of = pd.Series(customer_ids[first], index=customer_ids)

    key_canonical = pd.Series(canonical_of.to_numpy()[keyed["row"].to_numpy()], index=keyed["key"])
    key_canonical = key_canonical[~key_canonical.index.duplicated()]

    anonymous, conflicts = _attach_anonymous(links, canonical_of)
    mapping = pd.concat(
        [
            _mapping("customer", canonical_of.index, canonical_of.to_numpy()),
            _mapping("anonymous", anonymous.index, anonymous.to_numpy()),
            *[
                _mapping(
                    kind,
                    pseudonymise(keys.index.str.slice(len(kind) + 1)),
                    keys.to_numpy(),
                )
                for kind in ("email", "phone")
                for keys in [key_canonical[key_canonical.index.str.startswith(kind + ":")]]
            ],
        ],
        ignore_index=True,
    )
    return Identity(mapping=mapping, conflicts=conflicts)


def _attach_anonymous(
    links: pd.DataFrame, canonical_of: pd.Series
) -> tuple[pd.Series, pd.DataFrame]:
    pairs = links[["customer_id", "anonymous_id"]].dropna().astype(str)
    pairs = pairs.assign(canonical_id=canonical_of.reindex(pairs["customer_id"]).to_numpy())
    people = pairs.drop_duplicates(["anonymous_id", "canonical_id"])
    count = people.groupby("anonymous_id")["canonical_id"].transform("size")
    single = people[count == 1]
    shared = people[count > 1]
    conflicts = (
        shared.sort_values("canonical_id")
        .groupby("anonymous_id", sort=True)["canonical_id"]
        .agg(canonical_ids=",".join, n_customers="size")
        .reset_index()
    )
    if conflicts.empty:
        conflicts = pd.DataFrame(columns=["anonymous_id", "canonical_ids", "n_customers"])
    anonymous = pd.Series(
        single["canonical_id"].to_numpy(), index=single["anonymous_id"].to_numpy()
    )
    return anonymous.sort_index(), conflicts


def _mapping(
    source_type: str, source_ids: pd.Index | np.ndarray, canonical_ids: np.ndarray
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_type": source_type,
            "source_id": np.asarray(source_ids).astype(str).astype(object),
            "canonical_id": np.asarray(canonical_ids, dtype=object),
        },
        columns=MAPPING_COLUMNS,
    )
