"""The event store and the feature folder under real processes: killed mid-file,
two writers at once, a home that cannot be written.

These run ``tailor`` as a user would (``python -m cli.main`` subprocesses on a
home in a tmp folder). A writer is paused with SIGSTOP while it holds its lock, so
that the second one meets it there for sure, and killed with SIGKILL, which no
handler sees, as a crash would.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.data.ingest import ingest_file
from features.data.store import MANIFEST, EventStore
from features.errors import WriteFailed
from features.snapshot import latest_snapshot, load_snapshot
from tests.commands import REPO, run_tailor
from tests.conftest import NOW

DAYS = ("2026-11-01", "2026-11-02", "2026-11-03")


def _events_csv(path: Path, ids: range, prefix: str = "k") -> Path:
    lines = ["event_id,ts,event_type,customer_id,item_id"]
    lines += [
        f"{prefix}{i},{DAYS[i % 3]}T10:{i % 60:02d}:00Z,product_view,c{i % 97},i{i % 31}"
        for i in ids
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _events_jsonl(path: Path, ids: range, prefix: str = "k") -> Path:
    """Events as JSONL, which ingest reads in chunks of exactly TAILOR_INGEST_CHUNK_ROWS
    (1,000 here; CSV is read in blocks of at least 1 MB), so a file of tens of
    thousands of events is tens of chunks."""
    lines = [
        f'{{"event_id": "{prefix}{i}", "ts": "{DAYS[i % 3]}T10:{i % 60:02d}:00Z", '
        f'"event_type": "product_view", "customer_id": "c{i % 97}", "item_id": "i{i % 31}"}}'
        for i in ids
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "TAILOR_HOME": str(home),
        "OPENBLAS_NUM_THREADS": "1",
        "TAILOR_INGEST_CHUNK_ROWS": "1000",
        "PYTHONPATH": str(REPO),
        **extra,
    }


class _Tailor:
    """A ``tailor`` process whose stderr is read as it comes."""

    def __init__(self, *args: str, home: Path, **env: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            cwd=REPO,
            env=_env(home, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, count: int = 1, timeout: float = 120) -> None:
        """Until ``count`` stderr lines hold ``text`` (fails if the process ends first)."""
        deadline = time.monotonic() + timeout
        while sum(text in line for line in self.lines) < count:
            if self.process.poll() is not None:
                self._reader.join(5)
                if sum(text in line for line in self.lines) >= count:
                    return
                pytest.fail(f"ended ({self.process.returncode}) before {text!r}: {self.lines}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} in {timeout} s: {self.lines}")
            time.sleep(0.02)

    def signal(self, number: int) -> None:
        os.kill(self.process.pid, number)

    def finish(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


def _orphans(store: EventStore) -> set[str]:
    on_disk = {str(p.relative_to(store.root)) for p in store.root.rglob("part-*.parquet")}
    committed = {rel for rels in store.manifest().values() for rel in rels}
    return on_disk - committed


# --------------------------------------------------------------------------- SIGKILL mid-file
@pytest.mark.slow
def test_an_ingest_killed_mid_file_leaves_the_store_as_it_was_and_a_rerun_stores_each_event_once(
    tmp_path,
):
    home = tmp_path / "home"
    store = EventStore(home / "store")
    base = _events_csv(tmp_path / "base.csv", range(500), prefix="base")
    assert run_tailor("ingest", str(base), "--kind", "events", home=home).returncode == 0
    manifest = (store.root / MANIFEST).read_bytes()
    before = store.read("events")

    big = _events_jsonl(tmp_path / "big.jsonl", range(40_000))
    for chunks in (1, 8):  # killed after the first chunk, then (its leftovers tidied) after 8
        ingest = _Tailor("ingest", str(big), "--kind", "events", home=home)
        ingest.wait_for("rows read", count=chunks)
        ingest.signal(signal.SIGKILL)
        assert ingest.finish() == -signal.SIGKILL
        # It had written parts, none of which any reader sees.
        assert _orphans(store)
        assert (store.root / MANIFEST).read_bytes() == manifest
        pd.testing.assert_frame_equal(store.read("events"), before)
        assert store.count("quarantine/events") == 0

    again = run_tailor("ingest", str(big), "--kind", "events", home=home)
    assert again.returncode == 0, again.stderr
    assert "accepted    40,000" in again.stdout
    events = store.read("events")
    assert len(events) == 40_500 and events["event_id"].is_unique
    assert set(events["event_id"]) == {f"base{i}" for i in range(500)} | {
        f"k{i}" for i in range(40_000)
    }
    assert not _orphans(store)


# --------------------------------------------------------------------------- two writers
@pytest.mark.slow
def test_a_second_ingest_waits_for_the_first_and_each_event_is_stored_once(tmp_path):
    home = tmp_path / "home"
    first = _events_jsonl(tmp_path / "first.jsonl", range(0, 20_000))
    second = _events_jsonl(tmp_path / "second.jsonl", range(10_000, 30_000))  # half overlap

    a = _Tailor("ingest", str(first), "--kind", "events", home=home)
    a.wait_for("rows read")
    a.signal(signal.SIGSTOP)  # A holds the store's lock, mid-file
    try:
        b = _Tailor("ingest", str(second), "--kind", "events", home=home, TAILOR_LOCK_TIMEOUT="120")
        b.wait_for("waiting for the event store")
        assert "pid" in b.lines[-1] and "lock_timeout" in b.lines[-1]
    finally:
        a.signal(signal.SIGCONT)
    assert a.finish() == 0, a.stderr
    assert b.finish() == 0, b.stderr
    events = EventStore(home / "store").read("events")
    assert len(events) == 30_000 and events["event_id"].is_unique
    assert not _orphans(EventStore(home / "store"))


@pytest.mark.slow
def test_past_its_lock_timeout_an_ingest_refuses_and_a_killed_holder_frees_the_lock(tmp_path):
    home = tmp_path / "home"
    store = EventStore(home / "store")
    path = _events_jsonl(tmp_path / "e.jsonl", range(20_000))
    a = _Tailor("ingest", str(path), "--kind", "events", home=home)
    a.wait_for("rows read")
    a.signal(signal.SIGSTOP)
    try:
        busy = run_tailor(
            "ingest", str(path), "--kind", "events", home=home, env={"TAILOR_LOCK_TIMEOUT": "1"}
        )
    finally:
        a.signal(signal.SIGKILL)  # a crash while holding the lock
    a.finish()
    assert busy.returncode == 2
    last = busy.stderr.strip().splitlines()[-1]
    assert last.startswith("tailor: the event store") and "is busy" in last
    assert "TAILOR_LOCK_TIMEOUT" in last and "Traceback" not in busy.stderr
    assert not store.files("events")

    # The OS released the dead holder's lock: the next ingest neither waits nor fails.
    done = run_tailor("ingest", str(path), "--kind", "events", home=home)
    assert done.returncode == 0 and "waiting" not in done.stderr
    assert store.count("events") == 20_000


@pytest.mark.slow
def test_two_feature_builds_at_once_one_waits_and_the_snapshot_is_whole(tmp_path):
    home = tmp_path / "home"
    events = _events_csv(tmp_path / "e.csv", range(3_000))
    assert run_tailor("ingest", str(events), "--kind", "events", home=home).returncode == 0
    build = ("features", "build", "--as-of", "2026-11-04T00:00:00Z")

    a = _Tailor(*build, home=home)
    a.wait_for("…")  # computing: it holds the feature folder's lock
    a.signal(signal.SIGSTOP)
    try:
        b = _Tailor(*build, home=home, TAILOR_LOCK_TIMEOUT="300")
        b.wait_for("waiting for the feature snapshots")
    finally:
        a.signal(signal.SIGCONT)
    assert a.finish() == 0, a.stderr
    assert b.finish() == 0, b.stderr
    folders = sorted(p.name for p in (home / "features").iterdir() if p.is_dir())
    assert folders == ["as_of=2026-11-04T00:00:00Z"]
    snapshot = load_snapshot(latest_snapshot(home / "features"))
    assert snapshot.manifest["events_read"] == 3_000


# --------------------------------------------------------------------------- unwritable home
def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(
    not _unshare_works(),
    reason="needs `unshare -m` (a private mount namespace) to mount a read-only or full home",
)


def _in_namespace(
    script: str, home: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``script`` (sh) in a private mount namespace, with $TAILOR and the env of tailor."""
    tailor = f"{sys.executable} -m cli.main"
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        cwd=REPO,
        env={**_env(home), "TAILOR": tailor},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _errors(stderr: str) -> list[str]:
    """The error lines of a run of commands; no traceback among them."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("tailor: ")]


def _names_the_path(line: str, path: Path, what: str) -> None:
    assert line.startswith(f"tailor: cannot write {path}") and what in line, line
    assert "TAILOR_HOME" in line


@pytest.mark.slow
@needs_mounts
def test_a_read_only_home_fails_ingest_and_features_build_in_one_line(tmp_path):
    home = tmp_path / "home"
    path = _events_csv(tmp_path / "e.csv", range(2_000))
    assert run_tailor("ingest", str(path), "--kind", "events", home=home).returncode == 0
    build = "features build --as-of 2026-11-04T00:00:00Z"
    assert run_tailor(*build.split(), home=home).returncode == 0
    store = EventStore(home / "store")
    manifest = (store.root / MANIFEST).read_bytes()
    listing = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    more = _events_csv(tmp_path / "more.csv", range(2_000, 4_000))

    result = _in_namespace(
        f'mount --bind "{home}" "{home}" && mount -o remount,bind,ro "{home}" "{home}" && '
        f'{{ $TAILOR ingest "{more}" --kind events; echo "ingest=$?"; '
        f'$TAILOR {build.replace("04", "05")}; echo "build=$?"; }}',
        home,
    )
    assert "ingest=2" in result.stdout and "build=2" in result.stdout, result
    ingest_error, build_error = _errors(result.stderr)
    _names_the_path(ingest_error, home / "store", "read-only")
    _names_the_path(build_error, home / "features", "read-only")
    assert (store.root / MANIFEST).read_bytes() == manifest
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == listing
    assert store.count("events") == 2_000


@pytest.mark.slow
@needs_mounts
def test_a_full_home_fails_ingest_and_features_build_in_one_line(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    small = _events_csv(tmp_path / "small.csv", range(300))
    big = tmp_path / "big.csv"
    big.write_text(
        "event_id,ts,event_type,customer_id\n"
        + "".join(
            f"{os.urandom(24).hex()},2026-11-01T10:00:00Z,page_view,c{i}\n" for i in range(60_000)
        )
    )
    before, after = tmp_path / "before", tmp_path / "after"
    result = _in_namespace(
        f'mount -t tmpfs -o size=768k tmpfs "{home}" && '
        f'$TAILOR ingest "{small}" --kind events >/dev/null && cp -a "{home}/store" "{before}" && '
        f'{{ $TAILOR ingest "{big}" --kind events; echo "ingest=$?"; }} && '
        f'cp -a "{home}/store" "{after}" && '
        f'{{ dd if=/dev/zero of="{home}/filler" bs=64k 2>/dev/null; true; }} && '
        f'{{ $TAILOR features build --as-of 2026-11-04T00:00:00Z; echo "build=$?"; }} && '
        f'ls -a "{home}/features" > "{tmp_path}/features.txt"',
        home,
    )
    assert "ingest=2" in result.stdout and "build=2" in result.stdout, result
    ingest_error, build_error = _errors(result.stderr)
    _names_the_path(ingest_error, home / "store", "the disk is full")
    _names_the_path(build_error, home / "features", "the disk is full")
    # The store is as it was: same manifest, same events, no part of the failed batch.
    assert (after / MANIFEST).read_bytes() == (before / MANIFEST).read_bytes()
    assert EventStore(after).count("events") == 300
    assert not _orphans(EventStore(after))
    assert (tmp_path / "features.txt").read_text().split() == [".", ".."]


def test_a_failed_write_is_one_error_naming_the_path_and_the_store_is_unchanged(
    tmp_path, store, monkeypatch
):
    """Where no mount namespace is allowed the tests above skip; this one injects the
    OSError a full disk gives (ENOSPC) at the Parquet write, with monkeypatch."""
    path = _events_csv(tmp_path / "e.csv", range(100))
    ingest_file(path, kind="events", store=store, now=NOW)
    manifest = (store.root / MANIFEST).read_bytes()
    calls = {"n": 0}
    real = pq.write_table

    def write_then_fill(table, where, **kw):  # the second part finds the disk full
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", write_then_fill)
    more = _events_csv(tmp_path / "more.csv", range(100, 400))
    with pytest.raises(WriteFailed) as failed:
        ingest_file(more, kind="events", store=store, now=NOW)
    message = str(failed.value)
    assert message.startswith(f"cannot write {store.root / 'events'}") and "\n" not in message
    assert "the disk is full" in message and "TAILOR_HOME" in message
    assert (store.root / MANIFEST).read_bytes() == manifest
    assert not _orphans(store)
    assert store.count("events") == 100
