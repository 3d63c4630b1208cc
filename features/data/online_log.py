"""The online event log: events posted to the service, durable before they are acknowledged.

``POST /events`` validates rows exactly like ``tailor ingest`` (the same contract and
checks; plain records are typed without pandas, :mod:`features.data.record_validation`),
appends the valid ones here and the rejected ones to this log's quarantine,
in one SQLite transaction with ``synchronous=FULL`` in WAL mode: when the call
returns, the rows are on disk. The next ``tailor ingest`` or ``tailor features
build`` compacts the log into the Parquet event store (:func:`compact`), which
dedupes by ``event_id`` like any ingest, so an event both posted and ingested is
stored once.

A rejected row is quarantined without its personal data, as ingest quarantines it
(:mod:`features.data.ingest`): personal attributes (an ``email`` or ``phone`` in
``properties``, names, address …) become their keyed hash, so an operator can still
find a person's rows by hashing an address; other text has e-mail- and phone-shaped
values masked (:func:`features.pii.masking.mask_raw_rows`); reasons, in the log and
in the ``rejected`` answer of ``POST /events``, never quote such a value.

An erased person's events are dropped as they arrive (given the privacy ledger),
neither logged nor quarantined; :meth:`OnlineEventLog.erase` and the retention
methods delete rows with SQLite's ``secure_delete`` on and then empty the
write-ahead log, so no deleted row's bytes stay in the files.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
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
from features.pii.hashing import ErasedIds, KeyedHasher
from features.pii.masking import HasherSource, home_hasher, mask_raw_rows
from features.pii.redaction import redact

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
    erased_index : numpy.ndarray of int64
        Position in the call of each row dropped because its customer or anonymous
        id belongs to an erased person (valid or not: none is kept).
    """

    accepted: list[dict[str, Any]]
    duplicates: int
    rejected: pd.DataFrame
    accepted_index: np.ndarray
    duplicate_index: np.ndarray
    erased_index: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def erased(self) -> int:
        """Rows dropped because they belong to an erased person."""
        return len(self.erased_index)


class OnlineEventLog:
    """Append-only SQLite log of posted events (see the module docstring)."""

    def __init__(
        self, path: Path, *, hasher: KeyedHasher | None = None, phone_region: str = "US"
    ) -> None:
        """``hasher``: the keyed hash of personal data in quarantined rows
        (``KeyedHasher.from_settings(settings.privacy, settings.home)``); default: the
        ledger's given to :meth:`append`, else the key of the home this log lies in
        (``path.parent.parent``: ``TAILOR_HOME/online/events.db``), which is that
        hasher when the settings give no ``privacy.hash_key``. ``phone_region``: of
        phone numbers written without a country code."""
        self.path = Path(path)
        self.hasher = hasher
        self.phone_region = phone_region
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
        ledger: ErasedIds | None = None,
    ) -> Appended:
        """Validate ``records`` (decoded JSON objects) against the events contract and
        store them durably; a record that fails any check is quarantined with its
        reasons, never failing the others.

        ``ledger``: the privacy ledger; a record whose ``customer_id`` or
        ``anonymous_id`` it lists as erased is dropped (counted in
        :attr:`Appended.erased_index`), valid or not: a quarantined row would keep
        the person. ``None``: no check.
        """
        result = type_records(
            records, EVENTS, now=now, max_future_skew=max_future_skew, limits=limits
        )
        valid = result.rows
        lines = result.lines
        rejected_frame = result.rejected
        erased_index = np.empty(0, dtype=np.int64)
        if ledger is not None:
            gone = erased_records(records, ledger)
            if gone.size:
                keep = ~np.isin(lines, gone)
                valid = [row for row, kept in zip(valid, keep, strict=True) if kept]
                lines = lines[keep]
                rejected_frame = rejected_frame[
                    ~np.isin(rejected_frame["line_number"].to_numpy(dtype=np.int64), gone)
                ]
                erased_index = gone
        rejected_frame = self._masked(rejected_frame, ledger)
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
                            rejected_frame["reason"], rejected_frame["raw"], strict=True
                        )
                    ],
                )
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        rejected = rejected_frame.rename(columns={"line_number": "index"})
        return Appended(
            accepted=[row for row, new in zip(valid, fresh, strict=True) if new],
            duplicates=int((~fresh).sum()),
            rejected=rejected.reset_index(drop=True),
            accepted_index=lines[fresh],
            duplicate_index=lines[~fresh],
            erased_index=erased_index,
        )

    def _masked(self, rejected: pd.DataFrame, ledger: ErasedIds | None) -> pd.DataFrame:
        """Rejected rows as the quarantine keeps them and the caller is answered:
        personal data keyed-hashed, e-mail and phone-shaped text masked."""
        if rejected.empty:
            return rejected
        source: HasherSource
        if self.hasher is not None:
            source = self.hasher
        elif ledger is not None:
            source = ledger.hasher
        else:  # read only when a row holds personal data
            source = partial(home_hasher, self.path.parent.parent)
        raw = mask_raw_rows([str(r) for r in rejected["raw"]], source, region=self.phone_region)
        reasons = [redact(str(reason)) for reason in rejected["reason"]]
        return rejected.assign(raw=np.asarray(raw, dtype=object), reason=reasons)

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

    # ------------------------------------------------------------- erasure, retention
    def anonymous_ids_of(self, customer_ids: Collection[str]) -> set[str]:
        """Anonymous ids that ``login`` / ``identify`` events link to ``customer_ids``."""
        rows = self._con.execute(
            "SELECT DISTINCT json_extract(row, '$.anonymous_id') FROM events "
            "WHERE json_extract(row, '$.event_type') IN ('login', 'identify') "
            "AND json_extract(row, '$.customer_id') IN (SELECT value FROM json_each(?)) "
            "AND json_extract(row, '$.anonymous_id') IS NOT NULL",
            (json.dumps(sorted({str(c) for c in customer_ids})),),
        ).fetchall()
        return {str(anonymous) for (anonymous,) in rows}

    def customers_of(self, anonymous_ids: Collection[str]) -> set[tuple[str, str]]:
        """``(anonymous id, customer id)`` of every ``login`` / ``identify`` event
        linking one of ``anonymous_ids`` to a customer."""
        rows = self._con.execute(
            "SELECT DISTINCT json_extract(row, '$.anonymous_id'), "
            "json_extract(row, '$.customer_id') FROM events "
            "WHERE json_extract(row, '$.event_type') IN ('login', 'identify') "
            "AND json_extract(row, '$.anonymous_id') IN (SELECT value FROM json_each(?)) "
            "AND json_extract(row, '$.customer_id') IS NOT NULL",
            (json.dumps(sorted({str(a) for a in anonymous_ids})),),
        ).fetchall()
        return {(str(a), str(c)) for a, c in rows}

    def count_of(self, ids: Collection[str]) -> int:
        """Events whose ``customer_id`` or ``anonymous_id`` is one of ``ids``."""
        row = self._con.execute(
            "SELECT count(*) FROM events WHERE json_extract(row, '$.customer_id') IN "
            "(SELECT value FROM json_each(?1)) OR json_extract(row, '$.anonymous_id') IN "
            "(SELECT value FROM json_each(?1))",
            (json.dumps(sorted({str(i) for i in ids})),),
        ).fetchone()
        return int(row[0])

    def erase(self, ids: Collection[str], quarantine_seqs: Collection[int]) -> tuple[int, int]:
        """Delete the events whose ``customer_id`` or ``anonymous_id`` is one of
        ``ids``, and the quarantined rows ``quarantine_seqs`` (chosen by the caller,
        who reads their raw text); one transaction. Returns (events, quarantined rows)
        deleted."""
        wanted = sorted({str(i) for i in ids})
        with self._lock:
            events, quarantined = self._delete(
                [
                    (
                        "DELETE FROM events WHERE json_extract(row, '$.customer_id') IN "
                        "(SELECT value FROM json_each(?1)) OR json_extract(row, "
                        "'$.anonymous_id') IN (SELECT value FROM json_each(?1))",
                        (json.dumps(wanted),),
                    ),
                    (
                        "DELETE FROM quarantine WHERE seq IN (SELECT value FROM json_each(?))",
                        (json.dumps(sorted(int(s) for s in quarantine_seqs)),),
                    ),
                ]
            )
        return events, quarantined

    def drop_before(
        self, *, events: datetime | None = None, quarantine: datetime | None = None
    ) -> tuple[int, int]:
        """Delete the events stamped (``ts``) before ``events`` and the rows quarantined
        (received) before ``quarantine`` (``None``: keep that kind); returns the two
        counts. Retention: an old event goes from the log as it goes from the store."""
        events_sql = "DELETE FROM events WHERE julianday(json_extract(row, '$.ts')) < julianday(?)"
        quarantine_sql = "DELETE FROM quarantine WHERE julianday(received_at) < julianday(?)"
        statements = [
            (sql, (cut.isoformat(),))
            for sql, cut in ((events_sql, events), (quarantine_sql, quarantine))
            if cut is not None
        ]
        with self._lock:
            counts = iter(self._delete(statements))
        return (
            next(counts) if events is not None else 0,
            next(counts) if quarantine is not None else 0,
        )

    def _delete(self, statements: list[tuple[str, tuple[Any, ...]]]) -> tuple[int, ...]:
        """Run deletes in one transaction with ``secure_delete`` (deleted rows are
        overwritten with zeros), then empty the write-ahead log, which still holds
        the pages as they were: a byte scan of the files finds no deleted row."""
        try:
            self._con.execute("PRAGMA secure_delete=ON")
            self._con.execute("BEGIN IMMEDIATE")
            try:
                counts = tuple(self._con.execute(sql, args).rowcount for sql, args in statements)
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            truncate_wal(self._con, self.path)
        except sqlite3.OperationalError as error:
            raise WriteFailed(self.path, error) from error
        return counts


def truncate_wal(con: sqlite3.Connection, path: Path) -> bool:
    """Checkpoint ``con``'s database and empty its write-ahead log; ``False`` (and a
    warning) when a reader in another process kept it from emptying: the old pages
    stay in the log until the next checkpoint."""
    busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        logger.warning("%s: a reader kept the write-ahead log from emptying", path)
    return not busy


def erased_records(records: list[dict[str, Any]], ledger: ErasedIds) -> np.ndarray:
    """Positions of the records whose ``customer_id`` or ``anonymous_id`` (as text)
    the ledger lists as erased."""
    ids = [
        [str(record[name]).strip() for name in ("customer_id", "anonymous_id") if record.get(name)]
        if isinstance(record, dict)
        else []
        for record in records
    ]
    erased = ledger.erased({i for row in ids for i in row})
    return np.asarray([n for n, row in enumerate(ids) if erased.intersection(row)], dtype=np.int64)


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
