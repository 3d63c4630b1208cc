"""The privacy ledger and its keyed hash: what survives a key rotation, what the home's
own key looks like, and that no entry holds an address or id in the clear."""

from __future__ import annotations

import os
import stat

import pytest
from pydantic import SecretStr

from features.errors import InputError
from features.pii.hashing import KeyedHasher
from features.privacy.ledger import PrivacyLedger
from features.settings import PrivacyConfig, TailorSettings

OLD = "an-old-secret-of-enough-length"
NEW = "a-new-secret-of-enough-length!"


def _settings(home, **privacy) -> TailorSettings:
    return TailorSettings(home=home, privacy=PrivacyConfig(**privacy))


def test_entries_made_under_a_retired_key_still_match_after_rotation(tmp_path):
    before = PrivacyLedger.for_settings(_settings(tmp_path, hash_key=SecretStr(OLD)))
    before.suppress([("email", "jo@example.com"), ("id", "c1")], reason="legal")
    before.mark_erased(["c9", "anon-9"])
    assert before.erased(["c9", "c10"]) == {"c9"}

    rotated = _settings(
        tmp_path,
        hash_key=SecretStr(NEW),
        hash_key_id="k2",
        retired_hash_keys={"k1": SecretStr(OLD)},
    )
    after = PrivacyLedger.for_settings(rotated)
    assert after.suppressed_ids(["c1", "c2"]) == {"c1": "legal"}
    assert after.erased(["c9", "anon-9", "c10"]) == {"c9", "anon-9"}
    # New entries use the new key, named in the hash.
    after.suppress([("id", "c2")], reason="complaint")
    kinds = {e["key"].split(":")[1] for e in after.suppression()}
    assert kinds == {"k1", "k2"}
    # Removing an entry finds it under whichever key made it.
    assert after.unsuppress([("id", "c1")]) == 1
    assert after.suppressed_ids(["c1", "c2"]) == {"c2": "complaint"}

    # Without the retired key, the old entries no longer match (a key lost is a list lost).
    forgot = PrivacyLedger.for_settings(
        _settings(tmp_path, hash_key=SecretStr(NEW), hash_key_id="k2")
    )
    assert forgot.erased(["c9"]) == set()


def test_no_entry_holds_an_address_or_an_id_in_the_clear(tmp_path):
    ledger = PrivacyLedger.for_settings(_settings(tmp_path))
    ledger.suppress([("email", "jo.banks@example.com")], reason="legal")
    ledger.mark_erased(["customer-4711"])
    ledger.add_receipt(actor="cli:ops", subject=ledger.key("id", "customer-4711"), body={"ids": 1})
    ledger.audit("k_1234abcd", "erase", ledger.key("id", "customer-4711"), {"ids": 1})
    blob = b"".join(p.read_bytes() for p in (tmp_path / "privacy").iterdir() if p.is_file())
    assert b"jo.banks@example.com" not in blob and b"customer-4711" not in blob
    [entry] = ledger.audit_log()
    assert entry.actor == "k_1234abcd" and entry.target.startswith("hk:local:")


def test_the_homes_own_key_is_made_once_private_and_kept(tmp_path):
    first = KeyedHasher.from_settings(PrivacyConfig(), tmp_path)
    path = tmp_path / "secrets" / "hash.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = KeyedHasher.from_settings(PrivacyConfig(), tmp_path)
    assert first.hash("email:a@b.co") == again.hash("email:a@b.co")
    assert first.hash("email:a@b.co").startswith("hk:local:")
    other = KeyedHasher.from_settings(PrivacyConfig(), tmp_path / "elsewhere")
    assert other.hash("email:a@b.co") != first.hash("email:a@b.co")


def test_a_short_configured_key_is_refused_without_echoing_it(tmp_path):
    with pytest.raises(InputError) as refused:
        KeyedHasher.from_settings(PrivacyConfig(hash_key=SecretStr("short")), tmp_path)
    assert "privacy.hash_key" in str(refused.value) and "short" not in str(refused.value)
