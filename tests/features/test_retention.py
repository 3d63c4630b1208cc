"""Retention on a real home: what is older than each period goes, what is newer stays.

Periods of 30 days (events, decisions) and 10 days (quarantine) counted back from
2026-11-28 12:00 UTC: events before 2026-10-29 12:00, decisions logged before then
and rows quarantined before 2026-11-18 12:00 are dropped.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from features.data.decision_log import DecisionLog, DecisionRecord
from features.data.ingest import ingest_file
from features.data.online_log import OnlineEventLog
from features.data.store import EventStore
from features.errors import InputError
from features.privacy.retention import run_retention
from features.settings import TailorSettings
from tests.conftest import NOW

HEADER = "event_id,ts,event_type,customer_id,item_id"
OLD_DAY = [f"o{i},2026-10-01T{i:02d}:00:00Z,product_view,c{i % 3},i1" for i in range(5)]
CUT_DAY = [
    "x1,2026-10-29T11:59:59Z,product_view,c1,i1",  # before the cut: old
    "x2,2026-10-29T12:00:00Z,product_view,c2,i1",  # at the cut: kept
    "x3,2026-10-29T18:00:00Z,purchase,c1,i1",
]
NEW_DAY = [f"n{i},2026-11-20T{i:02d}:00:00Z,product_view,c{i % 3},i2" for i in range(4)]
BAD = ["b{n},someday,product_view,c1,i1"]


def _settings(home: Path, **privacy: float | None) -> TailorSettings:
    periods = {
        "retention_days_events": 30,
        "retention_days_decisions": 30,
        "retention_days_quarantine": 10,
    }
    return TailorSettings(home=home, privacy=periods | privacy)


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def _decision(decision_id: str) -> DecisionRecord:
    return DecisionRecord(decision_id, "recommend", "c1", "products", "model", [], None, [], {}, {})


@pytest.fixture
def home(tmp_path: Path) -> TailorSettings:
    settings = _settings(tmp_path / "home")
    store = EventStore(settings.store_dir)
    ingest_file(
        _csv(tmp_path / "e.csv", OLD_DAY + CUT_DAY + NEW_DAY),
        kind="events",
        store=store,
        now=datetime(2026, 11, 21, tzinfo=UTC),
    )
    # Bad rows quarantined long ago (old) and recently (kept).
    for n, quarantined_at in enumerate((datetime(2026, 11, 1, tzinfo=UTC), NOW)):
        rows = [row.format(n=f"{n}{k}") for row in BAD for k in range(2 + n)]
        ingest_file(
            _csv(tmp_path / f"bad{n}.csv", rows), kind="events", store=store, now=quarantined_at
        )
    log = OnlineEventLog(settings.online_dir / "events.db")
    posted = [
        {
            "event_id": "p1",
            "ts": "2026-10-02T10:00:00Z",
            "event_type": "product_view",
            "customer_id": "c1",
            "item_id": "i1",
        },
        {
            "event_id": "p2",
            "ts": "2026-11-27T10:00:00+02:00",
            "event_type": "product_view",
            "customer_id": "c2",
            "item_id": "i1",
        },
        {"event_id": "p3", "ts": "never", "event_type": "product_view", "customer_id": "c1"},
    ]
    log.append(
        posted[:1] + posted[2:],
        now=datetime(2026, 11, 2, tzinfo=UTC),
        max_future_skew=timedelta(days=1),
    )
    log.append(
        [posted[1], {**posted[2], "event_id": "p4"}], now=NOW, max_future_skew=timedelta(days=1)
    )
    log.close()
    decisions = DecisionLog(settings.online_dir / "decisions.db")
    decisions.append([_decision(f"d{i}") for i in range(5)])
    # The log stamps decisions with the clock: two are made 40 days older than the rest.
    with sqlite3.connect(decisions.path) as con:
        con.execute("UPDATE decisions SET ts = ts - 40 * 86400 WHERE decision_id IN ('d0', 'd1')")
    return settings


def _now_for_decisions() -> datetime:
    """A ``now`` at which every logged decision is past its 30 days (they are stamped
    with the real clock, not the test's)."""
    return datetime.fromtimestamp(time.time(), UTC) + timedelta(days=35)


def test_retention_drops_what_is_older_than_each_period_and_keeps_the_rest(home):
    # Decisions are stamped by the real clock: test_decisions_... covers them.
    settings = _settings(home.home, retention_days_decisions=None)
    store = EventStore(settings.store_dir)
    before = store.read("events")
    counts = run_retention(settings, now=NOW)

    assert counts["events"] == len(OLD_DAY) + 1
    assert counts["posted_events"] == 1
    assert counts["quarantine"] == 2 and counts["posted_quarantine"] == 1
    assert counts["decisions"] == 0

    kept = store.read("events")
    assert set(kept["event_id"]) == set(before["event_id"]) - {f"o{i}" for i in range(5)} - {"x1"}
    assert kept["ts"].min() == datetime(2026, 10, 29, 12, tzinfo=UTC)
    # The old day went whole, folder and all; the day of the cut was rewritten.
    events = settings.store_dir / "events"
    assert not (events / "date=2026-10-01").exists()
    (cut_file,) = (events / "date=2026-10-29").glob("*.parquet")
    assert "-r" in cut_file.name
    manifest = json.loads((settings.store_dir / "_manifest.json").read_text())["tables"]
    on_disk = {
        str(p.relative_to(settings.store_dir)) for p in settings.store_dir.rglob("*.parquet")
    }
    assert {rel for rels in manifest.values() for rel in rels} == on_disk

    quarantine = store.read("quarantine/events", current=False)
    assert len(quarantine) == 3 and (quarantine["quarantined_at"] == NOW).all()
    log = OnlineEventLog(settings.online_dir / "events.db")
    assert [row["event_id"] for row in log.since(0)[0]] == ["p2"]
    assert len(log.quarantined()) == 1
    log.close()

    # Nothing older is left: a second run removes nothing, and that is a valid run.
    assert set(run_retention(settings, now=NOW).values()) == {0}


def test_decisions_older_than_their_period_are_dropped(home):
    counts = run_retention(home, now=datetime.fromtimestamp(time.time(), UTC) + timedelta(days=5))
    assert counts["decisions"] == 2
    remaining = DecisionLog(home.online_dir / "decisions.db").read()["decision_id"].tolist()
    assert remaining == ["d2", "d3", "d4"]


def test_a_period_of_none_keeps_that_kind(home, tmp_path):
    keep_all = _settings(
        home.home,
        retention_days_events=None,
        retention_days_decisions=None,
        retention_days_quarantine=None,
    )
    store = EventStore(keep_all.store_dir)
    events = len(store.read("events"))
    assert set(run_retention(keep_all, now=_now_for_decisions()).values()) == {0}
    assert len(store.read("events")) == events
    assert DecisionLog(keep_all.online_dir / "decisions.db").count() == 5
    only_quarantine = _settings(
        home.home, retention_days_events=None, retention_days_decisions=None
    )
    counts = run_retention(only_quarantine, now=NOW)
    assert counts == {
        "events": 0,
        "posted_events": 0,
        "decisions": 0,
        "quarantine": 2,
        "posted_quarantine": 1,
    }
    assert len(store.read("events")) == events


def test_a_time_without_a_zone_is_refused_naming_the_field(home):
    with pytest.raises(InputError, match="now"):
        run_retention(home, now=datetime(2026, 11, 28))
