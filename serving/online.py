"""The online store: what a decision reads about one customer, in SQLite (WAL).

Two parts, one database file shared by every worker process:

* **the snapshot part**, replaced in one transaction when a newer feature snapshot
  is loaded: each customer's feature row and segments (JSON), consent state, the
  id mapping, the snapshot's active triggers, and items purchased (for the
  "exclude purchased" filter);
* **the live part**, kept current by ``POST /events``: recent events (the last
  ``recent_event_days`` before the snapshot, then everything posted), last-event and
  last-purchase times, unsubscribes, stock changes, and per-variant send and click
  counts (the selectors' ``prior_*`` features).

A load is a pure function of the snapshot, the event store and the online event
log (events posted but not yet compacted), so reloading never loses a posted event.
Readers never block: WAL readers see the previous snapshot until the load commits.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.data.online_log import connect_sqlite
from features.data.store import EventStore
from features.settings import ATTRIBUTION_WINDOW_HOURS
from features.snapshot import Snapshot
from serving.profiles import PROFILE_EVENTS, Profile, RecentSelection
from serving.store_history import response_rows, store_history

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS profiles (
    customer_id TEXT PRIMARY KEY,
    features TEXT NOT NULL,
    segments TEXT NOT NULL,
    personalised INTEGER NOT NULL,
    consent_email INTEGER NOT NULL,
    sendable INTEGER NOT NULL,
    last_purchase_ts REAL
);
CREATE TABLE IF NOT EXISTS identity (source_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshot_triggers (
    customer_id TEXT NOT NULL, trigger TEXT NOT NULL, item_id TEXT,
    fired_at REAL NOT NULL, expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshot_triggers_customer ON snapshot_triggers (customer_id);
CREATE TABLE IF NOT EXISTS purchased (
    customer_id TEXT NOT NULL, item_id TEXT NOT NULL, PRIMARY KEY (customer_id, item_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recent (
    event_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, ts REAL NOT NULL,
    event_type TEXT NOT NULL, item_id TEXT, campaign_id TEXT, slot TEXT, content_id TEXT
);
DROP INDEX IF EXISTS recent_customer;
CREATE INDEX IF NOT EXISTS recent_customer_events
    ON recent (customer_id, ts, event_type, item_id);  -- covers what decisions read
CREATE TABLE IF NOT EXISTS responses (
    customer_id TEXT NOT NULL, content_id TEXT NOT NULL,
    sends INTEGER NOT NULL DEFAULT 0, clicks INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (customer_id, content_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sends (
    customer_id TEXT NOT NULL, campaign_id TEXT NOT NULL, content_id TEXT NOT NULL,
    ts REAL NOT NULL, clicked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sends_campaign ON sends (customer_id, campaign_id);
CREATE TABLE IF NOT EXISTS live (
    customer_id TEXT PRIMARY KEY, last_event_ts REAL, last_purchase_ts REAL,
    unsubscribed INTEGER NOT NULL DEFAULT 0, events INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS stock (item_id TEXT PRIMARY KEY, in_stock INTEGER, ts REAL);
"""


# Events that matter to a live profile (the rest are only logged).
@functools.lru_cache(maxsize=4096)
def _segments(text: str) -> tuple[str, ...]:
    """Decoded segment lists (few distinct ones: decoded once each)."""
    return tuple(json.loads(text))


def _close_all(connections: Iterable[sqlite3.Connection]) -> None:
    for con in connections:
        try:
            con.close()
        except sqlite3.Error:
            pass


class OnlineStore:
    """SQLite online store (see the module docstring); safe to share between threads."""

    def __init__(
        self,
        path: Path,
        *,
        assume_consent_when_unknown: bool = False,
        attribution_window: timedelta = timedelta(hours=ATTRIBUTION_WINDOW_HOURS),
    ) -> None:
        self.path = Path(path)
        self.assume_consent = assume_consent_when_unknown
        # A click within this long after a send credits the send (as in training).
        self.attribution_window = attribution_window
        self._local = threading.local()
        self._write_lock = threading.Lock()
        # Each thread's connection, by the thread that opened it: a thread that has
        # ended (the web server retires idle worker threads) leaves its connection
        # here, closed when the next thread opens one, so they do not pile up.
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._connections_lock = threading.Lock()
        con = connect_sqlite(self.path)
        columns = [row[1] for row in con.execute("PRAGMA table_info(profiles)")]
        if columns and "last_purchase_ts" not in columns:
            # Derived state from an older layout: rebuilt by the next load.
            for (table,) in con.execute(
                "SELECT name FROM sqlite_master WHERE type='table'"
            ).fetchall():
                if not table.startswith("sqlite_"):
                    con.execute(f"DROP TABLE {table}")
        con.executescript(SCHEMA)
        con.close()

    # ------------------------------------------------------------------ plumbing
    @property
    def con(self) -> sqlite3.Connection:
        """One connection per thread (SQLite connections are not shared)."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = connect_sqlite(self.path)
            self._local.con = con
            with self._connections_lock:
                ended = [t for t in self._connections if not t.is_alive()]
                orphans = [self._connections.pop(t) for t in ended]
                self._connections[threading.current_thread()] = con
            _close_all(orphans)
        return con

    def open_connections(self) -> int:
        """Connections this store holds open now (one per live thread that read it)."""
        with self._connections_lock:
            return len(self._connections)

    def close(self) -> None:
        """Close every connection (once no request reads this store any more)."""
        with self._connections_lock:
            connections, self._connections = list(self._connections.values()), {}
        _close_all(connections)
        self._local = threading.local()

    def set_meta(self, key: str, value: str) -> None:
        with self._write_lock:
            self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # ------------------------------------------------------------------ loading
    def load(
        self,
        snapshot: Snapshot,
        *,
        snapshot_id: str,
        store: EventStore,
        pending: pd.DataFrame,
        recent_days: float,
    ) -> None:
        """Replace the snapshot part and rebuild the live part (one transaction)."""
        as_of = pd.Timestamp(snapshot.as_of)
        customers = snapshot.customers
        mapping = snapshot.identity.mapping
        canonical = dict(
            zip(mapping["source_id"].astype(str), mapping["canonical_id"].astype(str), strict=True)
        )
        personalised = set(
            customers.loc[customers["personalised"].astype(bool), "customer_id"].astype(str)
        )
        segments = snapshot.segments.groupby("customer_id")["segment"].agg(list).to_dict()
        feature_columns = [
            c for c in customers.columns if c not in ("customer_id", "personalised", "sendable")
        ]
        profile_rows = [
            (
                str(cid),
                json.dumps(_plain_record(record)),
                json.dumps(sorted(segments.get(cid, []))),
                int(bool(record.get("personalised", False))),
                int(bool(record.get("consent_email", False))),
                int(bool(sendable)),
                None
                if _missing(record.get("last_purchase_ts"))
                else _epoch(record["last_purchase_ts"]),
            )
            for cid, sendable, record in zip(
                customers["customer_id"].astype(str),
                customers["sendable"].fillna(False),
                customers[feature_columns + ["personalised"]].to_dict("records"),
                strict=True,
            )
        ]
        triggers = snapshot.triggers
        trigger_rows = [
            (str(c), str(t), None if i is None or _missing(i) else str(i), _epoch(f), _epoch(e))
            for c, t, i, f, e in zip(
                triggers["customer_id"],
                triggers["trigger"],
                triggers["item_id"],
                triggers["fired_at"],
                triggers["expires_at"],
                strict=True,
            )
        ]
        history = store_history(store, as_of, recent_days, self.attribution_window)
        if not pending.empty:
            history["recent"] = pd.concat(
                [
                    history["recent"],
                    pending[pending["ts"] >= as_of - pd.Timedelta(days=recent_days)],
                ],
                ignore_index=True,
            ).drop_duplicates("event_id")
        recent = history["recent"]
        recent = recent.assign(person=_canonical(recent, canonical))
        allowed = recent["person"].isin(personalised) | (
            ~recent["person"].isin(set(customers["customer_id"].astype(str))) & self.assume_consent
        )
        recent = recent[allowed.to_numpy()]
        purchases = history["purchases"]
        purchases = purchases.assign(person=_canonical(purchases, canonical))
        purchases = purchases[purchases["person"].isin(personalised)]
        with self._write_lock:
            con = self.con
            con.execute("BEGIN IMMEDIATE")
            try:
                for table in (
                    "profiles",
                    "identity",
                    "snapshot_triggers",
                    "purchased",
                    "recent",
                    "responses",
                    "sends",
                    "live",
                    "stock",
                ):
                    con.execute(f"DELETE FROM {table}")
                con.executemany("INSERT INTO profiles VALUES (?, ?, ?, ?, ?, ?, ?)", profile_rows)
                con.executemany(
                    "INSERT INTO identity VALUES (?, ?)",
                    [(k, v) for k, v in canonical.items() if k != v],
                )
                con.executemany(
                    "INSERT INTO snapshot_triggers VALUES (?, ?, ?, ?, ?)", trigger_rows
                )
                con.executemany(
                    "INSERT OR IGNORE INTO purchased VALUES (?, ?)",
                    zip(purchases["person"], purchases["item_id"].astype(str), strict=True),
                )
                con.executemany(
                    "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?)",
                    response_rows(history["responses"], canonical),
                )
                self._apply(
                    con,
                    list(zip(recent["person"], recent.to_dict("records"), strict=True)),
                    as_of=as_of,
                )
                con.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    [
                        ("snapshot_id", snapshot_id),
                        ("as_of", as_of.isoformat()),
                        ("loaded_at", pd.Timestamp.now(tz="UTC").isoformat()),
                    ],
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ live updates
    def apply_events(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Update the live part with validated events (typed rows, e.g.
        :attr:`features.data.online_log.Appended.accepted`); returns rows applied."""
        if not events:
            return 0
        sources = [_source(event) for event in events]
        canonical = self._canonical_ids(s for s in sources if s is not None)
        persons = [None if s is None else canonical[s] for s in sources]
        known = self._personalised_flags(sorted({p for p in persons if p is not None}))
        # Unsubscribes always count, consent or not; the rest needs consent.
        kept = [
            (person, event)
            for person, event in zip(persons, events, strict=True)
            if person is not None
            and (known.get(person, self.assume_consent) or event["event_type"] == "unsubscribe")
        ]
        as_of_text = self.meta("as_of")
        as_of = pd.Timestamp(as_of_text) if as_of_text else None
        with self._write_lock:
            con = self.con
            con.execute("BEGIN IMMEDIATE")
            try:
                applied = self._apply(con, kept, as_of=as_of)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return applied

    def _apply(
        self,
        con: sqlite3.Connection,
        events: list[tuple[str, Mapping[str, Any]]],
        *,
        as_of: Any,
    ) -> int:
        """Insert events, each with its canonical person, into the live tables."""
        applied = 0
        for person, row in sorted(events, key=lambda pair: _epoch(pair[1]["ts"])):
            ts = _epoch(row["ts"])
            kind = str(row["event_type"])
            item = _text(row.get("item_id"))
            campaign = _text(row.get("campaign_id"))
            content = _text(row.get("content_id"))
            slot = _text(row.get("slot"))
            if kind == "stock_change":
                in_stock = _in_stock(row.get("properties"))
                if item is not None and in_stock is not None:
                    con.execute(
                        "INSERT INTO stock VALUES (?, ?, ?) ON CONFLICT (item_id) DO UPDATE "
                        "SET in_stock = excluded.in_stock, ts = excluded.ts "
                        "WHERE excluded.ts >= stock.ts",
                        (item, int(in_stock), ts),
                    )
                continue
            if kind not in PROFILE_EVENTS:
                continue
            cursor = con.execute(
                "INSERT OR IGNORE INTO recent VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (str(row["event_id"]), person, ts, kind, item, campaign, slot, content),
            )
            if cursor.rowcount == 0:
                continue  # seen before: counters already hold it
            applied += 1
            purchase_ts = ts if kind == "purchase" else None
            con.execute(
                "INSERT INTO live VALUES (?, ?, ?, ?, 1) ON CONFLICT (customer_id) DO UPDATE SET "
                "last_event_ts = max(coalesce(last_event_ts, 0), excluded.last_event_ts), "
                "last_purchase_ts = CASE WHEN excluded.last_purchase_ts IS NULL "
                "THEN last_purchase_ts ELSE max(coalesce(last_purchase_ts, 0), "
                "excluded.last_purchase_ts) END, "
                "unsubscribed = max(unsubscribed, excluded.unsubscribed), events = events + 1",
                (person, ts, purchase_ts, int(kind == "unsubscribe")),
            )
            if kind == "purchase" and item is not None:
                con.execute("INSERT OR IGNORE INTO purchased VALUES (?, ?)", (person, item))
            if kind == "email_sent" and content is not None and campaign is not None:
                after_snapshot = as_of is None or ts >= _epoch(as_of)
                if after_snapshot:
                    con.execute(
                        "INSERT INTO responses VALUES (?, ?, 1, 0) ON CONFLICT DO UPDATE "
                        "SET sends = sends + 1",
                        (person, content),
                    )
                con.execute(
                    "INSERT INTO sends VALUES (?, ?, ?, ?, 0)",
                    (person, campaign, content, ts),
                )
            if kind == "email_click" and campaign is not None:
                credited = con.execute(
                    "UPDATE sends SET clicked = 1 WHERE customer_id = ? AND campaign_id = ? "
                    "AND clicked = 0 AND ts <= ? AND ts >= ? RETURNING content_id, ts",
                    (person, campaign, ts, ts - self.attribution_window.total_seconds()),
                ).fetchall()
                for content_id, sent_ts in credited:
                    if as_of is None or sent_ts >= _epoch(as_of):
                        con.execute(
                            "UPDATE responses SET clicks = clicks + 1 "
                            "WHERE customer_id = ? AND content_id = ?",
                            (person, content_id),
                        )
        return applied

    # ------------------------------------------------------------------ reading
    def resolve(self, ids: Iterable[str]) -> dict[str, str]:
        """Canonical customer id of each given id (itself when unmapped)."""
        return self._canonical_ids(ids)

    def profiles(
        self,
        ids: list[str],
        *,
        recent: RecentSelection | None = None,
        responses: bool = True,
        features: bool = True,
    ) -> dict[str, Profile]:
        """Profiles of canonical ids (every id gets one; unknown ones are cold).

        ``recent`` narrows the recent events read (all of them by default);
        ``responses=False`` skips the per-content send and click counts and
        ``features=False`` the feature row: a campaign batch of recommendations whose
        rules read neither saves most of what is read.
        """
        payload = json.dumps(ids)
        con = self.con
        rows = con.execute(
            f"SELECT p.customer_id, {'p.features' if features else 'NULL'}, p.segments, "
            "p.personalised, p.sendable, "
            "p.last_purchase_ts FROM profiles p "
            "WHERE p.customer_id IN (SELECT value FROM json_each(?))",
            (payload,),
        ).fetchall()
        out: dict[str, Profile] = {}
        for cid, raw, segments, personalised, sendable, last_purchase in rows:
            out[cid] = Profile(
                customer_id=cid,
                known=True,
                personalised=bool(personalised),
                sendable=bool(sendable),
                raw_features=(raw if personalised else "{}") if features else None,
                segments=list(_segments(segments)) if personalised else [],
                snapshot_last_purchase_ts=last_purchase if personalised else None,
            )
        for cid in ids:
            if cid not in out:
                out[cid] = Profile(
                    customer_id=cid,
                    known=False,
                    personalised=self.assume_consent,
                    sendable=False,
                )
        for cid, last_event, last_purchase, unsubscribed in con.execute(
            "SELECT customer_id, last_event_ts, last_purchase_ts, unsubscribed FROM live "
            "WHERE customer_id IN (SELECT value FROM json_each(?))",
            (payload,),
        ):
            profile = out[cid]
            profile.last_event_ts = last_event
            profile.last_purchase_ts = last_purchase
            if unsubscribed:
                profile.sendable = False
        for cid, trigger, item, fired, expires in con.execute(
            "SELECT customer_id, trigger, item_id, fired_at, expires_at FROM snapshot_triggers "
            "WHERE customer_id IN (SELECT value FROM json_each(?))",
            (payload,),
        ):
            out[cid].snapshot_triggers.append(
                {"trigger": trigger, "item_id": item, "fired_at": fired, "expires_at": expires}
            )
        if responses:
            for cid, content, sends, clicks in con.execute(
                "SELECT customer_id, content_id, sends, clicks FROM responses "
                "WHERE customer_id IN (SELECT value FROM json_each(?))",
                (payload,),
            ):
                out[cid].responses[content] = (int(sends), int(clicks))
        # A selection comes back in no particular order (sorting costs a tenth).
        where, parameters = (" ORDER BY ts", ()) if recent is None else recent.sql()
        for cid, ts, kind, item in con.execute(
            "SELECT customer_id, ts, event_type, item_id FROM recent "
            f"WHERE customer_id IN (SELECT value FROM json_each(?)){where}",
            (payload, *parameters),
        ):
            out[cid].recent.append((ts, kind, item))
        return out

    def purchased(self, ids: list[str]) -> dict[str, list[str]]:
        """Items each customer bought (all time)."""
        out: dict[str, list[str]] = {}
        for cid, item in self.con.execute(
            "SELECT customer_id, item_id FROM purchased "
            "WHERE customer_id IN (SELECT value FROM json_each(?))",
            (json.dumps(ids),),
        ):
            out.setdefault(cid, []).append(item)
        return out

    def stock_changes(self) -> dict[str, bool]:
        """Items whose stock changed through posted events: item → in stock."""
        return {
            str(item): bool(flag)
            for item, flag in self.con.execute("SELECT item_id, in_stock FROM stock")
        }

    def stock_version(self) -> tuple[int, float]:
        row = self.con.execute("SELECT count(*), coalesce(max(ts), 0) FROM stock").fetchone()
        return int(row[0]), float(row[1])

    # ------------------------------------------------------------------ helpers
    def _canonical_ids(self, ids: Iterable[Any]) -> dict[str, str]:
        unique = sorted({str(i) for i in ids})
        found = dict(
            self.con.execute(
                "SELECT source_id, customer_id FROM identity "
                "WHERE source_id IN (SELECT value FROM json_each(?))",
                (json.dumps(unique),),
            ).fetchall()
        )
        return {i: str(found.get(i, i)) for i in unique}

    def _personalised_flags(self, ids: list[str]) -> dict[str, bool]:
        return {
            str(cid): bool(flag)
            for cid, flag in self.con.execute(
                "SELECT customer_id, personalised FROM profiles "
                "WHERE customer_id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            )
        }


# ---------------------------------------------------------------------- module helpers
def _source(event: Mapping[str, Any]) -> str | None:
    """Whom an event is about, before identity: its customer id, else its anonymous id."""
    return _text(event.get("customer_id")) or _text(event.get("anonymous_id"))


def _text(value: Any) -> str | None:
    return None if _missing(value) else str(value)


def _canonical(frame: pd.DataFrame, canonical: dict[str, str]) -> pd.Series:
    """Canonical person of each event: its customer id, else its anonymous id, mapped."""
    source = frame["customer_id"].where(frame["customer_id"].notna(), frame["anonymous_id"])
    return source.map(lambda s: None if _missing(s) else canonical.get(str(s), str(s)))


def _in_stock(properties: Any) -> bool | None:
    if _missing(properties):
        return None
    try:
        value = json.loads(str(properties)).get("in_stock")
    except (ValueError, AttributeError):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    if isinstance(value, int | float):
        return bool(value)
    return None


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _epoch(value: Any) -> float:
    """Seconds since the epoch of a timestamp (naive values are UTC)."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.timestamp()
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return float(stamp.value) / 1e9


def _plain_record(record: dict[Any, Any]) -> dict[str, Any]:
    """JSON-ready features: timestamps as ISO text, numpy as Python, NaN as null."""
    out: dict[str, Any] = {}
    for name, value in record.items():
        key = str(name)
        if isinstance(value, pd.Timestamp | datetime):
            out[key] = None if pd.isna(value) else pd.Timestamp(value).isoformat()
        elif isinstance(value, np.generic):
            item = value.item()
            out[key] = None if isinstance(item, float) and math.isnan(item) else item
        elif isinstance(value, float) and math.isnan(value):
            out[key] = None
        elif value is pd.NA or value is pd.NaT:
            out[key] = None
        else:
            out[key] = value
    return out
