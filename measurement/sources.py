"""What the reports read from a home: the decision log and the outcome events.

The decisions come from the service's decision log (``online/decisions.db``); the
outcomes from the event store and from the events posted to the service and not yet
compacted into it (``online/events.db``), deduplicated by event id. Only what can be
an outcome of a logged decision is read: opens, clicks, purchases and sends from the
first decision on.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from features.data.contracts import EVENTS
from features.data.decision_log import DecisionLog
from features.data.online_log import OnlineEventLog
from features.data.store import EventStore
from features.errors import InputError

OUTCOME_EVENTS = ("email_sent", "email_open", "email_click", "purchase")


def read_decisions(
    online_dir: Path, *, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """The decision log's rows in ``[since, until)`` (all when not given)."""
    path = online_dir / "decisions.db"
    if not path.is_file():
        raise InputError(
            "decision_log",
            str(path),
            "no decision log: the service writes it when it answers (run tailor serve)",
        )
    return DecisionLog(path).read(
        since=None if since is None else since.timestamp(),
        until=None if until is None else until.timestamp(),
    )


def read_outcome_events(store_dir: Path, online_dir: Path, *, since: datetime) -> pd.DataFrame:
    """Sends, opens, clicks and purchases from ``since`` on: stored and posted."""
    parts = []
    store = EventStore(store_dir)
    if store.files("events"):
        con = duckdb.connect()
        relation = store.relation(con, "events")
        types = ", ".join(f"'{t}'" for t in OUTCOME_EVENTS)
        try:
            parts.append(relation.filter(f"event_type IN ({types})").df())
        finally:
            con.close()
    log_path = online_dir / "events.db"
    if log_path.is_file():
        log = OnlineEventLog(log_path)
        try:
            pending, _ = log.pending()
        finally:
            log.close()
        parts.append(pending[pending["event_type"].isin(OUTCOME_EVENTS)])
    parts = [p for p in parts if not p.empty]
    if not parts:  # no outcome yet: an empty table in the contract's columns
        return pd.DataFrame(columns=EVENTS.names)
    events = pd.concat(parts, ignore_index=True).drop_duplicates("event_id")
    events["ts"] = pd.to_datetime(events["ts"], utc=True)
    return events[events["ts"] >= pd.Timestamp(since)].reset_index(drop=True)


def as_people(events: pd.DataFrame, features_dir: Path) -> pd.DataFrame:
    """``events`` with each ``customer_id`` replaced by its person's id, as the latest
    snapshot's identity resolution links them (the decision log holds the person the
    service resolved; an outcome names the record it came from). Unchanged when there
    is no snapshot yet."""
    from features.snapshot import snapshot_folders
    from features.snapshot.persistence import load_identity

    folders = snapshot_folders(features_dir)
    if not folders or events.empty:
        return events
    mapping = load_identity(folders[-1]).mapping
    records = mapping[mapping["source_type"] == "customer"]
    person = dict(zip(records["source_id"], records["canonical_id"], strict=True))
    ids = events["customer_id"]
    return events.assign(customer_id=ids.map(person).fillna(ids))
