"""Erasure at the data layer, on a real home: every store loses the person, and only them.

The person has two customer records (sharing an e-mail, which identity resolution
links), an anonymous id linked by a stored login and one linked by a posted login;
their rows are in the event store, the quarantine, two feature snapshots, the posted
event log and its quarantine, the decision log and the identity overrides. After the
erasure a scan of every byte of the home (Parquet files decoded too) finds none of
their ids, their e-mail or their phone, while everyone else's rows are as they were.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from features.data.decision_log import DecisionLog, DecisionRecord
from features.data.ingest import ingest_file
from features.data.online_log import OnlineEventLog
from features.data.store import EventStore
from features.errors import NotFoundError
from features.identity.overrides import add_override, load_overrides
from features.privacy.erasure import LinkedPerson, erase_data, linked_ids
from features.privacy.ledger import PrivacyLedger
from features.segments import load_segments
from features.settings import FeatureConfig, TailorSettings
from features.snapshot import behaviour_feature_names, build_snapshot, snapshot_folders
from tests.conftest import NOW

ERIN, ERIN_2 = "cust-erin-0417", "cust-erin-0988"
ERIN_ANON, ERIN_TABLET = "anon-erin-phone", "anon-erin-tablet"
EMAIL, PHONE = "erin.eraser@example.org", "+14155550199"
OMAR, PIA, OMAR_ANON = "cust-omar-0001", "cust-pia-0002", "anon-omar-laptop"
ERIN_IDS = {ERIN, ERIN_2, ERIN_ANON, ERIN_TABLET}
# Every form in which the person may have been written down.
NEEDLES = [*ERIN_IDS, EMAIL, PHONE, "415 555 0199", "4155550199"]
OTHERS = {OMAR, PIA, OMAR_ANON}

CONFIG = FeatureConfig()
SEGMENTS = load_segments(None, behaviour_feature_names(CONFIG))
EVENTS_HEADER = "event_id,ts,event_type,customer_id,anonymous_id,item_id,quantity,price"
EVENTS = [
    f"e01,2026-11-01T09:00:00Z,product_view,,{ERIN_ANON},i1,,",
    f"e02,2026-11-01T10:00:00Z,product_view,{OMAR},,i1,,",
    f"e03,2026-11-02T09:00:00Z,login,{ERIN},{ERIN_ANON},,,",
    f"e04,2026-11-02T09:05:00Z,add_to_cart,{ERIN},,i2,1,20.00",
    f"e05,2026-11-02T11:00:00Z,purchase,{PIA},,i2,1,20.00",
    f"e06,2026-11-03T09:00:00Z,purchase,{ERIN},,i2,1,20.00",
    f"e07,2026-11-03T12:00:00Z,login,{OMAR},{OMAR_ANON},,,",
    f"e08,2026-11-03T12:05:00Z,product_view,,{OMAR_ANON},i3,,",
    f"e09,2026-11-04T08:00:00Z,purchase,{ERIN_2},,i1,2,10.00",
    f"e10,2026-11-04T09:00:00Z,product_view,{PIA},,i3,,",
    f"e11,2026-11-05T09:00:00Z,product_view,{ERIN},,i3,,",  # a day only Erin was seen
]
BAD_EVENTS = [
    f"b01,yesterday,product_view,{ERIN},,i1,,",
    f"b02,yesterday,product_view,{OMAR},,i1,,",
    f"b03,2026-11-01T10:00:00Z,product_view,{ERIN}",  # too few fields: kept as a line
]
CUSTOMERS_HEADER = "customer_id,email,phone,consent_email,consent_personalization"
CUSTOMERS = [
    f"{ERIN},{EMAIL},+1 415 555 0199,true,true",
    f"{ERIN_2}, Erin.Eraser@Example.org ,,true,true",
    f"{OMAR},omar@example.com,+1 212 555 0100,true,true",
    f"{PIA},pia@example.com,,true,false",
]
CUSTOMERS_LATER = [f"{ERIN},{EMAIL},+1 415 555 0199,false,true"]  # a second version
BAD_CUSTOMERS = [
    f"{ERIN},{EMAIL},+1 415 555 0199,maybe,true",
    f"{OMAR},omar@example.com,,maybe,true",
    "cust-zed-0003,zed@example.com,(415) 555-0199,maybe,true",  # Erin's phone
]


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _settings(home: Path) -> TailorSettings:
    # No hash_key: the home's own key, the one ingest masks quarantined rows with.
    return TailorSettings(home=home)


def _decision(decision_id: str, customer_id: str) -> DecisionRecord:
    return DecisionRecord(
        decision_id, "recommend", customer_id, "products", "model", ["i1"], 0.5, ["i1"], {}, {}
    )


@pytest.fixture
def home(tmp_path: Path) -> TailorSettings:
    """A home holding Erin (two records, two anonymous ids) and two other people in
    every store."""
    settings = _settings(tmp_path / "home")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    store = EventStore(settings.store_dir)
    early = datetime(2026, 11, 6, tzinfo=UTC)
    ingest_file(
        _csv(inputs / "c.csv", CUSTOMERS_HEADER, CUSTOMERS + BAD_CUSTOMERS),
        kind="customers",
        store=store,
        now=early,
    )
    ingest_file(
        _csv(inputs / "e.csv", EVENTS_HEADER, EVENTS + BAD_EVENTS),
        kind="events",
        store=store,
        now=early,
    )
    ingest_file(
        _csv(inputs / "c2.csv", CUSTOMERS_HEADER, CUSTOMERS_LATER),
        kind="customers",
        store=store,
        now=early + timedelta(days=1),
    )
    for as_of in (datetime(2026, 11, 4, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC)):
        build_snapshot(
            store, as_of=as_of, config=CONFIG, segments=SEGMENTS, write_to=settings.features_dir
        )
    log = OnlineEventLog(settings.online_dir / "events.db")
    log.append(
        [
            {
                "event_id": "p1",
                "ts": "2026-11-20T10:00:00Z",
                "event_type": "login",
                "customer_id": ERIN,
                "anonymous_id": ERIN_TABLET,
            },
            {
                "event_id": "p2",
                "ts": "2026-11-20T10:01:00Z",
                "event_type": "product_view",
                "anonymous_id": ERIN_TABLET,
                "item_id": "i1",
            },
            {
                "event_id": "p3",
                "ts": "2026-11-20T11:00:00Z",
                "event_type": "product_view",
                "customer_id": OMAR,
                "item_id": "i2",
            },
            {"event_id": "p4", "ts": "never", "event_type": "product_view", "customer_id": ERIN},
            {"event_id": "p5", "ts": "never", "event_type": "product_view", "customer_id": PIA},
        ],
        now=NOW,
        max_future_skew=timedelta(days=1),
    )
    log.close()
    DecisionLog(settings.online_dir / "decisions.db").append(
        [_decision("d1", ERIN), _decision("d2", ERIN_2), _decision("d3", OMAR)]
    )
    add_override(settings.store_dir, "merge", [OMAR, PIA, ERIN_2], f"household of {EMAIL}")
    add_override(settings.store_dir, "split", [ERIN], "checked")
    return settings


def _hits(root: Path, needles: list[str]) -> dict[str, set[str]]:
    """Each file under ``root`` (relative path) holding one of ``needles``: its raw
    bytes, and for Parquet also its decoded values (compressed pages hide text)."""
    found: dict[str, set[str]] = {}
    wanted = [n.lower() for n in needles]
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        texts = [path.read_bytes().decode("latin-1").lower()]
        if path.suffix == ".parquet":
            texts.append(json.dumps(pq.read_table(path).to_pylist(), default=str).lower())
        hit = {n for n in wanted for text in texts if n in text}
        if hit:
            found[str(path.relative_to(root))] = hit
    return found


def _others(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The rows naming none of Erin's ids, in a stable order."""
    mine = np.zeros(len(frame), dtype=bool)
    for column in columns:
        mine |= frame[column].astype("string").isin(ERIN_IDS).fillna(False).to_numpy(bool)
    rest = frame[~mine]
    return rest.sort_values(list(rest.columns[:1]), kind="stable").reset_index(drop=True)


def _snapshot_rows(folder: Path) -> dict[str, pd.DataFrame]:
    """Every table of a snapshot folder, and each user's interaction row."""
    tables = {p.stem: pd.read_parquet(p) for p in folder.glob("*.parquet")}
    matrix = sp.load_npz(folder / "interactions.npz").toarray()
    users = tables["users"]["customer_id"].astype(str)
    tables["matrix"] = pd.DataFrame(matrix, index=users.to_numpy()).sort_index()
    return tables


def test_erasure_removes_every_trace_of_the_person_and_nothing_else(home):
    settings = home
    store = EventStore(settings.store_dir)
    person = linked_ids(settings, ERIN)
    assert person.ids == ERIN_IDS
    assert person.emails == {EMAIL} and person.phones == {PHONE}
    assert EMAIL not in repr(person)  # contact values never reach a log line
    # From any of their ids, the same person.
    assert linked_ids(settings, ERIN_ANON).ids == ERIN_IDS
    before_hits = _hits(settings.home, NEEDLES)
    for where in (
        "store/events",
        "store/customers",
        "store/quarantine",
        "features/as_of=",
        "online/events.db",
        "online/decisions.db",
        "store/identity/overrides.json",
    ):
        assert any(name.startswith(where) for name in before_hits), where

    events = store.read("events")
    customers = store.read("customers", current=False)
    quarantine = {
        t: store.read(t, current=False) for t in ("quarantine/events", "quarantine/customers")
    }
    snapshots = {f.name: _snapshot_rows(f) for f in snapshot_folders(settings.features_dir)}
    assert len(snapshots) == 2

    ledger = PrivacyLedger.for_settings(settings)
    ledger.mark_erased(person.ids)
    counts = erase_data(settings, person, now=NOW)

    assert counts["events"] == 6  # e01, e03, e04, e06, e09, e11
    assert counts["customers"] == 3  # two records, one of them in two versions
    assert counts["quarantine"] == 4  # b01, b03, Erin's bad record, Zed's row with her phone
    assert counts["posted_events"] == 2 and counts["posted_quarantine"] == 1
    assert counts["decisions"] == 2
    assert counts["identity_overrides"] == 2
    assert counts["snapshots"] > 0
    assert _hits(settings.home, NEEDLES) == {}

    # Everyone else's rows are exactly as they were.
    after = store.read("events")
    pd.testing.assert_frame_equal(
        _others(after, "customer_id", "anonymous_id"),
        _others(events, "customer_id", "anonymous_id"),
    )
    assert set(after["event_id"]) == {"e02", "e05", "e07", "e08", "e10"}
    pd.testing.assert_frame_equal(
        _others(store.read("customers", current=False), "customer_id"),
        _others(customers, "customer_id"),
    )
    assert set(store.read("customers")["customer_id"]) == {OMAR, PIA}
    for table, rows in quarantine.items():
        kept = store.read(table, current=False)
        assert len(kept) == len(rows) - {"quarantine/events": 2, "quarantine/customers": 2}[table]
        assert set(kept["raw"]) <= set(rows["raw"])
    for folder in snapshot_folders(settings.features_dir):
        old, new = snapshots[folder.name], _snapshot_rows(folder)
        for name in ("customers", "segments", "category_affinity", "triggers", "users"):
            pd.testing.assert_frame_equal(
                _others(new[name], "customer_id"), _others(old[name], "customer_id")
            )
        pd.testing.assert_frame_equal(new["items"], old["items"])
        pd.testing.assert_frame_equal(
            new["matrix"], old["matrix"].drop(index=list(ERIN_IDS & set(old["matrix"].index)))
        )
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["rows"]["customers"] == len(new["customers"]) == 2
    log = OnlineEventLog(settings.online_dir / "events.db")
    assert [row["event_id"] for row in log.since(0)[0]] == ["p3"]
    assert [json.loads(r)["customer_id"] for r in log.quarantined()["raw"]] == [PIA]
    log.close()
    assert DecisionLog(settings.online_dir / "decisions.db").read()["customer_id"].tolist() == [
        OMAR
    ]
    overrides = load_overrides(settings.store_dir)
    assert [(o.action, o.customer_ids) for o in overrides] == [("merge", (OMAR, PIA))]

    # The store is whole: the manifest names exactly the files there are.
    manifest = json.loads((settings.store_dir / "_manifest.json").read_text())["tables"]
    named = {rel for rels in manifest.values() for rel in rels}
    on_disk = {
        str(p.relative_to(settings.store_dir)) for p in settings.store_dir.rglob("*.parquet")
    }
    assert named == on_disk
    assert not (settings.store_dir / "events" / "date=2026-11-05").exists()

    # A second erasure finds nothing left, and the person is unknown from then on.
    assert sum(erase_data(settings, person, now=NOW).values()) == 0


def test_a_later_ingest_or_post_of_an_erased_person_is_dropped_and_said(home, tmp_path):
    settings = home
    person = linked_ids(settings, ERIN_2)
    ledger = PrivacyLedger.for_settings(settings)
    ledger.mark_erased(person.ids)
    erase_data(settings, person, now=NOW)
    late = _csv(
        tmp_path / "late.csv",
        EVENTS_HEADER,
        [
            f"n1,2026-11-21T09:00:00Z,purchase,{ERIN},,i1,1,10.00",
            f"n2,2026-11-21T09:05:00Z,product_view,,{ERIN_ANON},i2,,",
            f"n3,2026-11-21T09:10:00Z,product_view,{OMAR},,i2,,",
            f"n4,someday,product_view,{ERIN_2},,i2,,",  # bad, and theirs: not quarantined
        ],
    )
    store = EventStore(settings.store_dir)
    report = ingest_file(late, kind="events", store=store, now=NOW, ledger=ledger)
    assert (report.accepted, report.erased, report.quarantined) == (1, 3, 0)
    assert "erased      3 rows dropped" in report.summary()
    posted = OnlineEventLog(settings.online_dir / "events.db")
    appended = posted.append(
        [
            {
                "event_id": "q1",
                "ts": "2026-11-21T10:00:00Z",
                "event_type": "product_view",
                "customer_id": ERIN,
                "item_id": "i1",
            },
            {
                "event_id": "q2",
                "ts": "nope",
                "event_type": "product_view",
                "anonymous_id": ERIN_TABLET,
            },
            {
                "event_id": "q3",
                "ts": "2026-11-21T10:00:00Z",
                "event_type": "product_view",
                "customer_id": PIA,
                "item_id": "i1",
            },
        ],
        now=NOW,
        max_future_skew=timedelta(days=1),
        ledger=ledger,
    )
    assert appended.erased == 2 and appended.erased_index.tolist() == [0, 1]
    assert appended.accepted_index.tolist() == [2] and appended.rejected.empty
    posted.close()
    assert _hits(settings.home, NEEDLES) == {}
    # Without a ledger (callers that predate it) nothing is checked.
    report = ingest_file(late, kind="events", store=store, now=NOW)
    assert report.erased == 0 and report.accepted == 2


def test_an_id_no_store_knows_is_refused_naming_it(home):
    with pytest.raises(NotFoundError, match="cust-nobody-1"):
        linked_ids(home, "cust-nobody-1")


def test_readers_never_fail_while_an_erasure_rewrites_the_store(tmp_path):
    """A reader reading the store in a loop while erasures replace its files sees the
    store before or after each erasure, never a missing file or a half state."""
    settings = _settings(tmp_path / "home")
    store = EventStore(settings.store_dir)
    people = [f"cust-many-{n:03d}" for n in range(12)]
    rows = [
        f"m{i:05d},2026-11-{1 + i % 20:02d}T{i % 24:02d}:00:00Z,product_view,"
        f"{people[i % len(people)]},,i{i % 7},,"
        for i in range(6000)
    ]
    ingest_file(_csv(tmp_path / "m.csv", EVENTS_HEADER, rows), kind="events", store=store, now=NOW)
    per_person = 6000 // len(people)
    erased = people[:6]
    valid = {6000 - n * per_person for n in range(len(erased) + 1)}
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read_in_a_loop() -> None:
        while not done.is_set():
            try:
                seen.append(len(store.read("events")))
            except BaseException as error:
                errors.append(error)

    reader = threading.Thread(target=read_in_a_loop)
    reader.start()
    try:
        for cid in erased:
            erase_data(settings, LinkedPerson(frozenset({cid})), now=NOW)
    finally:
        done.set()
        reader.join()
    assert errors == []
    assert len(seen) > 5 and set(seen) <= valid
    assert len(store.read("events")) == min(valid)


def test_a_shared_device_keeps_the_other_customers_events(home):
    """Omar also logged in on Erin's tablet: the tablet is not Erin's alone. Erasing
    Erin takes every event that names her; Omar's login on it, and the tablet's
    anonymous browsing, stay."""
    log = OnlineEventLog(home.online_dir / "events.db")
    log.append(
        [
            {
                "event_id": "p6",
                "ts": "2026-11-21T09:00:00Z",
                "event_type": "login",
                "customer_id": OMAR,
                "anonymous_id": ERIN_TABLET,
            }
        ],
        now=NOW,
        max_future_skew=timedelta(days=1),
    )
    log.close()
    person = linked_ids(home, ERIN)
    assert ERIN_TABLET not in person.ids and ERIN in person.ids
    erase_data(home, person, now=NOW)
    log = OnlineEventLog(home.online_dir / "events.db")
    try:
        rows, _ = log.since(0)
    finally:
        log.close()
    left = {str(r["event_id"]): r for r in rows}
    assert "p6" in left and "p2" in left  # Omar's login, the tablet's anonymous view
    assert not [r for r in rows if r.get("customer_id") in person.ids]
