"""The decision log: every answer the service gives, appended to SQLite (WAL).

One row per decision: which customer and slot, the candidates with their scores
and probabilities, what was chosen with its propensity, the strategy (rule, model,
fallback, consent, holdout) and the model and snapshot versions. The service
(``serving``) writes it; outcome events that carry the ``decision_id`` (or the same
customer and campaign) close the loop: ``measurement`` joins them back for its
reports and estimates. It is data, so it lives in the data layer, where writer and
readers both reach it.

Commits use ``synchronous=NORMAL``: in WAL mode a committed decision survives a
crash of the service (not a power cut of the machine), and a single decision costs
no fsync on the request path. A campaign batch is one transaction.

Erasure (:meth:`DecisionLog.erase`) and retention (:meth:`DecisionLog.drop_before`)
delete with SQLite's ``secure_delete`` on and then empty the write-ahead log, so a
deleted decision leaves no bytes in the files.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from pydantic_core import to_json

from features.data.online_log import CACHE_KIB, truncate_wal
from features.errors import WriteFailed
from features.pii.contacts import key_text
from features.pii.hashing import ErasedIds
from features.pii.masking import without_personal_data

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT NOT NULL,
    ts REAL NOT NULL,
    endpoint TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    slot TEXT NOT NULL,
    strategy TEXT NOT NULL,
    chosen TEXT NOT NULL,
    propensity REAL,
    candidates TEXT NOT NULL,
    versions TEXT NOT NULL,
    context TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_id ON decisions (decision_id);
DROP INDEX IF EXISTS decisions_customer;
"""
# No index by customer: inserting a campaign batch into a customer index is random
# B-tree writes (three quarters of the append time, measured). Per-customer reads
# (erasure, support) are rare and scan; decision ids are time-ordered, so their
# index grows at one end.


class DecisionRecord(NamedTuple):
    decision_id: str
    endpoint: str
    customer_id: str
    slot: str
    strategy: str
    chosen: Any
    propensity: float | None
    candidates: Any
    versions: dict[str, Any]
    context: dict[str, Any]


class DecisionLog:
    """Append-only decision log (see the module docstring)."""

    def __init__(self, path: Path, *, ledger: ErasedIds | None = None) -> None:
        self.path = Path(path)
        # The privacy ledger: a decision about an erased id (the renderer still asks
        # about them) is logged under the id's keyed hash, so the log never holds
        # an erased person's id again.
        self.ledger = ledger
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        con = self._connect()
        con.executescript(SCHEMA)
        con.close()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA busy_timeout=30000")
        con.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # appended to, rarely read back
        return con

    @property
    def con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._connect()
        return con

    def append(self, records: Iterable[DecisionRecord]) -> int:
        now = time.time()
        if self.ledger is not None:
            records = self._pseudonymised(list(records), self.ledger)
        # A batch shares its versions and context: encoded once per distinct object.
        shared: dict[int, str] = {}

        def once(value: Any, *, personal: bool = False) -> str:
            key = id(value)
            text = shared.get(key)
            if text is None:
                # A request's context is the client's: logged without personal data.
                kept = without_personal_data(value) if personal else value
                text = shared[key] = to_json(kept, fallback=str).decode()
            return text

        rows = [
            (
                r.decision_id,
                now,
                r.endpoint,
                r.customer_id,
                r.slot,
                r.strategy,
                to_json(r.chosen).decode(),
                r.propensity,
                to_json(r.candidates).decode(),
                once(r.versions),
                once(r.context, personal=True),
            )
            for r in records
        ]
        con = self.con
        con.execute("BEGIN")
        try:
            con.executemany("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return len(rows)

    @staticmethod
    def _pseudonymised(records: list[DecisionRecord], ledger: ErasedIds) -> list[DecisionRecord]:
        gone = ledger.erased({r.customer_id for r in records})
        if not gone:
            return records
        return [
            r._replace(customer_id=ledger.hasher.hash(key_text("id", r.customer_id)))
            if r.customer_id in gone
            else r
            for r in records
        ]

    def read(
        self,
        *,
        customer_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> pd.DataFrame:
        """The log as a frame (JSON columns decoded), oldest first: one customer's
        decisions, and those logged in ``[since, until)`` (epoch seconds), when given.
        Rows outside the period are not decoded."""
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("customer_id = ?", customer_id),
            ("ts >= ?", since),
            ("ts < ?", until),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = "SELECT * FROM decisions" + (" WHERE " + " AND ".join(where) if where else "")
        frame = pd.read_sql_query(sql + " ORDER BY rowid", self.con, params=tuple(params))
        for column in ("chosen", "candidates", "versions", "context"):
            frame[column] = frame[column].map(json.loads)
        return frame

    def count(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM decisions").fetchone()[0])

    def erase(self, customer_ids: Collection[str]) -> int:
        """Delete every decision about one of ``customer_ids``; how many. A scan (no
        index by customer, see above): erasures are rare."""
        wanted = json.dumps(sorted({str(c) for c in customer_ids}))
        return self._delete(
            "DELETE FROM decisions WHERE customer_id IN (SELECT value FROM json_each(?))",
            wanted,
        )

    def drop_before(self, ts: float) -> int:
        """Delete the decisions logged before ``ts`` (epoch seconds); how many."""
        return self._delete("DELETE FROM decisions WHERE ts < ?", float(ts))

    def _delete(self, sql: str, arg: object) -> int:
        con = self.con
        try:
            con.execute("PRAGMA secure_delete=ON")
            con.execute("BEGIN IMMEDIATE")
            try:
                removed = con.execute(sql, (arg,)).rowcount
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            truncate_wal(con, self.path)
        except sqlite3.OperationalError as error:
            raise WriteFailed(self.path, error) from error
        return int(removed)
