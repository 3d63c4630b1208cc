"""Crash safety of posted events: a server killed with SIGKILL mid-stream loses no
acknowledged event, and events sent again after the restart are stored once."""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil

from features.data.online_log import OnlineEventLog, compact
from features.data.store import EventStore, connect
from tests.serving.conftest import posted_event
from tests.serving.test_service import ADMIN, _serve


def _event(i: int, customer: str) -> dict[str, object]:
    at = datetime.now(UTC) - timedelta(minutes=1)
    properties = {"source": "crash-test", "n": i}
    return posted_event(f"crash-{i:05d}", customer, at=at, properties=properties)


def test_acknowledged_events_survive_sigkill_and_resends_are_deduplicated(
    trained_home: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("online", "demo"))
    server = _serve(home)
    acknowledged: set[str] = set()
    sent: list[dict[str, object]] = []
    stop = threading.Event()

    def post_forever(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            i = worker
            while not stop.is_set():
                batch = [_event(i + k * 4, f"c{(i + k) % 50:07d}") for k in range(5)]
                i += 20
                sent.extend(batch)
                try:
                    answer = client.post("/events", json={"events": batch}, headers=ADMIN)
                except httpx.TransportError:
                    return
                if answer.status_code == 200:
                    acknowledged.update(str(e["event_id"]) for e in batch)

    threads = [threading.Thread(target=post_forever, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    try:
        while len(acknowledged) < 300:
            threading.Event().wait(0.05)
        # Mid-stream, no shutdown: the server and every worker at once (BentoML's
        # workers run in sessions of their own, so the process group is not enough).
        tree = psutil.Process(server.process.pid)
        for process in [tree, *tree.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server.stop()
    assert len(sent) > len(acknowledged), "some calls were in flight at the kill"

    restarted = _serve(home)
    try:
        resent = 0
        with httpx.Client(base_url=restarted.url, timeout=30.0) as client:
            for start in range(0, len(sent), 500):
                answer = client.post(
                    "/events", json={"events": sent[start : start + 500]}, headers=ADMIN
                )
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["rejected"] == []
                resent += body["duplicates"]
        assert resent >= len(acknowledged), "every acknowledged event was already stored"
    finally:
        restarted.stop()

    log = OnlineEventLog(home / "online" / "events.db")
    store = EventStore(home / "store")
    compact(log, store, now=datetime.now(UTC))
    compact(log, store, now=datetime.now(UTC))
    con = connect()
    store.register(con, "events", "events")
    counts = dict(
        con.execute(
            "SELECT event_id, count(*) FROM events WHERE event_id LIKE 'crash-%' GROUP BY 1"
        ).fetchall()
    )
    assert acknowledged <= set(counts), "an acknowledged event was lost"
    assert set(counts) == {str(e["event_id"]) for e in sent}
    assert set(counts.values()) == {1}, "each event stored exactly once"
