"""The online event log: events posted to the service, durable before they are acknowledged.

``POST /events`` validates rows exactly like ``tailor ingest`` (the same contract and
checks; plain records are typed without pandas, :mod:`features.data.record_validation`),
appends the valid ones here and the rejected ones to this log's quarantine,
in one SQLite transaction with ``synchronous=FULL`` in WAL mode: when the call
returns, the rows are on disk. The next ``tailor ingest`` or ``tailor features
build`` compacts the log into the Parquet event store (:func:`compact`), which
dedupes by ``event_id`` like any ingest, so an event both posted and ingested is
stored once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.data.contracts import EVENTS, RowLimits
from features.data.ingest import write_events
from features.data.record_validation import TypedRecords, type_records
from features.data.store import EventStore
from features.data.typed_columns import READABLE
from features.data.validation import DEFAULT_LIMITS
from features.errors import WriteFailed

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    received_at TEXT NOT NULL,
    row TEXT NOT NULL,
    compacted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_pending ON events (compacted, seq);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL
);
"""


CACHE_KIB = 512
"""SQLite page cache per connection. The service holds a connection per thread and
store (dozens per worker): at SQLite's default 2 MiB each, caches filling up read as
memory growth; the operating system's page cache keeps the files' hot pages anyway."""


def connect_sqlite(path: Path) -> sqlite3.Connection:
    """A SQLite connection in WAL mode with full fsync on commit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("PRAGMA busy_timeout=30000")
    con.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return con


@dataclass(frozen=True)
class Appended:
    """What one append did.

    Attributes
    ----------
    accepted : list of dict
        The new valid events, typed (:attr:`TypedRecords.rows`), in input order.
    duplicates : int
        Valid events whose ``event_id`` the log already held (or repeated in the call).
    rejected : pandas.DataFrame
        ``index`` (position in the call), ``reason`` and ``raw`` of each bad row.
    accepted_index, duplicate_index : numpy.ndarray of int64
        Position in the call of each accepted row and of each duplicate.
    """

    accepted: list[dict[str, Any]]
    duplicates: int
    rejected: pd.DataFrame
    accepted_index: np.ndarray
    duplicate_index: np.ndarray


class OnlineEventLog:
    """Append-only SQLite log of posted events (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._con = connect_sqlite(self.path)
            self._con.executescript(SCHEMA)
        except (sqlite3.OperationalError, OSError) as error:  # a read-only or full home
            raise WriteFailed(self.path, error) from error
        self._lock = threading.Lock()

    def close(self) -> None:
        self._con.close()

    def append(
        self,
        records: list[dict[str, Any]],
        *,
        now: datetime,
        max_future_skew: Any,
        limits: RowLimits = DEFAULT_LIMITS,
    ) -> Appended:
        """Validate ``records`` (decoded JSON objects) against the events contract and
        store them durably; a record that fails any check is quarantined with its
        reasons, never failing the others."""
        result = type_records(
            records, EVENTS, now=now, max_future_skew=max_future_skew, limits=limits
        )
        valid = result.rows
        received = now.isoformat()
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                fresh = np.zeros(len(valid), dtype=bool)
                for i, row in enumerate(valid):
                    cursor = self._con.execute(
                        "INSERT OR IGNORE INTO events (event_id, received_at, row) "
                        "VALUES (?, ?, ?)",
                        (row["event_id"], received, _as_json(row)),
                    )
                    fresh[i] = cursor.rowcount == 1
                self._con.executemany(
                    "INSERT INTO quarantine (received_at, reason, raw) VALUES (?, ?, ?)",
                    [
                        (received, str(reason), str(raw))
                        for reason, raw in zip(
                            result.rejected["reason"], result.rejected["raw"], strict=True
                        )
                    ],
                )
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        rejected = result.rejected.rename(columns={"line_number": "index"})
        lines = result.lines
        return Appended(
            accepted=[row for row, new in zip(valid, fresh, strict=True) if new],
            duplicates=int((~fresh).sum()),
            rejected=rejected.reset_index(drop=True),
            accepted_index=lines[fresh],
            duplicate_index=lines[~fresh],
        )

    def pending(self) -> tuple[pd.DataFrame, int]:
        """Events not yet compacted (typed, contract columns) and the last seq read."""
        with self._lock:
            rows = self._con.execute(
                "SELECT seq, row FROM events WHERE compacted = 0 ORDER BY seq"
            ).fetchall()
            last = self._last_seq()
        return _typed(rows).frame(), (int(rows[-1][0]) if rows else last)

    def since(self, seq: int) -> tuple[list[dict[str, Any]], int]:
        """Events logged after ``seq``, compacted or not (typed rows), and the last seq read."""
        with self._lock:
            rows = self._con.execute(
                "SELECT seq, row FROM events WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
        return _typed(rows).rows, (int(rows[-1][0]) if rows else seq)

    def _last_seq(self) -> int:
        row = self._con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        return int(row[0])

    def mark_compacted(self, through_seq: int) -> None:
        """Mark events up to ``through_seq`` as moved into the store. Should this fail
        (a full disk), the next compaction moves them again, deduped by event id."""
        with self._lock:
            try:
                self._con.execute("UPDATE events SET compacted = 1 WHERE seq <= ?", (through_seq,))
            except sqlite3.OperationalError as error:
                raise WriteFailed(self.path, error) from error

    def count(self, *, pending_only: bool = False) -> int:
        sql = "SELECT count(*) FROM events" + (" WHERE compacted = 0" if pending_only else "")
        return int(self._con.execute(sql).fetchone()[0])

    def quarantined(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM quarantine ORDER BY seq", self._con)


# Logged rows passed the checks in force when they were posted (a time then in the
# future, an id as long as the settings then allowed): read back, only types count.
_LOGGED = RowLimits(
    min_event_ts=READABLE.earliest.to_pydatetime(),
    max_field_length=2**31,
    max_text_length=2**31,
    max_json_bytes=2**31,
)


def _typed(rows: list[tuple[int, str]]) -> TypedRecords:
    """Logged rows (seq, JSON) as typed events; one that cannot be read back (a
    contract changed since) is logged as an error, by seq, with its reasons."""
    records = [json.loads(row) for _, row in rows]
    typed = type_records(records, EVENTS, now=READABLE.latest.to_pydatetime(), limits=_LOGGED)
    for line, reason in zip(typed.rejected["line_number"], typed.rejected["reason"], strict=True):
        logger.error("online event log seq %d cannot be read back: %s", rows[line][0], reason)
    return typed


def _as_json(row: dict[str, Any]) -> str:
    """A typed row as JSON (timestamps ISO 8601 UTC, missing values omitted)."""
    return json.dumps(
        {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in row.items()
            if value is not None
        }
    )


def compact(log: OnlineEventLog, store: EventStore, *, now: datetime) -> int:
    """Move the log's pending events into ``store`` (deduped by event id); returns
    how many were new to the store."""
    pending, through = log.pending()
    if pending.empty:
        return 0
    with store.writer(now) as batch:
        stored = store.existing_keys("events").to_pylist()
        fresh = ~pending["event_id"].isin(set(stored)).to_numpy()
        write_events(store, batch, pending[fresh].reset_index(drop=True), now)
    log.mark_compacted(through)
    return int(fresh.sum())
