"""Contacts: e-mails and phone numbers in one normal form, placeholders, and their
keyed hashes (contact keys).

The text work is vectorised (Arrow compute); only values outside ASCII take
Python's own string methods, so the result is exactly Python's ``str.strip`` /
``str.lower`` / ``re`` semantics.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from features.pii.hashing import KeyedHasher

NANP_REGIONS = frozenset({"US", "CA"})
# The ASCII characters Python's str.isspace() accepts: what str.strip() removes and
# what the ``\s`` of a ``re`` pattern matches, among ASCII text.
_ASCII_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def _text(values: pd.Series) -> tuple[pa.Array, np.ndarray]:
    """The values as an Arrow string array, and a mask of those outside ASCII."""
    array = pa.array(values.astype("string[pyarrow]"), type=pa.large_string())
    ascii_ = pc.fill_null(pc.string_is_ascii(array), True)
    return array, ~np.asarray(ascii_, dtype=bool)


def _series(array: pa.Array, index: pd.Index) -> pd.Series:
    return pd.Series(array, index=index, dtype="string[pyarrow]")


def normalise_email(emails: pd.Series, *, gmail: bool = False) -> pd.Series:
    """Trim and lower-case; values without an ``@`` become NA.

    ``gmail``: also drop a ``+tag`` from the local part everywhere, and the dots of
    the local part at Gmail (``J.Doe+news@googlemail.com`` → ``jdoe@gmail.com``),
    where they do not change the mailbox.
    """
    array, other = _text(emails)
    text = pc.ascii_lower(pc.ascii_trim(array, characters=_ASCII_SPACE))
    out = _series(pc.if_else(pc.match_substring(text, "@"), text, None), emails.index)
    if other.any():
        rest = emails[other].astype(str).str.strip().str.lower()
        out[other] = rest.where(rest.str.contains("@", regex=False))
    if gmail:
        out = _gmail(out)
    return out


def _gmail(emails: pd.Series) -> pd.Series:
    parts = emails.str.rpartition("@")
    local = parts[0].str.replace(r"\+.*$", "", regex=True)
    domain = parts[2]
    at_gmail = domain.isin(GMAIL_DOMAINS)
    local = local.where(~at_gmail, local.str.replace(".", "", regex=False))
    domain = domain.where(~at_gmail, "gmail.com")
    out = (local + "@" + domain).astype("string[pyarrow]")
    return out.where(emails.notna() & (local.str.len() > 0), emails)


def is_placeholder_email(emails: pd.Series, patterns: tuple[str, ...]) -> np.ndarray:
    """Whether each normalised e-mail matches one of the glob ``patterns`` (``*``: any
    text)."""
    array = pa.array(emails.astype("string[pyarrow]"), type=pa.large_string())
    hit = np.zeros(len(emails), dtype=bool)
    for pattern in patterns:
        like = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = like.replace("*", "%")
        hit |= np.asarray(pc.fill_null(pc.match_like(array, like), False), dtype=bool)
    return hit


def is_placeholder_phone(phones: pd.Series, patterns: tuple[str, ...]) -> np.ndarray:
    """Whether each E.164 number matches one of the regular expressions ``patterns``."""
    array = pa.array(phones.astype("string[pyarrow]"), type=pa.large_string())
    hit = np.zeros(len(phones), dtype=bool)
    for pattern in patterns:
        found = pc.match_substring_regex(array, pattern)
        hit |= np.asarray(pc.fill_null(found, False), dtype=bool)
    return hit


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
    text = values.astype("string").str.strip()
    return text.where(text != "")


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
