"""No raw e-mail address or phone number anywhere in a home but the customer table.

The demo pipeline runs small, as a user runs it (``tailor demo --no-serve``); the
decision core then answers a few decisions (so the decision log has rows) and takes
posted events, some of them bad and holding contact data; a customers file with bad
rows holding contact data is ingested; and ``tailor features build`` runs again. Every
byte under ``TAILOR_HOME`` is then searched for the simulated customers' e-mails and
phones (as written, lower-cased, and as E.164), Parquet values and archive members
decoded too, except:

* ``store/customers/``: the customer table, the system of record, keeps contact data;
* ``demo/data/``: the simulated shop's own export and answer key, the files a user
  hands to ``tailor ingest`` (not something Tailor keeps).
"""

from __future__ import annotations

import csv
import gzip
import json
import sqlite3
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import phonenumbers
import pyarrow.parquet as pq
import pytest

from features.pii.contacts import key_text
from features.pii.hashing import KeyedHasher
from tests.commands import run_tailor

pytestmark = pytest.mark.slow

SYSTEM_OF_RECORD = ("store/customers/", "demo/data/")
EXTRA_EMAIL = "Leak.Check+promo@Example.ORG"
EXTRA_PHONE = "+44 20 7946 0958"


def _contacts(home: Path) -> tuple[list[dict[str, str]], list[str]]:
    """The simulated customers, and every form their e-mails and phones may take."""
    with open(home / "demo" / "data" / "customers.csv", newline="") as fh:
        people = list(csv.DictReader(fh))
    needles = {EXTRA_EMAIL, EXTRA_PHONE, "+442079460958"}
    for person in people:
        email, phone = person["email"].strip(), person["phone"].strip()
        if email:
            needles.add(email)
        if phone:
            needles.add(phone)
            try:
                parsed = phonenumbers.parse(phone, "US")
            except phonenumbers.NumberParseException:
                continue
            needles.add(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    # Placeholders (noemail@…, 000…) are settings' examples, not anyone's address.
    return people, sorted(n.lower() for n in needles if len(n) >= 7 and "noemail" not in n)


def _blobs(path: Path) -> Iterator[bytes]:
    """The file's bytes and, where they hide text (compressed pages, archives, SQLite
    overflow pages), the text they hold."""
    data = path.read_bytes()
    yield data
    if path.suffix == ".parquet":
        yield str(pq.read_table(path).to_pylist()).encode()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                yield archive.read(name)
    if data[:2] == b"\x1f\x8b":
        yield gzip.decompress(data)
    if data[:16] == b"SQLite format 3\x00":
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = [
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            for table in tables:
                rows = con.execute(f'SELECT * FROM "{table}"').fetchall()
                yield repr(rows).encode("utf-8", "backslashreplace")
        finally:
            con.close()


def _scan(home: Path, needles: list[str], *, within: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """{file (relative to home): needles found}, over the files under ``within`` (all
    but the system of record when empty)."""
    encoded = [(n, n.encode()) for n in needles]
    found: dict[str, set[str]] = {}
    for path in sorted(home.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(home).as_posix()
        if within and not name.startswith(within):
            continue
        if not within and name.startswith(SYSTEM_OF_RECORD):
            continue
        for blob in _blobs(path):
            low = blob.lower()
            hits = {n for n, e in encoded if e in low}
            if hits:
                found.setdefault(name, set()).update(hits)
    return found


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict]:
    """A home through demo, decisions, posted events, a bad customers file and a
    second feature build; its simulated contacts; what ``POST /events`` answered."""
    from serving.core import DecisionCore
    from serving.schemas import ChooseRequest, RecommendRequest
    from tests.serving.conftest import posted_event, settings_for

    root = tmp_path_factory.mktemp("pii")
    home = root / "home"
    demo = run_tailor(
        "demo", "--no-serve", "--customers", "300", "--days", "10", "--tune-budget", "1", home=home
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    people, needles = _contacts(home)
    reachable = [
        p for p in people if p["email"] and p["phone"] and not p["email"].startswith("noemail")
    ]
    ann, bob = reachable[0], reachable[1]

    # A customers file with bad rows holding contacts (and one unreadable line).
    bad = root / "customers_fix.csv"
    bad.write_text(
        "customer_id,email,phone,signup_ts,consent_email,attributes\n"
        f'{ann["customer_id"]},{ann["email"]},{ann["phone"]},mail {bob["email"]},true,"{{}}"\n'
        f",{EXTRA_EMAIL},{EXTRA_PHONE},2026-01-01T00:00:00Z,{bob['phone']},\n"
        f"{bob['customer_id']},{bob['email']},{bob['phone']},2026-01-01T00:00:00Z,true,,x,y\n"
    )
    ingest = run_tailor("ingest", str(bad), "--kind", "customers", home=home)
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    assert "quarantined 3" in ingest.stdout, ingest.stdout

    core = DecisionCore(settings_for(home))
    try:
        core.reload()
        for person in people[:5]:
            customer = person["customer_id"]
            core.recommend(RecommendRequest(customer_id=customer, n=5, context={}))
            core.choose(ChooseRequest(customer_id=customer, slot="offer", context={}))
        now = datetime.now(UTC) - timedelta(minutes=5)
        cid = ann["customer_id"]
        answer = core.ingest_events(
            [
                posted_event("pii-ok", cid, at=now),
                posted_event("pii-1", cid, at=now, properties={"email": ann["email"]})
                | {"ts": "?"},
                posted_event("pii-2", cid, at=now, kind=f"call {bob['phone']}"),
                posted_event("pii-3", cid, at=now, phone=EXTRA_PHONE, price=EXTRA_EMAIL),
            ]
        ).model_dump()
    finally:
        core.close()
    build = run_tailor("features", "build", home=home)
    assert build.returncode == 0, build.stderr[-3000:]
    # What the commands printed and logged (logging goes to stderr).
    logs = "".join(r.stdout + r.stderr for r in (demo, ingest, build))
    (root / "commands.log").write_text(logs)
    return home, needles, answer


def test_the_scan_finds_contacts_in_the_customer_table(pipeline):
    """The search works: it finds the contacts where they are kept (so an empty result
    elsewhere means none are there, not that the search cannot see them)."""
    home, needles, _ = pipeline
    people, _ = _contacts(home)
    given = {p[k].strip().lower() for p in people for k in ("email", "phone")}
    written = given & set(needles)
    assert len(written) >= 300  # 300 customers, most with both
    found = _scan(home, needles, within=("store/customers/",))
    assert written <= set().union(*found.values()), written - set().union(*found.values())


def test_no_raw_contact_outside_the_customer_table(pipeline):
    home, needles, answer = pipeline
    assert answer["accepted"] == 1 and len(answer["rejected"]) == 3
    assert not {n for n in needles if n in json.dumps(answer).lower()}
    # What there is to scan: quarantines, decisions, online stores, snapshots, MLflow.
    names = {p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file()}
    for part in ("store/quarantine/customers/", "online/", "features/", "mlflow/"):
        assert any(n.startswith(part) for n in names), part
    decisions = sqlite3.connect(home / "online" / "decisions.db")
    assert decisions.execute("SELECT count(*) FROM decisions").fetchone()[0] >= 10
    decisions.close()
    assert _scan(home, needles) == {}
    # Nor in what the commands printed or logged.
    logs = (home.parent / "commands.log").read_text().lower()
    assert "quarantined 3" in logs
    assert not {n for n in needles if n in logs}


def test_quarantined_contacts_are_found_by_their_keyed_hash(pipeline):
    """The operator's way to a quarantined row: hash the address with the home's key."""
    home, _, _ = pipeline
    hasher = KeyedHasher("local", (home / "secrets" / "hash.key").read_text().strip().encode())
    email = hasher.hash(key_text("email", EXTRA_EMAIL.lower())).encode()
    phone = hasher.hash(key_text("phone", "+442079460958")).encode()
    files = [p for p in (home / "store" / "quarantine").rglob("*") if p.is_file()]
    customers = b"".join(b for p in files for b in _blobs(p))
    assert email in customers and phone in customers
    posted = b"".join(_blobs(home / "online" / "events.db"))
    assert phone in posted
