"""Personal data outside the customer table: identity keys are keyed hashes, snapshots
carry no contact data, and quarantined rows and their reasons are masked."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.data.ingest import ingest_file
from features.data.online_log import OnlineEventLog
from features.data.store import EventStore
from features.errors import InputError
from features.identity.resolution import resolve_identities
from features.pii.contacts import key_text
from features.pii.hashing import KeyedHasher
from features.pii.masking import PII_ATTRIBUTES, is_personal, mask_raw_rows
from features.segments import load_segments
from features.settings import FeatureConfig
from features.snapshot import behaviour_feature_names, build_snapshot

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
HASHER = KeyedHasher("k1", b"pii-test-key-0123456789abcdefghij")
OTHER = KeyedHasher("k1", b"another-key-0123456789abcdefghijk")
NO_LINKS = pd.DataFrame(columns=["customer_id", "anonymous_id"])

ANN = "ann.lee@mail.example"
ANN_PHONE = "(415) 555-2671"  # E.164: +14155552671
TOM = "tom.lee@mail.example"
HOUSEHOLD_PHONE = "415 555 0199"  # shared by Ann's sister: names differ, refused


def _customers() -> pd.DataFrame:
    def attributes(first: str) -> str:
        return json.dumps(
            {
                "first_name": first,
                "last_name": "Lee",
                "date_of_birth": "1980-02-03",
                "postcode": "94110",
                "address": "1 Main Street",
                "city": "San Francisco",
                "loyalty_tier": "gold",
            }
        )

    return pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3", "c4"],
            "email": [ANN, " Ann.Lee@Mail.example", TOM, "sis@mail.example"],
            "phone": [ANN_PHONE, "+1 415 555 2671", HOUSEHOLD_PHONE, "(415) 555-0199"],
            "consent_email": True,
            "consent_personalization": True,
            "attributes": [attributes(n) for n in ("Ann", "Ann", "Tom", "Sue")],
        }
    )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _contact_forms() -> list[str]:
    """Every way a test contact may be written: as given, normalised, lower-cased."""
    forms = {ANN, TOM, "sis@mail.example", ANN_PHONE, HOUSEHOLD_PHONE, "(415) 555-0199"}
    forms |= {"+14155552671", "+14155550199", "4155552671", "4155550199"}
    return sorted(forms | {f.lower() for f in forms})


def _digests() -> list[str]:
    """Plain SHA-256 of each contact form: reversed in seconds by hashing every number."""
    return [_sha256(f) for f in _contact_forms()]


# ---------------------------------------------------------------- identity keys
def test_identity_keys_are_keyed_hashes_of_the_normalised_contact():
    identity = resolve_identities(_customers(), NO_LINKS, hasher=HASHER)
    assert identity.canonical("customer")["c2"] == "c1"
    keys = identity.mapping[identity.mapping["source_type"].isin(["email", "phone"])]
    assert set(keys["source_id"]) == {
        HASHER.hash(key_text("email", ANN)),
        HASHER.hash(key_text("phone", "+14155552671")),
    }
    refused = identity.conflicts.set_index("reason").loc["names_differ"]
    assert refused["key"] == HASHER.hash(key_text("phone", "+14155550199"))
    assert set(identity.links["key"]) == set(keys["source_id"])
    # Another key gives other hashes, the same people.
    other = resolve_identities(_customers(), NO_LINKS, hasher=OTHER)
    assert other.canonical("customer").equals(identity.canonical("customer"))
    other_keys = set(other.mapping.loc[other.mapping["source_type"] != "customer", "source_id"])
    assert other_keys.isdisjoint(set(keys["source_id"]))
    # Neither the contacts nor their plain digests appear in any table.
    text = "".join(f.to_csv() for f in (identity.mapping, identity.links, identity.conflicts))
    text += json.dumps(identity.report)
    for needle in [*_contact_forms(), *_digests(), "mail.example"]:
        assert needle not in text.lower(), needle


def test_keys_no_two_records_share_are_not_shown():
    """A key held by one record linked nobody: no table needs it, none shows it."""
    identity = resolve_identities(_customers(), NO_LINKS, hasher=HASHER)
    shown = set(identity.mapping["source_id"]) | set(identity.conflicts["key"].astype(str))
    assert HASHER.hash(key_text("email", TOM)) not in shown


def test_no_snapshot_file_holds_a_contact_a_plain_digest_or_a_personal_attribute(
    tmp_path: Path,
):
    customers_csv = tmp_path / "customers.csv"
    _customers().to_csv(customers_csv, index=False)
    events_csv = tmp_path / "events.csv"
    pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3"],
            "ts": "2026-11-01T10:00:00Z",
            "event_type": "product_view",
            "customer_id": ["c1", "c2", "c3"],
            "item_id": ["i1", "i2", "i1"],
        }
    ).to_csv(events_csv, index=False)
    home = tmp_path / "home"
    store = EventStore(home / "store")
    for path, kind in ((customers_csv, "customers"), (events_csv, "events")):
        ingest_file(path, kind=kind, store=store, now=NOW, hasher=HASHER)
    config = FeatureConfig()
    snapshot = build_snapshot(
        store,
        as_of=NOW,
        config=config,
        segments=load_segments(None, behaviour_feature_names(config)),
        write_to=home / "features",
        hasher=HASHER,
    )
    attributes = {c for c in snapshot.customers.columns if c.startswith("attr_")}
    # A postcode describes where a customer lives (regional campaigns): a feature.
    assert attributes == {"attr_city", "attr_loyalty_tier", "attr_postcode"}
    folder = Path(snapshot.manifest["path"])
    files = sorted(folder.rglob("*"))
    assert {"identity.parquet", "identity_links.parquet", "customers.parquet"} <= {
        f.name for f in files
    }
    needles = [*_contact_forms(), *_digests(), "mail.example", "1 main street", "1980-02-03"]
    for path in files:
        if not path.is_file():
            continue
        blobs = [path.read_bytes().lower()]
        if path.suffix == ".parquet":  # compressed pages: read the values too
            blobs.append(str(pq.read_table(path).to_pylist()).lower().encode())
        for blob in blobs:
            for needle in needles:
                assert needle.encode() not in blob, (path.name, needle)
    identity = pq.read_table(folder / "identity.parquet").to_pandas()
    assert HASHER.hash(key_text("email", ANN)) in set(identity["source_id"])


def test_personal_attribute_names():
    for name in ("email", "phone", "first_name", "last_name", "postcode", "zip", "dob"):
        assert name in PII_ATTRIBUTES
    assert is_personal(" First Name ") and is_personal("E-Mail") and is_personal("email#3")
    assert not is_personal("city") and not is_personal("loyalty_tier")


# ---------------------------------------------------------------- quarantine
def _bad_customers(path: Path) -> None:
    header = (
        "customer_id,email,phone,country,signup_ts,consent_email,"
        "consent_personalization,consent_updated_ts,attributes\n"
    )
    rows = [
        # a timestamp column holding an address, an e-mail and phone that are fine
        f'c1,{ANN},"{ANN_PHONE}",US,write to {TOM},true,true,,'
        '"{""first_name"": ""Ann"", ""postcode"": ""94110"", ""note"": ""or +44 20 7946 0958""}"',
        # no customer id; the flag holds a phone number
        f",{TOM},{HOUSEHOLD_PHONE},US,2026-01-01T00:00:00Z,{HOUSEHOLD_PHONE},true,,",
        # an e-mail too long for the field
        f"c3,{'x' * 300}@mail.example,,US,2026-01-01T00:00:00Z,true,true,,",
        # a line that cannot be split into the columns
        "c4,sis@mail.example,(415) 555-0199,US,2026-01-01T00:00:00Z,true,true,,,extra",
    ]
    path.write_text(header + "\n".join(rows) + "\n")


def test_quarantined_customer_rows_keep_keyed_hashes_not_contacts(tmp_path: Path):
    source = tmp_path / "customers.csv"
    _bad_customers(source)
    store = EventStore(tmp_path / "home" / "store")
    report = ingest_file(source, kind="customers", store=store, now=NOW, hasher=HASHER)
    assert report.quarantined == 4 and report.accepted == 0
    quarantine = store.read("quarantine/customers", current=False)
    lines = quarantine["line_number"].tolist()
    reasons: dict[int, str] = dict(zip(lines, quarantine["reason"].tolist(), strict=True))
    raws: dict[int, str] = dict(zip(lines, quarantine["raw"].tolist(), strict=True))
    # Reasons name the field and say why, without the value.
    assert "signup_ts: 'write to <email>' is not a timestamp" in reasons[2]
    assert "consent_email: '<phone>' is not true/false" in reasons[3]
    assert "email: (value not shown: personal data) is 313 characters long" in reasons[4]
    # Contacts and personal attributes as their keyed hashes, found by hashing them.
    first = json.loads(raws[2])
    assert first["email"] == HASHER.hash(key_text("email", ANN))
    assert first["phone"] == HASHER.hash(key_text("phone", "+14155552671"))
    assert first["signup_ts"] == "write to <email>"
    attributes = json.loads(first["attributes"])
    assert attributes["first_name"] == HASHER.hash("first_name:Ann")
    assert attributes["postcode"] == HASHER.hash("postcode:94110")
    assert attributes["note"] == "or <phone>"
    second = json.loads(raws[3])
    assert second["consent_email"] == "<phone>"  # not a phone field: masked, not hashed
    assert "<email>" in raws[5] and "<phone>" in raws[5]
    # No byte of the stored files holds a contact, written any way.
    needles = [*_contact_forms(), "+44 20 7946 0958", "x" * 300, '"ann"', "94110"]
    for path in (store.root / "quarantine").rglob("*.parquet"):
        blobs = [path.read_bytes().lower(), str(pq.read_table(path).to_pylist()).lower().encode()]
        for blob in blobs:
            for needle in needles:
                assert needle.encode() not in blob, needle
    # The same rows again: recognised as already quarantined (the masking is stable).
    again = ingest_file(source, kind="customers", store=store, now=NOW, hasher=HASHER)
    assert again.already_quarantined == 4


def test_quarantine_without_a_hasher_uses_the_homes_own_key(tmp_path: Path):
    source = tmp_path / "customers.csv"
    _bad_customers(source)
    home = tmp_path / "home"
    store = EventStore(home / "store")
    ingest_file(source, kind="customers", store=store, now=NOW)
    own = KeyedHasher("local", (home / "secrets" / "hash.key").read_text().strip().encode())
    raw = store.read("quarantine/customers", current=False).set_index("line_number")["raw"]
    assert json.loads(raw.loc[2])["email"] == own.hash(key_text("email", ANN))


def test_posted_events_quarantine_and_answer_hold_no_contact(tmp_path: Path):
    path = tmp_path / "home" / "online" / "events.db"
    log = OnlineEventLog(path, hasher=HASHER)
    good = {
        "event_id": "ok",
        "ts": (NOW - timedelta(hours=1)).isoformat(),
        "event_type": "product_view",
        "customer_id": "c1",
        "item_id": "i1",
    }
    records: list[dict[str, Any]] = [
        good,
        {**good, "event_id": "b1", "ts": f"call {ANN_PHONE}", "properties": {"email": ANN}},
        {**good, "event_id": "b2", "event_type": f"mail {TOM}", "phone": HOUSEHOLD_PHONE},
        {**good, "event_id": "b3", "price": "+1 415 555 2671"},
    ]
    appended = log.append(records, now=NOW, max_future_skew=timedelta(days=1))
    assert len(appended.accepted) == 1
    reasons = appended.rejected.set_index("index")["reason"]
    assert "ts: 'call <phone>' is not a timestamp" in reasons.loc[1]
    assert "event_type: 'mail <email>' is not one of" in reasons.loc[2]
    assert "price: '<phone>' is not a number" in reasons.loc[3]
    kept = log.quarantined().set_index("seq")["raw"].tolist()
    first = json.loads(kept[0])
    assert first["properties"]["email"] == HASHER.hash(key_text("email", ANN))
    assert json.loads(kept[1])["phone"] == HASHER.hash(key_text("phone", "+14155550199"))
    log.close()
    with sqlite3.connect(path) as con:  # the WAL folded into the file
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for file in path.parent.iterdir():
        blob = file.read_bytes().lower()
        for needle in _contact_forms():
            assert needle.encode() not in blob, (file.name, needle)
    text = " ".join(reasons).lower()
    assert not any(needle in text for needle in _contact_forms())


def test_masking_keeps_what_is_not_personal():
    rows = [
        json.dumps({"customer_id": "c9", "country": "US", "note": None, "n": 3}),
        "not json at all: x@y.org",
        None,
    ]
    out = mask_raw_rows(rows, lambda: pytest.fail("no personal value: no key needed"))
    assert json.loads(str(out[0])) == {"customer_id": "c9", "country": "US", "note": None, "n": 3}
    assert out[1:] == ["not json at all: <email>", None]


def test_input_errors_mask_contacts_in_the_value_they_quote():
    error = InputError("email", f"{ANN} / {ANN_PHONE}", "unknown address")
    assert str(error) == "email='<email> / <phone>': unknown address"
    assert error.value == f"{ANN} / {ANN_PHONE}"  # kept for the caller, not printed
