"""``tailor suppress``, ``tailor retention`` and ``tailor audit``, run as a user would.

(``tailor erase`` against a running service is in ``tests/e2e/test_erasure.py``.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from cli.settings import Settings
from features.data.store import EventStore
from features.privacy.ledger import PrivacyLedger
from tests.commands import run_tailor

EMAIL = "Jo.Banks@Example.com"


def _ledger(home: Path) -> PrivacyLedger:
    return PrivacyLedger.for_settings(Settings(home=home))


def test_suppress_keeps_only_keyed_hashes_and_is_audited(tmp_path):
    home = tmp_path / "home"
    added = run_tailor(
        "suppress", "add", "--email", EMAIL, "--customer-id", "c42", "--reason", "legal", home=home
    )
    assert added.returncode == 0, added.stderr
    assert "added 2 new entries" in added.stdout
    ledger = _ledger(home)
    assert ledger.suppressed_ids(["c42", "c43"]) == {"c42": "legal"}
    # The address, normalised, is found by its keyed hash; nothing stores it plainly.
    assert ledger.key("email", EMAIL.lower()) in ledger.suppressed_keys()
    for path in (home / "privacy").rglob("*"):
        if path.is_file():
            assert EMAIL.lower().encode() not in path.read_bytes().lower(), path
    listed = run_tailor("suppress", "list", home=home)
    assert listed.returncode == 0 and EMAIL.lower() not in listed.stdout.lower()
    assert listed.stdout.count("hk:") == 2 and "legal" in listed.stdout

    # Not an address: refused naming the option, without echoing the value.
    bad = run_tailor("suppress", "add", "--email", "not-an-address", home=home)
    assert bad.returncode == 2 and "--email" in bad.stderr and "not-an-address" not in bad.stderr

    csv = tmp_path / "list.csv"
    pd.DataFrame({"email": ["ann@example.org", ""], "customer_id": ["c7", "c8"]}).to_csv(
        csv, index=False
    )
    imported = run_tailor("suppress", "import", str(csv), home=home)
    assert imported.returncode == 0 and "added 3 new entries" in imported.stdout
    assert set(_ledger(home).suppressed_ids(["c7", "c8", "c9"])) == {"c7", "c8"}

    removed = run_tailor("suppress", "remove", "--customer-id", "c42", home=home)
    assert removed.returncode == 0 and "removed 1 of 1" in removed.stdout
    assert _ledger(home).suppressed_ids(["c42"]) == {}

    audit = run_tailor("audit", "--json", home=home)
    actions = [json.loads(line)["action"] for line in audit.stdout.splitlines()]
    assert actions == ["suppress_add", "suppress_import", "suppress_remove"]
    entries = [json.loads(line) for line in audit.stdout.splitlines()]
    assert all(e["actor"].startswith("cli:") for e in entries)
    assert EMAIL.lower() not in audit.stdout.lower()


def test_retention_drops_what_is_older_than_configured_and_is_audited(tmp_path):
    home = tmp_path / "home"
    events = tmp_path / "events.csv"
    pd.DataFrame(
        {
            "event_id": ["old", "new"],
            "ts": ["2024-01-10T10:00:00Z", "2026-11-20T10:00:00Z"],
            "event_type": "product_view",
            "customer_id": ["c1", "c2"],
            "item_id": "i1",
        }
    ).to_csv(events, index=False)
    ingested = run_tailor("ingest", str(events), "--kind", "events", home=home)
    assert ingested.returncode == 0, ingested.stderr
    kept = run_tailor(
        "retention",
        "--now",
        "2026-12-01T00:00:00",
        home=home,
        env={"TAILOR_PRIVACY__RETENTION_DAYS_EVENTS": "365"},
    )
    assert kept.returncode == 0, kept.stderr
    assert "events: 1 removed" in kept.stdout
    assert EventStore(home / "store").read("events")["event_id"].tolist() == ["new"]
    audit = run_tailor("audit", "--json", home=home)
    [entry] = [json.loads(line) for line in audit.stdout.splitlines()]
    assert entry["action"] == "retention" and entry["details"]["removed"]["events"] == 1
    assert entry["details"]["retention_days"]["events"] == 365


def test_promotions_and_model_aliases_moved_from_the_command_line_are_audited(
    trained_home, tmp_path
):
    home = tmp_path / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("online", "demo"))
    from training.tracking import configure

    client = configure(home)
    source = client.get_model_version("tailor-recommender", "1")
    second = client.create_model_version(
        "tailor-recommender", source.source, run_id=source.run_id
    ).version
    made = run_tailor("challenger", "recommender", str(second), home=home)
    assert made.returncode == 0, made.stderr
    cleared = run_tailor("challenger", "recommender", "--clear", home=home)
    assert cleared.returncode == 0, cleared.stderr
    audit = run_tailor("audit", "--json", home=home)
    entries = [json.loads(line) for line in audit.stdout.splitlines()]
    # The demo's training runs promoted its champions: audited as they happened.
    promoted = {e["target"] for e in entries if e["action"] == "promote"}
    assert "tailor-recommender" in promoted
    assert all(e["details"]["by"] == "train" for e in entries if e["action"] == "promote")
    entries = [e for e in entries if e["action"] != "promote"]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("challenger_set", "tailor-recommender"),
        ("challenger_clear", "tailor-recommender"),
    ]
    assert str(entries[0]["details"]["version"]) == str(second)
    assert str(entries[1]["details"]["version"]) == str(second)
