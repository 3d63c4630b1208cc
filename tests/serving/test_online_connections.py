"""The online store's per-thread connections do not outlive their threads.

The web server retires a worker thread after it has been idle a while and starts a
new one when load returns, so over a long run many threads read the store. Each
opens its own SQLite connection (with its page cache); one left open per thread that
ever existed grew the server's memory for as long as it ran.
"""

from __future__ import annotations

import threading
from pathlib import Path

from serving.online import OnlineStore


def _read_once(store: OnlineStore) -> None:
    store.meta("snapshot_id")


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    store = OnlineStore(tmp_path / "profiles.db")
    for _ in range(50):
        thread = threading.Thread(target=_read_once, args=(store,))
        thread.start()
        thread.join()
    # Each new thread closes what ended threads left: only the last one's remains.
    assert store.open_connections() == 1
    _read_once(store)  # this (live) thread's own
    assert store.open_connections() == 1
    store.close()
    assert store.open_connections() == 0


def test_live_threads_keep_their_connections(tmp_path: Path) -> None:
    store = OnlineStore(tmp_path / "profiles.db")
    release = threading.Event()
    ready = threading.Barrier(9)

    def hold() -> None:
        _read_once(store)
        ready.wait(timeout=10)
        release.wait(timeout=10)
        _read_once(store)  # its connection is still open and usable

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        ready.wait(timeout=10)
        _read_once(store)
        assert store.open_connections() == 9
    finally:
        release.set()
    for thread in threads:
        thread.join()
    store.close()
