"""The privacy ledger: suppression list, erased ids, erasure receipts and audit log.

One SQLite file (WAL), ``TAILOR_HOME/privacy/ledger.sqlite``, shared by the command
line and every worker of the service. It holds no personal data in the clear: an
address or id is kept as its keyed hash (:mod:`features.pii.hashing`), matched
under the current and every retired key.

* ``suppression``: addresses and ids never to mail (``tailor suppress``), with why;
* ``erased``: every id of every erased person; ingest and ``POST /events`` drop
  their events, so a late batch does not bring them back;
* ``receipts``: what each erasure removed (counts per store), when, by whom;
* ``audit``: every administrative action (promote, rollback, reload, erase, consent
  change by API, retention, suppression): who (an API key id or the operating-system
  user, never a key), what, when.

``version`` counts changes to the suppression list and the erased ids, so a reader
(the service) re-reads them only when they changed.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.data.online_log import connect_sqlite
from features.pii.contacts import key_text
from features.pii.hashing import KeyedHasher
from features.settings import TailorSettings

LEDGER_FILE = "ledger.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS suppression (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, reason TEXT NOT NULL, added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS erased (key TEXT PRIMARY KEY, erased_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (
    receipt_id TEXT PRIMARY KEY, at REAL NOT NULL, actor TEXT NOT NULL,
    subject TEXT NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT, details TEXT NOT NULL
);
"""


def cli_actor() -> str:
    """Who runs a command: ``cli:<operating-system user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name (a container without passwd): still attributable
        return "cli:unknown"


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str | None
    details: dict[str, Any]


class PrivacyLedger:
    """The ledger at ``path`` (see the module docstring); safe to share between threads."""

    def __init__(self, path: Path, hasher: KeyedHasher) -> None:
        self.path = Path(path)
        self.hasher = hasher
        self.lock = threading.RLock()
        self._con: sqlite3.Connection | None = None
        self._cache: tuple[int, frozenset[str], dict[str, str]] | None = None
        self._version: tuple[tuple[int, ...], int] | None = None
        con = connect_sqlite(self.path)
        con.executescript(SCHEMA)
        con.close()

    @classmethod
    def for_settings(cls, settings: TailorSettings) -> PrivacyLedger:
        hasher = KeyedHasher.from_settings(settings.privacy, settings.home)
        return cls(settings.privacy_dir / LEDGER_FILE, hasher)

    @property
    def con(self) -> sqlite3.Connection:
        """One connection, shared by every thread (each use holds :attr:`lock`). Not
        one per thread: a web server retires idle threads, and each connection of a
        thread that ended would close with a checkpoint of the log (a write), and
        change the files :meth:`version` watches."""
        con = self._con
        if con is None:
            with self.lock:
                if self._con is None:
                    self._con = connect_sqlite(self.path)
                con = self._con
        return con

    def close(self) -> None:
        with self.lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    # ------------------------------------------------------------------ keys
    def key(self, kind: str, value: str) -> str:
        """The keyed hash this ledger keeps for a contact (``kind``: email, phone, id;
        the value already normalised, see :mod:`features.pii.contacts`)."""
        return self.hasher.hash(key_text(kind, value))

    def _candidates(self, kind: str, value: str) -> list[str]:
        return self.hasher.candidates(key_text(kind, value))

    def version(self) -> int:
        """The change count of the suppression list and erased ids. A decision asks
        several times per request: the file is read again only when the database or
        its write-ahead log changed on disk (every commit appends to the log, every
        checkpoint writes the database), a few stat calls otherwise."""
        stamp = _stamp(self.path)
        cached = self._version
        if cached is not None and cached[0] == stamp:
            return cached[1]
        with self.lock:
            row = self.con.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        value = 0 if row is None else int(row[0])
        self._version = (stamp, value)
        return value

    def _bump(self, con: sqlite3.Connection) -> None:
        con.execute(
            "INSERT INTO meta VALUES ('version', '1') ON CONFLICT (key) DO UPDATE "
            "SET value = CAST(value AS INTEGER) + 1"
        )

    # ------------------------------------------------------------------ suppression
    def suppress(self, entries: Iterable[tuple[str, str]], *, reason: str) -> int:
        """Add ``(kind, normalised value)`` entries; returns how many were new."""
        rows = [(self.key(kind, value), kind, reason, time.time()) for kind, value in entries]
        with self._transaction() as con:
            before = con.total_changes
            con.executemany("INSERT OR IGNORE INTO suppression VALUES (?, ?, ?, ?)", rows)
            added = con.total_changes - before
            self._bump(con)
        return added

    def unsuppress(self, entries: Iterable[tuple[str, str]]) -> int:
        """Remove entries (under every key that may have made them); returns how many."""
        keys = [k for kind, value in entries for k in self._candidates(kind, value)]
        with self._transaction() as con:
            before = con.total_changes
            con.executemany("DELETE FROM suppression WHERE key = ?", [(k,) for k in keys])
            removed = con.total_changes - before
            self._bump(con)
        return removed

    def suppression(self) -> list[dict[str, Any]]:
        """Every entry: key, kind, reason, added_at (no address: only its hash)."""
        with self.lock:
            rows = self.con.execute(
                "SELECT key, kind, reason, added_at FROM suppression ORDER BY added_at"
            ).fetchall()
        return [
            {"key": k, "kind": kind, "reason": reason, "added_at": _when(at)}
            for k, kind, reason, at in rows
        ]

    def suppressed_keys(self) -> dict[str, str]:
        """Suppressed key → reason, and erased keys (cached until the ledger changes)."""
        return self._state()[1]

    def erased_keys(self) -> frozenset[str]:
        return self._state()[0]

    def _state(self) -> tuple[frozenset[str], dict[str, str]]:
        version = self.version()
        if self._cache is None or self._cache[0] != version:
            with self.lock:
                con = self.con
                erased = frozenset(k for (k,) in con.execute("SELECT key FROM erased"))
                suppressed = dict(con.execute("SELECT key, reason FROM suppression").fetchall())
            self._cache = (version, erased, suppressed)
        return self._cache[1], self._cache[2]

    def suppressed_ids(self, ids: Iterable[str]) -> dict[str, str]:
        """Which of these customer ids are suppressed (directly): id → reason."""
        table = self.suppressed_keys()
        out: dict[str, str] = {}
        if not table:
            return out
        for cid in ids:
            for k in self._candidates("id", cid):
                if k in table:
                    out[cid] = table[k]
                    break
        return out

    # ------------------------------------------------------------------ erasure
    def mark_erased(self, ids: Iterable[str]) -> int:
        now = time.time()
        with self._transaction() as con:
            con.executemany(
                "INSERT OR IGNORE INTO erased VALUES (?, ?)",
                [(self.key("id", i), now) for i in ids],
            )
            self._bump(con)
        return len(self.erased_keys())

    def erased(self, ids: Iterable[str]) -> set[str]:
        """Which of these ids belong to an erased person."""
        keys = self.erased_keys()
        if not keys:
            return set()
        return {i for i in ids if any(k in keys for k in self._candidates("id", i))}

    def add_receipt(self, *, actor: str, subject: str, body: Mapping[str, Any]) -> str:
        """Keep a receipt (``subject``: the keyed hash of the id erased); returns its id."""
        receipt_id = "er_" + uuid.uuid4().hex[:16]
        with self._transaction() as con:
            con.execute(
                "INSERT INTO receipts VALUES (?, ?, ?, ?, ?)",
                (receipt_id, time.time(), actor, subject, json.dumps(body, sort_keys=True)),
            )
        return receipt_id

    def receipts(self) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.con.execute(
                "SELECT receipt_id, at, actor, subject, body FROM receipts ORDER BY at"
            ).fetchall()
        return [
            {"receipt_id": r, "at": _when(at), "actor": actor, "subject": subject}
            | json.loads(body)
            for r, at, actor, subject, body in rows
        ]

    # ------------------------------------------------------------------ audit
    def audit(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record an administrative action (``actor``: an API key id or ``cli:<user>``)."""
        with self._transaction() as con:
            con.execute(
                "INSERT INTO audit (at, actor, action, target, details) VALUES (?, ?, ?, ?, ?)",
                (
                    time.time(),
                    actor,
                    action,
                    target,
                    json.dumps(dict(details or {}), sort_keys=True, default=str),
                ),
            )

    def audit_log(self, *, limit: int | None = None) -> list[AuditEntry]:
        """Entries, oldest first (the last ``limit`` of them)."""
        with self.lock:
            rows = self.con.execute(
                "SELECT seq, at, actor, action, target, details FROM audit ORDER BY seq DESC"
                + ("" if limit is None else f" LIMIT {int(limit)}")
            ).fetchall()
        return [
            AuditEntry(seq, _when(at), actor, action, target, json.loads(details))
            for seq, at, actor, action, target, details in reversed(rows)
        ]

    # ------------------------------------------------------------------ plumbing
    def _transaction(self) -> _Transaction:
        return _Transaction(self)


class _Transaction:
    """A write transaction on the ledger's shared connection, holding its lock."""

    def __init__(self, ledger: PrivacyLedger) -> None:
        self.ledger = ledger

    def __enter__(self) -> sqlite3.Connection:
        self.ledger.lock.acquire()
        try:
            con = self.ledger.con
            con.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.ledger.lock.release()
            raise
        return con

    def __exit__(self, kind: object, *_: object) -> None:
        try:
            self.ledger.con.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self.ledger.lock.release()


def _stamp(path: Path) -> tuple[int, ...]:
    """Modification time and size of a SQLite file and of its write-ahead log."""
    out: list[int] = []
    for name in (path, path.with_name(path.name + "-wal")):
        try:
            st = os.stat(name)
        except FileNotFoundError:
            out += [0, -1]
        else:
            out += [st.st_mtime_ns, st.st_size, st.st_ino]
    return tuple(out)


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
