"""Personal data: the attribute names that hold it, and how a kept raw row hides it.

Tailor keeps contact data in one place, the customer table of the event store. Every
other store sees a person's e-mail, phone, name, address, postcode or date of birth
either not at all or as a keyed hash (:mod:`features.pii.hashing`):

* :data:`PII_ATTRIBUTES` lists the attribute names that are personal data. Identity
  resolution reads them in memory to match records; they never become feature columns
  or segment variables (:mod:`features.snapshot.attributes`).
* :func:`mask_raw_rows` masks the raw rows a quarantine keeps (ingest's and the posted
  events'). A contact field (``email``, ``phone`` and their aliases) becomes its keyed
  hash exactly as the suppression list and the identity tables make it,
  ``hasher.hash(key_text(kind, normalised value))`` (the stripped text where the value
  does not normalise), so an operator who hashes an address finds the row; any other
  personal attribute becomes ``hasher.hash("<attribute name>:<stripped value>")``;
  both at the top level and inside JSON (``attributes``, ``properties``). Every other
  text passes through :func:`~features.pii.hashing.redact`, which masks anything
  shaped like an e-mail address or a phone number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from features.pii.contacts import key_text, normalised
from features.pii.hashing import KeyedHasher
from features.pii.redaction import redact
from features.settings import PrivacyConfig

_CONTACTS: dict[str, str] = {
    "email": "email",
    "e_mail": "email",
    "email_address": "email",
    "phone": "phone",
    "phone_number": "phone",
    "mobile": "phone",
    "mobile_phone": "phone",
    "telephone": "phone",
}
PII_ATTRIBUTES: frozenset[str] = frozenset(
    {
        *_CONTACTS,
        # names
        "name",
        "full_name",
        "first_name",
        "given_name",
        "firstname",
        "forename",
        "fname",
        "middle_name",
        "last_name",
        "surname",
        "family_name",
        "lastname",
        "lname",
        # street address and postcode
        "address",
        "address_1",
        "address_2",
        "address_line_1",
        "address_line_2",
        "street",
        "street_address",
        "street_number",
        "postcode",
        "postal_code",
        "zip",
        "zip_code",
        "zipcode",
        # date of birth
        "date_of_birth",
        "dob",
        "birth_date",
        "birthdate",
        "birthday",
    }
)
"""Attribute names (lower case) that are personal data: contact fields, names, street
address, postcode / ZIP code and date of birth. The city, country and time zone are not
on it: they describe where a customer is, which regional campaigns target."""

HasherSource = KeyedHasher | Callable[[], KeyedHasher]
"""A hasher, or what makes one when a value is first hashed (so a quarantine without
personal data never needs the key)."""

_SUFFIX = re.compile(r"#\d+$")  # a repeated key of a kept raw row: "email#3"
_NOT_WORD = re.compile(r"[^0-9a-z]+")


LOCATION_ATTRIBUTES: frozenset[str] = frozenset(
    {"postcode", "postal_code", "zip", "zip_code", "zipcode"}
)
"""Personal data that still describes a customer: where they live is what regional
campaigns target (and a public log's ``zip_code`` may be a region type, as in
Hillstrom's). Features, then; masked in a quarantine like the rest."""
NOT_FEATURES: frozenset[str] = PII_ATTRIBUTES - LOCATION_ATTRIBUTES
"""Personal attributes that never become features or segment variables."""


def attribute_name(key: object) -> str:
    """``key`` as :data:`PII_ATTRIBUTES` spells names: lower case, words joined by
    ``_`` (``" First Name "`` → ``first_name``)."""
    text = _SUFFIX.sub("", str(key)).strip().lower()
    return _NOT_WORD.sub("_", text).strip("_")


def is_personal(key: object) -> bool:
    """Whether an attribute or column named ``key`` holds personal data."""
    return attribute_name(key) in PII_ATTRIBUTES


def home_hasher(home: Path) -> KeyedHasher:
    """The hasher of a home whose settings give no ``privacy.hash_key``: the home's own
    key (``home/secrets/hash.key``, made on first use). Callers that have the settings
    pass ``KeyedHasher.from_settings(settings.privacy, settings.home)`` instead.

    Raises
    ------
    WriteFailed
        The key does not exist yet and cannot be written (a read-only or full home).
    """
    return KeyedHasher.from_settings(PrivacyConfig(), home)


def resolved(hasher: HasherSource) -> KeyedHasher:
    """The hasher ``hasher`` stands for (made now, when it is a callable)."""
    return hasher if isinstance(hasher, KeyedHasher) else hasher()


def mask_raw_rows(
    raws: Sequence[str | None], hasher: HasherSource, *, region: str = "US"
) -> list[str | None]:
    """Each kept raw row with its personal data masked (see the module docstring).

    Parameters
    ----------
    raws : sequence of str or None, length n
        Rows as a quarantine keeps them: a JSON object (a validated row) or the text
        of a line that could not be read (masked by :func:`redact` only).
    hasher : KeyedHasher or callable
        The keyed hash; a callable is called once, only if some value is hashed.
    region : str
        Region of phone numbers written without a country code.

    Returns
    -------
    list of str or None, length n
        The masked rows (JSON objects stay JSON objects; None stays None).
    """
    objects = [_json_object(raw) if raw is not None else None for raw in raws]
    found: list[tuple[str, str]] = []
    for obj in objects:
        if obj is not None:
            _personal_values(obj, found)
    hashes = _hashes(found, hasher, region) if found else {}
    out: list[str | None] = []
    for raw, obj in zip(raws, objects, strict=True):
        if raw is None:
            out.append(None)
        elif obj is None:
            out.append(redact(raw))
        else:
            out.append(_dump(_masked(obj, hashes)))
    return out


def _dump(value: Any) -> str:
    """JSON text, as validation keeps a raw row: escaped only where it holds text
    that is not Unicode (lone surrogates), which UTF-8 cannot store."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, default=str)
    return text


def _json_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _text(value: Any) -> str:
    """A personal value as the text that is hashed."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return str(value).strip()


def _personal_values(value: Any, found: list[tuple[str, str]]) -> None:
    """Append (attribute name, text) of every personal value in ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            name = attribute_name(key)
            if name in PII_ATTRIBUTES:
                if item is not None and _text(item):
                    found.append((name, _text(item)))
            else:
                _personal_values(item, found)
    elif isinstance(value, list):
        for item in value:
            _personal_values(item, found)
    elif isinstance(value, str):
        nested = _json_object(value)
        if nested is not None:
            _personal_values(nested, found)


def _hashes(
    found: list[tuple[str, str]], hasher: HasherSource, region: str
) -> dict[tuple[str, str], str]:
    """The keyed hash of each (attribute name, text); contacts normalised together, one
    pass per kind."""
    keyed = resolved(hasher)
    distinct = sorted(set(found))
    out: dict[tuple[str, str], str] = {}
    for kind in ("email", "phone"):
        pairs = [(name, text) for name, text in distinct if _CONTACTS.get(name) == kind]
        if not pairs:
            continue
        texts = pd.Series([text for _, text in pairs], dtype="string")
        normal = normalised(kind, texts, region=region)
        for pair, text, value in zip(pairs, texts, normal, strict=True):
            out[pair] = keyed.hash(key_text(kind, text if pd.isna(value) else str(value)))
    for name, text in distinct:
        if name not in _CONTACTS:
            out[(name, text)] = keyed.hash(f"{name}:{text}")
    return out


def _masked(value: Any, hashes: dict[tuple[str, str], str]) -> Any:
    """``value`` with personal values replaced by their hashes and other text redacted."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = attribute_name(key)
            masked_key = redact(str(key))
            if name in PII_ATTRIBUTES and item is not None and _text(item):
                out[masked_key] = hashes[(name, _text(item))]
            else:
                out[masked_key] = _masked(item, hashes)
        return out
    if isinstance(value, list):
        return [_masked(item, hashes) for item in value]
    if isinstance(value, str):
        nested = _json_object(value)
        if nested is not None:
            return _dump(_masked(nested, hashes))
        return redact(value)
    return value


def without_personal_data(value: Any) -> Any:
    """``value`` (JSON-like) with personal attributes' values replaced by
    ``"<personal data>"`` and e-mail- or phone-shaped text masked: for what a client
    sends along that Tailor only logs (a decision request's ``context``)."""
    if isinstance(value, dict):
        return {
            key: "<personal data>"
            if is_personal(key) and item is not None
            else without_personal_data(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [without_personal_data(item) for item in value]
    if isinstance(value, str):
        return redact(value)
    return value
