"""The online store: what a decision reads about one customer, in SQLite (WAL).

Two parts, one database file shared by every worker process:

* **the snapshot part**, replaced in one transaction when a newer feature snapshot
  is loaded: each customer's feature row and segments (JSON), the id mapping, the
  snapshot's active triggers, items purchased (for the "exclude purchased" filter)
  and the keyed hashes of each person's ids, e-mails and phones (``contacts``, what
  the suppression list is compared with);
* **the live part**, kept current by ``POST /events``: recent events (the last
  ``recent_event_days`` before the snapshot, then everything posted), last-event and
  last-purchase times, stock changes, every e-mail send (per channel, for the
  frequency caps, and with its campaign and content for the selectors' ``prior_*``
  features), per-variant send and click counts, and each person's consent and
  deliverability state (``consent``: the snapshot's, then every consent event
  posted since).

Consent events (:data:`features.data.contracts.CONSENT_EVENTS`) count for everyone,
consented to profiling or not, and take effect on the next request: a withdrawal of
consent to profiling deletes the person's recent events and makes every decision
non-personalised (strategy ``consent``); consent given again personalises them again
from the snapshot's data — a person the snapshot did not profile (no consent then)
stays non-personalised until the next snapshot. :meth:`OnlineStore.profiles` answers
whether a person may be e-mailed and, if not, why (:data:`serving.profiles.NOT_SENDABLE_REASONS`):
consent, bounces and complaints, the privacy ledger's suppression list, the frequency
caps.

A load is a pure function of the snapshot, the event store and the online event
log (events posted but not yet compacted), so reloading never loses a posted event
— a posted consent change included. Readers never block: WAL readers see the
previous snapshot until the load commits.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.data.contracts import CONSENT_EVENTS
from features.data.online_log import connect_sqlite
from features.data.store import EventStore, connect
from features.pii.contacts import contact_keys, key_text
from features.pii.hashing import KeyedHasher
from features.privacy.ledger import PrivacyLedger
from features.settings import ATTRIBUTION_WINDOW_HOURS, FrequencyCap
from features.snapshot import Snapshot
from serving.profiles import PROFILE_EVENTS, ConsentState, Profile, RecentSelection
from serving.store_history import response_rows, store_history

LAYOUT = 2
"""The store's table layout (``PRAGMA user_version``): a file of another layout holds
derived state only, dropped when opened and rebuilt by the next load."""
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
CREATE TABLE IF NOT EXISTS contacts (
    customer_id TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (customer_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recent (
    event_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, ts REAL NOT NULL,
    event_type TEXT NOT NULL, item_id TEXT, campaign_id TEXT, slot TEXT, content_id TEXT
);
CREATE INDEX IF NOT EXISTS recent_customer_events
    ON recent (customer_id, ts, event_type, item_id);  -- covers what decisions read
CREATE TABLE IF NOT EXISTS responses (
    customer_id TEXT NOT NULL, content_id TEXT NOT NULL,
    sends INTEGER NOT NULL DEFAULT 0, clicks INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (customer_id, content_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sends (
    event_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, campaign_id TEXT, content_id TEXT,
    channel TEXT NOT NULL, ts REAL NOT NULL, clicked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sends_campaign ON sends (customer_id, campaign_id);
CREATE INDEX IF NOT EXISTS sends_customer_ts ON sends (customer_id, ts);
CREATE TABLE IF NOT EXISTS live (
    customer_id TEXT PRIMARY KEY, last_event_ts REAL, last_purchase_ts REAL,
    events INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS consent (
    customer_id TEXT PRIMARY KEY,
    consent_email INTEGER, consent_email_ts REAL,
    consent_personalization INTEGER, consent_personalization_ts REAL,
    unsubscribed INTEGER NOT NULL, unsubscribed_ts REAL,
    email_granted_ts REAL,
    bounced INTEGER NOT NULL, bounced_ts REAL,
    complained INTEGER NOT NULL, complained_ts REAL
);
CREATE TABLE IF NOT EXISTS stock (item_id TEXT PRIMARY KEY, in_stock INTEGER, ts REAL);
"""
CONSENT_READ = (
    "consent_email, consent_email_ts, consent_personalization, consent_personalization_ts, "
    "unsubscribed, email_granted_ts, bounced_ts, complained_ts"
)
"""The ``consent`` columns a :class:`~serving.profiles.ConsentState` is read from."""


@dataclass(frozen=True)
class SendRules:
    """What decides, beyond consent, whether a customer may be e-mailed: the privacy
    ledger's suppression list (``None``: no suppression list) and the frequency
    caps; ``phone_region`` and ``gmail`` normalise addresses as identity resolution
    and ``tailor suppress`` do."""

    ledger: PrivacyLedger | None = None
    frequency_caps: tuple[FrequencyCap, ...] = ()
    phone_region: str = "US"
    gmail: bool = False

    @property
    def longest_cap_days(self) -> float:
        return max((cap.period_days for cap in self.frequency_caps), default=0.0)


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
        send_rules: SendRules = SendRules(),
    ) -> None:
        self.path = Path(path)
        self.assume_consent = assume_consent_when_unknown
        self.send_rules = send_rules
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
        tables = [
            str(name)
            for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            if not str(name).startswith("sqlite_")
        ]
        if tables and con.execute("PRAGMA user_version").fetchone()[0] != LAYOUT:
            # Derived state from another layout: rebuilt by the next load.
            for table in tables:
                con.execute(f"DROP TABLE {table}")
        con.executescript(SCHEMA)
        con.execute(f"PRAGMA user_version = {LAYOUT}")
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
        """Replace the snapshot part and rebuild the live part (one transaction).

        The live part is the snapshot's consent state and the store's recent events
        (which the snapshot saw), then every pending event of the online log (which
        it did not) in time order: recent ones, and consent events and sends of any
        age, so a consent change posted before the load is never forgotten.
        """
        as_of = pd.Timestamp(snapshot.as_of)
        customers = snapshot.customers
        mapping = snapshot.identity.mapping
        canonical = dict(
            zip(mapping["source_id"].astype(str), mapping["canonical_id"].astype(str), strict=True)
        )
        people = customers["customer_id"].astype(str)
        flags = customers["personalised"].astype(bool)
        personal = dict(zip(people, flags, strict=True))
        personalised = set(people[flags.to_numpy()])
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
        consent_rows = _snapshot_consent(customers, _epoch(as_of))
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
        seen = history["recent"]
        events = seen
        if not pending.empty:
            lasting = pending["event_type"].isin([*CONSENT_EVENTS, "email_sent"])
            fresh = pending[(pending["ts"] >= as_of - pd.Timedelta(days=recent_days)) | lasting]
            events = pd.concat([seen, fresh], ignore_index=True).drop_duplicates("event_id")
        events = events.assign(person=_canonical(events, canonical))
        events = events[events["person"].notna().to_numpy()]
        # Every send back to the longest frequency cap (and the recent window), with
        # its channel: sends count for everyone, consented to profiling or not.
        days = max(self.send_rules.longest_cap_days, recent_days)
        sends = _store_sends(store, as_of - pd.Timedelta(days=days), as_of)
        sends = sends.assign(person=_canonical(sends, canonical))
        sends = sends[sends["person"].notna().to_numpy()]
        purchases = history["purchases"]
        purchases = purchases.assign(person=_canonical(purchases, canonical))
        purchases = purchases[purchases["person"].isin(personalised)]
        contacts = self._contact_rows(store, canonical, mapping, people)
        initial = {
            person: personal.get(person, self.assume_consent)
            for person in set(events["person"].astype(str))
        }
        with self._write_lock:
            con = self.con
            con.execute("BEGIN IMMEDIATE")
            try:
                for table in _tables(con):
                    if table != "meta":
                        con.execute(f"DELETE FROM {table}")
                con.executemany("INSERT INTO profiles VALUES (?, ?, ?, ?, ?, ?, ?)", profile_rows)
                con.executemany(
                    "INSERT INTO consent VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", consent_rows
                )
                con.executemany(
                    "INSERT INTO identity VALUES (?, ?)",
                    [(k, v) for k, v in canonical.items() if k != v],
                )
                con.executemany("INSERT OR IGNORE INTO contacts VALUES (?, ?)", contacts)
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
                con.executemany(
                    "INSERT OR IGNORE INTO sends VALUES (?, ?, ?, ?, ?, ?, 0)",
                    [
                        (str(e), str(p), _text(c), _text(k), str(ch), _epoch(t))
                        for e, p, c, k, ch, t in zip(
                            sends["event_id"],
                            sends["person"],
                            sends["campaign_id"],
                            sends["content_id"],
                            sends["channel"],
                            sends["ts"],
                            strict=True,
                        )
                    ],
                )
                self._apply(
                    con,
                    list(zip(events["person"].astype(str), events.to_dict("records"), strict=True)),
                    as_of=as_of,
                    personal=initial,
                    seen=frozenset(seen["event_id"].astype(str)),
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

    def _contact_rows(
        self,
        store: EventStore,
        canonical: Mapping[str, str],
        mapping: pd.DataFrame,
        people: pd.Series,
    ) -> list[tuple[str, str]]:
        """``(person, key)``: the keyed hash of every id, e-mail and phone of each
        person's customer records (the store's current ones), under the ledger's key
        and each retired one, so entries of the suppression list made before a key
        rotation still match. None without a ledger."""
        ledger = self.send_rules.ledger
        if ledger is None:
            return []
        records = (
            store.read("customers")
            if store.files("customers")
            else pd.DataFrame({"customer_id": pd.Series([], dtype=str)})
        )
        records = records[[c for c in ("customer_id", "email", "phone") if c in records.columns]]
        sources = mapping.loc[mapping["source_type"] == "customer", "source_id"].astype(str)
        ids = set(records["customer_id"].astype(str)) | set(sources) | set(people)
        main = ledger.hasher
        rows: set[tuple[str, str]] = set()
        for hasher in [main, *(KeyedHasher(name, key) for name, key in main.retired)]:
            keys = contact_keys(
                records, hasher, region=self.send_rules.phone_region, gmail=self.send_rules.gmail
            )
            rows.update(
                (canonical.get(c, c), k)
                for c, k in zip(keys["customer_id"].astype(str), keys["key"], strict=True)
            )
            rows.update(
                (canonical.get(i, i), hasher.hash(key_text("id", i.strip())))
                for i in ids
                if i.strip()
            )
        return sorted(rows)

    # ------------------------------------------------------------------ live updates
    def apply_events(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Update the live part with validated events (typed rows, e.g.
        :attr:`features.data.online_log.Appended.accepted`); returns rows applied.

        Consent events and sends count for everyone; the rest only for people with
        consent to profiling (as it stands at each event, so an event after a
        withdrawal in the same call is not kept either)."""
        if not events:
            return 0
        sources = [_source(event) for event in events]
        canonical = self._canonical_ids(s for s in sources if s is not None)
        pairs = [
            (canonical[source], event)
            for source, event in zip(sources, events, strict=True)
            if source is not None
        ]
        as_of_text = self.meta("as_of")
        as_of = pd.Timestamp(as_of_text) if as_of_text else None
        with self._write_lock:
            con = self.con
            con.execute("BEGIN IMMEDIATE")
            try:
                personal = self._personal_flags(con, sorted({p for p, _ in pairs}))
                applied = self._apply(con, pairs, as_of=as_of, personal=personal)
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
        personal: dict[str, bool],
        seen: Set[str] = frozenset(),
    ) -> int:
        """Apply events, each with its canonical person, to the live tables, in time
        order. ``personal``: whether each person may be profiled now (updated as
        their consent events are applied); ``seen``: event ids whose consent effect
        the snapshot already holds."""
        applied = 0
        snapshot_at = None if as_of is None else _epoch(as_of)
        for person, row in sorted(events, key=lambda pair: _epoch(pair[1]["ts"])):
            ts = _epoch(row["ts"])
            kind = str(row["event_type"])
            event_id = str(row["event_id"])
            item = _text(row.get("item_id"))
            campaign = _text(row.get("campaign_id"))
            content = _text(row.get("content_id"))
            slot = _text(row.get("slot"))
            if kind in CONSENT_EVENTS:  # never part of a behavioural profile
                if event_id in seen:
                    continue
                now_personal = self._apply_consent(con, person, kind, ts, row.get("properties"))
                if personal.get(person, False) and not now_personal:
                    # Consent to profiling withdrawn: what was kept of them goes.
                    con.execute("DELETE FROM recent WHERE customer_id = ?", (person,))
                    con.execute("DELETE FROM live WHERE customer_id = ?", (person,))
                personal[person] = now_personal
                applied += 1
                continue
            new_send = False
            if kind == "email_sent":
                new_send = (
                    con.execute(
                        "INSERT OR IGNORE INTO sends VALUES (?, ?, ?, ?, ?, ?, 0)",
                        (event_id, person, campaign, content, _channel(row), ts),
                    ).rowcount
                    == 1
                )
            if not personal.get(person, False):
                continue
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
                (event_id, person, ts, kind, item, campaign, slot, content),
            )
            if cursor.rowcount == 0:
                continue  # seen before: counters already hold it
            applied += 1
            purchase_ts = ts if kind == "purchase" else None
            con.execute(
                "INSERT INTO live VALUES (?, ?, ?, 1) ON CONFLICT (customer_id) DO UPDATE SET "
                "last_event_ts = max(coalesce(last_event_ts, 0), excluded.last_event_ts), "
                "last_purchase_ts = CASE WHEN excluded.last_purchase_ts IS NULL "
                "THEN last_purchase_ts ELSE max(coalesce(last_purchase_ts, 0), "
                "excluded.last_purchase_ts) END, events = events + 1",
                (person, ts, purchase_ts),
            )
            if kind == "purchase" and item is not None:
                con.execute("INSERT OR IGNORE INTO purchased VALUES (?, ?)", (person, item))
            after_snapshot = snapshot_at is None or ts >= snapshot_at
            if new_send and content is not None and campaign is not None and after_snapshot:
                con.execute(
                    "INSERT INTO responses VALUES (?, ?, 1, 0) ON CONFLICT DO UPDATE "
                    "SET sends = sends + 1",
                    (person, content),
                )
            if kind == "email_click" and campaign is not None:
                credited = con.execute(
                    "UPDATE sends SET clicked = 1 WHERE customer_id = ? AND campaign_id = ? "
                    "AND clicked = 0 AND ts <= ? AND ts >= ? RETURNING content_id, ts",
                    (person, campaign, ts, ts - self.attribution_window.total_seconds()),
                ).fetchall()
                for content_id, sent_ts in credited:
                    if content_id is not None and (snapshot_at is None or sent_ts >= snapshot_at):
                        con.execute(
                            "UPDATE responses SET clicks = clicks + 1 "
                            "WHERE customer_id = ? AND content_id = ?",
                            (person, content_id),
                        )
        return applied

    def _apply_consent(
        self, con: sqlite3.Connection, person: str, kind: str, ts: float, properties: Any
    ) -> bool:
        """Apply one consent event to ``person``'s consent row; whether they may be
        profiled after it."""
        state, base = self._consent_of(con, person)
        after = state.applied(kind, ts, properties)
        if after != state:
            con.execute(
                "INSERT OR REPLACE INTO consent VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _consent_row(person, after),
            )
        return base and after.consent_personalization is not False

    def _consent_of(self, con: sqlite3.Connection, person: str) -> tuple[ConsentState, bool]:
        """``person``'s consent state, and whether the snapshot (or, for a person it
        never saw, ``assume_consent_when_unknown``) lets them be profiled."""
        found = con.execute(
            f"SELECT {CONSENT_READ} FROM consent WHERE customer_id = ?", (person,)
        ).fetchone()
        profile = con.execute(
            "SELECT personalised, consent_email, sendable FROM profiles WHERE customer_id = ?",
            (person,),
        ).fetchone()
        base = self.assume_consent if profile is None else bool(profile[0])
        if found is not None:
            return _consent_state(found), base
        if profile is not None:  # a profile loaded without a consent row
            return _profile_consent(*profile), base
        return ConsentState(), base

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
        now: float | None = None,
    ) -> dict[str, Profile]:
        """Profiles of canonical ids (every id gets one; unknown ones are cold).

        ``recent`` narrows the recent events read (all of them by default);
        ``responses=False`` skips the per-content send and click counts and
        ``features=False`` the feature row: a campaign batch of recommendations whose
        rules read neither saves most of what is read. Nothing behavioural is read for
        a person without consent to profiling. ``now`` (epoch seconds, default the
        clock) is when the frequency caps count back from.
        """
        payload = json.dumps(ids)
        con = self.con
        rows = con.execute(
            f"SELECT p.customer_id, {'p.features' if features else 'NULL'}, p.segments, "
            "p.personalised, p.consent_email, p.sendable, p.last_purchase_ts FROM profiles p "
            "WHERE p.customer_id IN (SELECT value FROM json_each(?))",
            (payload,),
        ).fetchall()
        states = {
            str(row[0]): _consent_state(row[1:])
            for row in con.execute(
                f"SELECT customer_id, {CONSENT_READ} FROM consent "
                "WHERE customer_id IN (SELECT value FROM json_each(?))",
                (payload,),
            )
        }
        out: dict[str, Profile] = {}
        for cid, raw, segments, personalised, consent_email, sendable, last_purchase in rows:
            state = states.get(cid) or _profile_consent(personalised, consent_email, sendable)
            personal = bool(personalised) and state.consent_personalization is not False
            out[cid] = Profile(
                customer_id=cid,
                known=True,
                personalised=personal,
                sendable=True,
                raw_features=(raw if personal else "{}") if features else None,
                segments=list(_segments(segments)) if personal else [],
                snapshot_last_purchase_ts=last_purchase if personal else None,
                consent_personalization=state.consent_personalization,
                not_sendable_reason=state.reason(),
            )
        for cid in ids:
            if cid not in out:
                state = states.get(cid) or ConsentState()
                out[cid] = Profile(
                    customer_id=cid,
                    known=False,
                    personalised=self.assume_consent and state.consent_personalization is not False,
                    sendable=False,
                    consent_personalization=state.consent_personalization,
                    not_sendable_reason=state.reason(),
                )
        self._sendable(con, out, time.time() if now is None else now)
        personal_ids = [cid for cid, profile in out.items() if profile.personalised]
        if not personal_ids:
            return out
        payload = json.dumps(personal_ids)
        for cid, last_event, last_purchase in con.execute(
            "SELECT customer_id, last_event_ts, last_purchase_ts FROM live "
            "WHERE customer_id IN (SELECT value FROM json_each(?))",
            (payload,),
        ):
            profile = out[cid]
            profile.last_event_ts = last_event
            profile.last_purchase_ts = last_purchase
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

    def _sendable(self, con: sqlite3.Connection, out: dict[str, Profile], now: float) -> None:
        """Set each profile's ``sendable`` and ``not_sendable_reason``: its consent
        reason (already set), else the suppression list, else a frequency cap, else
        ``unknown_customer`` for an id the snapshot never saw — the first that applies.
        """
        open_ids = [cid for cid, p in out.items() if p.not_sendable_reason is None]
        suppressed = self._suppressed(con, open_ids) if open_ids else {}
        capped = self._capped(con, [c for c in open_ids if c not in suppressed], now)
        for cid, profile in out.items():
            reason = profile.not_sendable_reason
            if reason is None and cid in suppressed:
                reason = f"suppressed:{suppressed[cid]}"
            if reason is None:
                reason = capped.get(cid) or (None if profile.known else "unknown_customer")
            profile.not_sendable_reason = reason
            profile.sendable = reason is None

    def _suppressed(self, con: sqlite3.Connection, ids: list[str]) -> dict[str, str]:
        """Which of ``ids`` the suppression list names (by an id, e-mail or phone of
        their records): person → the entry's reason."""
        ledger = self.send_rules.ledger
        table = ledger.suppressed_keys() if ledger is not None else {}
        if not table:
            return {}
        out: dict[str, str] = {}
        hashed: set[str] = set()
        for cid, key in con.execute(
            "SELECT customer_id, key FROM contacts "
            "WHERE customer_id IN (SELECT value FROM json_each(?))",
            (json.dumps(ids),),
        ):
            hashed.add(cid)
            if key in table and cid not in out:
                out[cid] = table[key]
        unhashed = [cid for cid in ids if cid not in hashed]  # ids the snapshot never saw
        if unhashed and ledger is not None:
            out |= ledger.suppressed_ids(unhashed)
        return out

    def _capped(self, con: sqlite3.Connection, ids: list[str], now: float) -> dict[str, str]:
        """Which of ``ids`` are at a frequency cap: as many sends on its channel within
        its period before ``now`` as it allows; person → the first such cap's label.

        A send is an ``email_sent`` event, or the events of one campaign at one time
        (a send logs one row per slot decided): each counts once."""
        caps = self.send_rules.frequency_caps
        if not caps or not ids:
            return {}
        sent: dict[str, set[tuple[str, str, float]]] = {}
        for cid, event_id, campaign, channel, ts in con.execute(
            "SELECT customer_id, event_id, campaign_id, channel, ts FROM sends "
            "WHERE customer_id IN (SELECT value FROM json_each(?)) AND ts >= ?",
            (json.dumps(ids), now - self.send_rules.longest_cap_days * 86400.0),
        ):
            key = f"campaign:{campaign}" if campaign is not None else f"event:{event_id}"
            sent.setdefault(cid, set()).add((channel, key, ts))
        out: dict[str, str] = {}
        for cid, sends in sent.items():
            for cap in caps:
                since = now - cap.period_days * 86400.0
                if sum(c == cap.channel and ts >= since for c, _, ts in sends) >= cap.max_sends:
                    out[cid] = cap.label
                    break
        return out

    def consent(self, ids: list[str]) -> dict[str, ConsentState]:
        """The consent and deliverability state of each canonical id (an id without
        any: every consent unknown)."""
        con = self.con
        return {cid: self._consent_of(con, cid)[0] for cid in ids}

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

    def _personal_flags(self, con: sqlite3.Connection, ids: list[str]) -> dict[str, bool]:
        """Whether each person may be profiled now: the snapshot's consent (for a
        person it never saw, ``assume_consent_when_unknown``) and no withdrawal since."""
        payload = json.dumps(ids)
        snapshot = {
            str(cid): bool(flag)
            for cid, flag in con.execute(
                "SELECT customer_id, personalised FROM profiles "
                "WHERE customer_id IN (SELECT value FROM json_each(?))",
                (payload,),
            )
        }
        withdrawn = {
            str(cid)
            for (cid,) in con.execute(
                "SELECT customer_id FROM consent WHERE consent_personalization = 0 "
                "AND customer_id IN (SELECT value FROM json_each(?))",
                (payload,),
            )
        }
        return {cid: snapshot.get(cid, self.assume_consent) and cid not in withdrawn for cid in ids}

    # ------------------------------------------------------------------ erasure
    def erase(self, customer_ids: Iterable[str]) -> dict[str, int]:
        """Delete every row of these people (canonical ids, and every source id that
        maps to one of them) from every table, in one transaction; rows deleted per
        table (every table that holds people, zeros included)."""
        given = sorted({str(i) for i in customer_ids})
        counts: dict[str, int] = {}
        with self._write_lock:
            con = self.con
            con.execute("BEGIN IMMEDIATE")
            try:
                people = set(given) | {
                    str(c)
                    for (c,) in con.execute(
                        "SELECT customer_id FROM identity "
                        "WHERE source_id IN (SELECT value FROM json_each(?))",
                        (json.dumps(given),),
                    )
                }
                people |= {
                    str(s)
                    for (s,) in con.execute(
                        "SELECT source_id FROM identity "
                        "WHERE customer_id IN (SELECT value FROM json_each(?))",
                        (json.dumps(sorted(people)),),
                    )
                }
                payload = json.dumps(sorted(people))
                for table in _tables(con):
                    columns = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
                    keys = [c for c in ("customer_id", "source_id") if c in columns]
                    if not keys:
                        continue
                    where = " OR ".join(
                        f"{c} IN (SELECT value FROM json_each(:people))" for c in keys
                    )
                    counts[table] = con.execute(
                        f"DELETE FROM {table} WHERE {where}", {"people": payload}
                    ).rowcount
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return counts


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


def _tables(con: sqlite3.Connection) -> list[str]:
    """The store's own tables."""
    return [
        str(name)
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
        if not str(name).startswith("sqlite_")
    ]


def _channel(row: Mapping[str, Any]) -> str:
    """The channel of a send (e-mail when the event names none)."""
    return _text(row.get("channel")) or "email"


def _store_sends(store: EventStore, since: pd.Timestamp, until: pd.Timestamp) -> pd.DataFrame:
    """The store's ``email_sent`` events in ``[since, until)``, with their channels."""
    columns = ["event_id", "ts", "customer_id", "anonymous_id", "campaign_id", "content_id"]
    if not store.files("events"):
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in [*columns, "channel"]})
    con = connect()
    try:
        store.register(con, "events", "events")
        return con.execute(
            f"SELECT {', '.join(columns)}, coalesce(channel, 'email') AS channel FROM events "
            "WHERE event_type = 'email_sent' AND ts >= ? AND ts < ?",
            [since.to_pydatetime(), until.to_pydatetime()],
        ).df()
    finally:
        con.close()


def _snapshot_consent(customers: pd.DataFrame, as_of: float) -> list[tuple[Any, ...]]:
    """The ``consent`` rows of a snapshot's customers: their state at ``as_of``.

    A snapshot written before its consent columns existed gives the records'
    consent, its update time, and no bounce or complaint."""

    def column(name: str, default: Any) -> pd.Series:
        if name in customers.columns:
            return customers[name]
        return pd.Series(default, index=customers.index)

    updated = column("consent_updated_ts", None)
    email = column("consent_email", False).fillna(False).astype(bool)
    profiling = column("consent_personalization", None)
    profiling = profiling.where(profiling.notna(), customers["personalised"]).astype(bool)
    rows = []
    for cid, mail, mail_ts, personal, personal_ts, unsubscribed, bounced, complained in zip(
        customers["customer_id"].astype(str),
        email,
        _epochs(column("consent_email_ts", None).where(lambda c: c.notna(), updated)),
        profiling,
        _epochs(column("consent_personalization_ts", None).where(lambda c: c.notna(), updated)),
        column("unsubscribed", False).fillna(False).astype(bool),
        column("hard_bounced", False).fillna(False).astype(bool),
        column("complained", False).fillna(False).astype(bool),
        strict=True,
    ):
        state = ConsentState(
            consent_email=bool(mail),
            consent_email_ts=mail_ts,
            consent_personalization=bool(personal),
            consent_personalization_ts=personal_ts,
            unsubscribed=bool(unsubscribed),
            email_granted_ts=mail_ts if mail else None,
            # Before as_of, at or after the last consent given: as_of stands for them.
            bounced_ts=as_of if bounced else None,
            complained_ts=as_of if complained else None,
        )
        rows.append(_consent_row(cid, state))
    return rows


def _epochs(values: pd.Series) -> list[float | None]:
    """Epoch seconds of timestamps (naive ones are UTC); ``None`` where missing."""
    stamps = pd.to_datetime(values, utc=True)
    seconds = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return [None if pd.isna(v) else float(v) for v in seconds]


def _consent_row(person: str, state: ConsentState) -> tuple[Any, ...]:
    """A ``consent`` row of ``state`` (the table's column order)."""
    return (
        person,
        None if state.consent_email is None else int(state.consent_email),
        state.consent_email_ts,
        None if state.consent_personalization is None else int(state.consent_personalization),
        state.consent_personalization_ts,
        int(state.unsubscribed),
        state.consent_email_ts if state.unsubscribed else None,
        state.email_granted_ts,
        int(state.hard_bounced),
        state.bounced_ts,
        int(state.complained),
        state.complained_ts,
    )


def _consent_state(row: Sequence[Any]) -> ConsentState:
    """The state of a ``consent`` row read as :data:`CONSENT_READ`."""
    email, email_ts, profiling, profiling_ts, unsubscribed, granted, bounced, complained = row
    return ConsentState(
        consent_email=None if email is None else bool(email),
        consent_email_ts=email_ts,
        consent_personalization=None if profiling is None else bool(profiling),
        consent_personalization_ts=profiling_ts,
        unsubscribed=bool(unsubscribed),
        email_granted_ts=granted,
        bounced_ts=bounced,
        complained_ts=complained,
    )


def _profile_consent(personalised: Any, consent_email: Any, sendable: Any) -> ConsentState:
    """The consent a profile row alone says (one loaded without a consent row): no
    times, and unsubscribed where it had e-mail consent but was not sendable."""
    return ConsentState(
        consent_email=bool(consent_email),
        consent_personalization=bool(personalised),
        unsubscribed=bool(consent_email) and not bool(sendable),
    )
