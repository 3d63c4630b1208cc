"""Contact keys: the keyed hash of each customer record's normalised e-mail and phone.

The one form in which an address is compared outside the customer table: the
suppression list holds these keys, and identity tables show them instead of the
address. ``email:`` / ``phone:`` / ``id:`` prefix the value before hashing, so an id
that happens to equal an e-mail never shares its key.
"""

from __future__ import annotations

import pandas as pd

from features.identity.keys import normalise_email, normalise_phone
from features.privacy.hashing import KeyedHasher

KINDS = ("email", "phone", "id")


def key_text(kind: str, value: str) -> str:
    """What is hashed for a contact of ``kind``: ``email:jane@example.com``."""
    if kind not in KINDS:
        raise ValueError(f"contact kind {kind!r}; expected one of {KINDS}")
    return f"{kind}:{value}"


def normalised(
    kind: str, values: pd.Series, *, region: str = "US", gmail: bool = False
) -> pd.Series:
    """``values`` in the form identity resolution compares (NA where not an address)."""
    if kind == "email":
        return normalise_email(values, gmail=gmail)
    if kind == "phone":
        return normalise_phone(values, region)
    return values.astype("string").str.strip().replace("", pd.NA)


def contact_keys(
    customers: pd.DataFrame,
    hasher: KeyedHasher,
    *,
    region: str = "US",
    gmail: bool = False,
) -> pd.DataFrame:
    """``customer_id, kind, key``: one row per record's e-mail and phone (normalised,
    keyed-hashed); records without either give no row."""
    frames = []
    for kind in ("email", "phone"):
        if kind not in customers.columns:
            continue
        values = normalised(kind, customers[kind], region=region, gmail=gmail)
        present = values.notna().to_numpy()
        ids = customers["customer_id"].astype(str).to_numpy()[present]
        keys = [hasher.hash(key_text(kind, str(v))) for v in values[present]]
        frames.append(pd.DataFrame({"customer_id": ids, "kind": kind, "key": keys}))
    if not frames:
        return pd.DataFrame({"customer_id": [], "kind": [], "key": []}, dtype="object")
    return pd.concat(frames, ignore_index=True).drop_duplicates()
