"""Erasure end to end, as an operator runs it: a trained home served by a real
``bentoml serve`` under live traffic, ``DELETE /customers/{id}``, then a byte scan of
the whole home, the person's next decision and a retrain."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from bench.server import Server, build_home
from features.data.store import EventStore
from features.snapshot import latest_snapshot, load_snapshot
from tests.commands import run_tailor

pytestmark = pytest.mark.slow
ADMIN = {"Authorization": "Bearer test-admin-key"}
DECIDE = {"Authorization": "Bearer test-decide-key"}
KEYS = {"test-admin-key": ["decide", "ingest", "admin"], "test-decide-key": ["decide"]}
# The demo's own input files (simulated CSVs) are the user's files, not Tailor's stores.
NOT_STORES = ("demo",)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home of its own: erasure rewrites its MLflow artifacts, which the session's
    trained home shares with every copy of it."""
    home = tmp_path_factory.mktemp("erasure") / "home"
    build_home(home, 300, days=10, seed=11)
    return home


@pytest.fixture(scope="module")
def person(home: Path) -> dict[str, object]:
    """A person with several linked ids (records merged by identity resolution, or an
    anonymous id linked by a login) and product history, with their e-mail and phone."""
    snapshot = load_snapshot(latest_snapshot(home / "features"))
    mapping = snapshot.identity.mapping.astype({"source_id": str, "canonical_id": str})
    sizes = mapping.groupby("canonical_id")["source_id"].nunique()
    modelled = set(snapshot.user_ids)
    linked = [c for c in sizes[sizes >= 2].index if c in modelled]
    assert linked, "the simulated store has no person with linked ids and history"
    canonical = linked[0]
    ids = set(mapping.loc[mapping["canonical_id"] == canonical, "source_id"]) | {canonical}
    customers = pd.read_csv(home / "demo" / "data" / "customers.csv", dtype=str)
    records = customers[customers["customer_id"].isin(ids)]
    contacts = {v for c in ("email", "phone") for v in records[c].dropna() if len(v) >= 6}
    others = [c for c in snapshot.user_ids if c not in ids][:20]
    return {"canonical": canonical, "ids": ids, "contacts": contacts, "others": others}


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Server]:
    running = Server(
        home,
        keys=KEYS,
        env={"TAILOR_SERVING__WORKERS": "2", "TAILOR_SERVING__FALLBACK_EPSILON": "0"},
        ready_timeout=180,
    )
    yield running
    running.stop()


def _scan(home: Path, needles: set[str]) -> list[str]:
    """``file: needle`` for every needle found in the bytes of any file of the home."""
    found = []
    patterns = {n: n.encode() for n in needles} | {
        f"{n} (lower)": n.lower().encode() for n in needles
    }
    for path in sorted(home.rglob("*")):
        if not path.is_file() or path.relative_to(home).parts[0] in NOT_STORES:
            continue
        data = path.read_bytes()
        found += [f"{path.relative_to(home)}: {n}" for n, b in patterns.items() if b in data]
    return found


def _whole_ids(home: Path, ids: set[str]) -> list[str]:
    """Ids are matched as whole quoted or delimited tokens by the scan below (a short
    id is a substring of longer ones); the simulator's ids are long and distinctive."""
    return [i for i in ids if len(i) < 6]


def test_erasure_under_live_traffic_leaves_no_trace(home, person, server):
    ids: set[str] = person["ids"]  # type: ignore[assignment]
    assert not _whole_ids(home, ids), f"ids too short to scan for: {ids}"
    assert _scan(home, ids | person["contacts"]), "the person is not in the home to begin with"
    before = server.client.post(
        "/recommend", json={"customer_id": person["canonical"], "n": 5}, headers=DECIDE
    ).json()
    personal = ("model", "rule:")  # what their data chose: the model, or a rule on it
    assert before["strategy"].startswith(personal), before
    others_before = {
        c: server.client.post("/recommend", json={"customer_id": c, "n": 5}, headers=DECIDE).json()
        for c in person["others"]
    }
    events_before = EventStore(home / "store").count("events")

    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=server.url, timeout=60.0) as http:
            while not stop.is_set():
                for customer in [person["canonical"], *person["others"][:5]]:
                    response = http.post(
                        "/recommend", json={"customer_id": customer, "n": 5}, headers=DECIDE
                    )
                    answered[0] += 1
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    erased = server.client.delete(f"/customers/{person['canonical']}", headers=ADMIN)
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join()

    assert erased.status_code == 200, erased.text
    receipt = erased.json()
    assert receipt["ids"] == len(ids)
    assert receipt["removed"]["events"] > 0
    assert receipt["subject"].startswith("hk:")
    assert failures == [] and answered[0] > 20

    # Their next decision, in either worker, is not personalised.
    for _ in range(4):
        after = server.client.post(
            "/recommend", json={"customer_id": person["canonical"], "n": 5}, headers=DECIDE
        ).json()
        assert not after["strategy"].startswith(personal), after
    # Nobody else's answer changed.
    for customer, answer in others_before.items():
        now = server.client.post(
            "/recommend", json={"customer_id": customer, "n": 5}, headers=DECIDE
        ).json()
        assert now["items"] == answer["items"], customer
    # Only their events left the store.
    assert (
        EventStore(home / "store").count("events") == events_before - receipt["removed"]["events"]
    )
    # Not a byte of them anywhere in the home; the receipt and audit hold a keyed hash.
    assert _scan(home, ids | person["contacts"]) == []
    reloaded = server.client.post("/admin/reload", json={}, headers=ADMIN)
    assert reloaded.status_code == 200, reloaded.text
    audit = run_tailor("audit", "--json", home=home)
    entries = [json.loads(line) for line in audit.stdout.splitlines()]
    erase = [e for e in entries if e["action"] == "erase"]
    assert len(erase) == 1 and erase[0]["details"]["receipt_id"] == receipt["receipt_id"]
    assert erase[0]["target"] == receipt["subject"]
    # Who: the key's id, never the key.
    reload = [e for e in entries if e["action"] == "reload"]
    assert reload and reload[-1]["actor"].startswith("settings-")
    assert "test-admin-key" not in audit.stdout

    # A deletion of someone no store knows is a 404 in the one error shape.
    missing = server.client.delete("/customers/nobody-at-all", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"]["code"]
    # Deleting needs the admin scope.
    refused = server.client.delete(f"/customers/{person['others'][0]}", headers=DECIDE)
    assert refused.status_code == 403


def test_tailor_erase_reaches_the_running_service(home, person, server):
    """``tailor erase`` runs in its own process: the service, both workers, stops
    deciding for the person from its models on the next request."""
    other = person["others"][-1]
    before = server.client.post(
        "/recommend", json={"customer_id": other, "n": 5}, headers=DECIDE
    ).json()
    assert before["strategy"].startswith(("model", "rule:")), before
    erased = run_tailor("erase", other, home=home)
    assert erased.returncode == 0, erased.stderr[-2000:]
    receipt = json.loads(erased.stdout)
    assert receipt["actor"].startswith("cli:") and receipt["subject"].startswith("hk:")
    for _ in range(4):
        after = server.client.post(
            "/recommend", json={"customer_id": other, "n": 5}, headers=DECIDE
        ).json()
        assert not after["strategy"].startswith(("model", "rule:")), after
    assert _scan(home, {other}) == []
    again = run_tailor("erase", other, home=home)
    assert again.returncode == 2 and "no store" in again.stderr


def test_a_retrain_after_erasure_leaves_them_out(home, person, server):
    built = run_tailor("features", "build", home=home)
    assert built.returncode == 0, built.stderr[-2000:]
    trained = run_tailor("train", "recommender", "--tune-budget", "1", home=home)
    assert trained.returncode in (0, 1), trained.stderr[-2000:]
    snapshot = load_snapshot(latest_snapshot(home / "features"))
    ids: set[str] = person["ids"]  # type: ignore[assignment]
    assert not ids & set(snapshot.customers["customer_id"].astype(str))
    assert not ids & set(snapshot.user_ids)
    assert _scan(home, ids | person["contacts"]) == []
