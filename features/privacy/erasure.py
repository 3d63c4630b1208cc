"""Erasure at the data layer: every id of a person, and their rows out of every store.

:func:`linked_ids` finds the person: the id given, the person identity resolution
made of it in the latest feature snapshot (every customer and anonymous id mapped
to the same canonical id), and the anonymous ids their ``login`` / ``identify``
events link to them, in the event store and in the posted-event log. Their
contact values (normalised e-mails and phones) come with it, for the caller's
suppression and byte scans; they are never written anywhere.

:func:`erase_data` removes their rows from every store of the data layer:

- the event store: events (customer or anonymous id), every version of their
  customer records and the quarantined rows naming them, in one batch that
  replaces only the Parquet files holding them (new files and the manifest
  committed together, old files deleted after; readers see before or after);
- every feature snapshot folder: rows of each table keyed by one of their ids,
  their ids taken out of id lists (identity conflicts), the interaction matrix's
  rows with its row ids; each folder swapped whole, under the snapshot lock;
- the posted-event log (events and quarantine) and the decision log, deleted with
  SQLite's ``secure_delete`` and their write-ahead logs emptied;
- the identity overrides naming them.

Nothing else changes: other people's rows are rewritten byte for byte into the new
files. The caller (``tailor erase``, ``DELETE /customers/{id}``) marks the ids
erased in the privacy ledger first, so that ingest and ``POST /events`` drop rows
arriving meanwhile, then calls :func:`erase_data`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from features.data.contracts import contract_for
from features.data.decision_log import DecisionLog
from features.data.online_log import OnlineEventLog
from features.data.store import MANIFEST, Batch, EventStore, connect
from features.errors import InputError, NotFoundError
from features.identity.overrides import erase_overrides
from features.pii.contacts import key_text, normalised
from features.pii.hashing import KeyedHasher
from features.privacy.ledger import LEDGER_FILE, PrivacyLedger
from features.settings import TailorSettings
from features.snapshot.persistence import (
    latest_snapshot,
    rewrite_snapshot,
    snapshot_folders,
    snapshots_locked,
)

logger = logging.getLogger(__name__)

EVENTS_LOG = "events.db"
DECISIONS_LOG = "decisions.db"
# What erase_data counts, in this order.
STORES = (
    "events",
    "customers",
    "quarantine",
    "snapshots",
    "posted_events",
    "posted_quarantine",
    "decisions",
    "identity_overrides",
)
# Columns of a raw row (or a snapshot table) that name a person by an id.
PERSON_COLUMNS = ("customer_id", "anonymous_id")
# Identity mapping rows that are a person's ids (not hashed e-mails or phones).
PERSON_SOURCES = ("customer", "anonymous")
SNAPSHOT_ID_COLUMNS = (*PERSON_COLUMNS, "source_id", "canonical_id", "customer_a", "customer_b")
# Snapshot columns holding comma-joined ids (identity conflicts).
SNAPSHOT_LIST_COLUMNS = ("customer_ids", "canonical_ids")
_NAMING_COLUMNS = frozenset((*SNAPSHOT_ID_COLUMNS, *SNAPSHOT_LIST_COLUMNS))
# Conflicts whose key is a customer id (the smallest of the pair or person).
_KEYED_BY_CUSTOMER = ("match", "person")
# Fields of a line that could not be read as columns.
_FIELDS = re.compile(r"[,;|\t\"'\s]+")
_WIDE_FIELDS = re.compile(r"[,;|\t\"']+")


@dataclass(frozen=True)
class LinkedPerson:
    """Every id of one person, and their contact values.

    Attributes
    ----------
    ids : frozenset of str
        The id given, the canonical id, every customer and anonymous id identity
        resolution maps to it, and the anonymous ids their logins link to them.
    emails, phones : frozenset of str
        Normalised e-mails (trimmed, lower-cased; also in Gmail form when identity
        resolution uses it) and E.164 phones of their customer records, every
        stored version: for suppression and byte scans, never persisted (and kept
        out of ``repr``, so no log line shows them).
    """

    ids: frozenset[str]
    emails: frozenset[str] = field(default=frozenset(), repr=False)
    phones: frozenset[str] = field(default=frozenset(), repr=False)


def erasure_ledger(settings: TailorSettings) -> PrivacyLedger | None:
    """The privacy ledger, for ingest to drop erased people's rows; ``None`` when the
    home has none (nobody was ever erased: nothing to check, and nothing created)."""
    if not (settings.privacy_dir / LEDGER_FILE).exists():
        return None
    return PrivacyLedger.for_settings(settings)


# --------------------------------------------------------------------------- the person
def linked_ids(settings: TailorSettings, customer_id: str) -> LinkedPerson:
    """The person ``customer_id`` (a customer or an anonymous id) belongs to.

    Raises
    ------
    InputError
        The id is empty.
    NotFoundError
        No store under the home knows the id (events, customers, snapshots,
        posted events, decisions, quarantine).
    """
    given = str(customer_id).strip()
    if not given:
        raise InputError("customer_id", customer_id, "is empty")
    store = EventStore(settings.store_dir, lock_timeout=settings.lock_timeout)
    mapped = _snapshot_person(settings.features_dir, given)
    ids = {given, *mapped}
    con = connect()
    try:
        log = _open_events_log(settings)
        try:
            posted = log.anonymous_ids_of(ids) if log is not None else set()
            pairs = _logins(con, store.files("events"), ids, posted)
            linked = posted | {anonymous for anonymous, customer in pairs if customer in ids}
            if log is not None:
                pairs |= log.customers_of(linked)
        finally:
            if log is not None:
                log.close()
        # A device someone else also logged in on is not this person's alone: the
        # other customer's events on it, and its anonymous browsing, stay.
        shared = {anonymous for anonymous, customer in pairs if customer not in ids}
        ids = (ids | linked) - (shared - {given})
        contacts = _contact_values(con, store.files("customers"), ids)
        known = bool(mapped) or len(ids) > 1 or not contacts.empty
        if not known:
            known = _anywhere(con, settings, store, given)
    finally:
        con.close()
    if not known:
        raise NotFoundError(
            f"customer_id={given!r}: no store under {settings.home} knows this id "
            "(events, customers, feature snapshots, posted events, decisions, quarantine)"
        )
    gmail = settings.features.identity.gmail_normalisation
    emails = _values(normalised("email", contacts["email"]))
    if gmail:
        emails |= _values(normalised("email", contacts["email"], gmail=True))
    phones = _values(normalised("phone", contacts["phone"], region=settings.phone_region))
    return LinkedPerson(frozenset(ids), frozenset(emails), frozenset(phones))


def _snapshot_person(features_dir: Path, given: str) -> set[str]:
    """Canonical and source ids (customer, anonymous) of ``given``'s person in the
    latest snapshot; empty when no snapshot knows it."""
    try:
        folder = latest_snapshot(features_dir)
    except NotFoundError:
        return set()
    path = folder / "identity.parquet"
    if not path.exists():
        return set()
    mapping = pd.read_parquet(path, columns=["source_type", "source_id", "canonical_id"])
    people = mapping[mapping["source_type"].isin(PERSON_SOURCES)]
    source = people["source_id"].astype(str)
    canonical = people["canonical_id"].astype(str)
    found = set(canonical[(source == given) | (canonical == given)])
    return found | set(source[canonical.isin(found)])


def _logins(
    con: duckdb.DuckDBPyConnection,
    files: list[Path],
    ids: Collection[str],
    anonymous: Collection[str],
) -> set[tuple[str, str]]:
    """``(anonymous id, customer id)`` of every stored ``login`` / ``identify`` event
    on a device that one of ``ids`` logged in on, or one of ``anonymous``: one scan of
    the events, the links of the person and of whoever shares their devices."""
    if not files:
        return set()
    rows = con.execute(
        "WITH logins AS MATERIALIZED (SELECT DISTINCT anonymous_id, customer_id "
        "FROM read_parquet(?, union_by_name = true) WHERE event_type IN ('login', 'identify') "
        "AND anonymous_id IS NOT NULL AND customer_id IS NOT NULL) "
        "SELECT anonymous_id, customer_id FROM logins WHERE list_contains(?, anonymous_id) "
        "OR anonymous_id IN (SELECT anonymous_id FROM logins WHERE list_contains(?, customer_id))",
        [[str(f) for f in files], sorted(anonymous), sorted(ids)],
    ).fetchall()
    return {(str(a), str(c)) for a, c in rows}


def _contact_values(
    con: duckdb.DuckDBPyConnection, files: list[Path], ids: Collection[str]
) -> pd.DataFrame:
    """E-mail and phone of every stored version of the customer records ``ids``."""
    if not files:
        return pd.DataFrame({"email": pd.Series(dtype=object), "phone": pd.Series(dtype=object)})
    return con.execute(
        "SELECT email, phone FROM read_parquet(?, union_by_name = true) "
        "WHERE list_contains(?, customer_id)",
        [[str(f) for f in files], sorted(ids)],
    ).df()


def _values(series: pd.Series) -> set[str]:
    return {str(v) for v in series.dropna().tolist() if str(v)}


def _anywhere(
    con: duckdb.DuckDBPyConnection, settings: TailorSettings, store: EventStore, given: str
) -> bool:
    """Whether any store holds ``given`` (an id neither the snapshot, the customer
    records nor a login links to anything)."""
    files = store.files("events")
    if files:
        found = con.execute(
            "SELECT count(*) FROM read_parquet(?, union_by_name = true) "
            "WHERE customer_id = ? OR anonymous_id = ?",
            [[str(f) for f in files], given, given],
        ).fetchone()
        if found and found[0]:
            return True
    log = _open_events_log(settings)
    if log is not None:
        try:
            raws = log.quarantined()["raw"].tolist()
            if log.count_of([given]) or _id_mentions({given})(raws).any():
                return True
        finally:
            log.close()
    decisions = settings.online_dir / DECISIONS_LOG
    if decisions.exists() and len(DecisionLog(decisions).read(customer_id=given)):
        return True
    mentions = _id_mentions({given})
    for table in _quarantine_tables(store):
        for path in store.files(table):
            if mentions(pq.ParquetFile(path).read(columns=["raw"]).column("raw").to_pylist()).any():
                return True
    return False


# --------------------------------------------------------------------------- erasure
def erase_data(settings: TailorSettings, person: LinkedPerson, *, now: datetime) -> dict[str, int]:
    """Remove every row of ``person`` from the data layer's stores.

    Parameters
    ----------
    person : LinkedPerson
        From :func:`linked_ids`.
    now : datetime
        When (UTC): the time of the event store batch that rewrites their files.

    Returns
    -------
    dict of str to int
        Rows removed per store (:data:`STORES`): events, customers (record
        versions), quarantine (store), snapshots (table rows removed or changed,
        every folder), posted_events, posted_quarantine, decisions,
        identity_overrides (overrides changed or dropped).

    Raises
    ------
    JobFailed
        Another writer held the store or the snapshot folder past ``lock_timeout``
        (:class:`~features.errors.WriteFailed`: a file could not be written or
        deleted; the stores are then as they were or, for files already swapped,
        without the person).
    """
    if now.tzinfo is None:
        raise InputError("now", now, "must be timezone-aware (UTC)")
    ids = frozenset(str(i) for i in person.ids)
    if not ids:
        raise InputError("person.ids", "(none)", "an erasure needs at least one id")
    hasher = KeyedHasher.from_settings(settings.privacy, settings.home)
    mentions = _Mentions(person, hasher, region=settings.phone_region)
    counts = dict.fromkeys(STORES, 0)
    counts |= _erase_store(
        EventStore(settings.store_dir, lock_timeout=settings.lock_timeout), ids, mentions, now
    )
    counts["snapshots"] = _erase_snapshots(settings.features_dir, ids, settings.lock_timeout)
    log = _open_events_log(settings)
    if log is not None:
        try:
            quarantined = log.quarantined()
            seqs = quarantined["seq"][mentions(quarantined["raw"].tolist())].tolist()
            counts["posted_events"], counts["posted_quarantine"] = log.erase(ids, seqs)
        finally:
            log.close()
    decisions = settings.online_dir / DECISIONS_LOG
    if decisions.exists():
        counts["decisions"] = DecisionLog(decisions).erase(ids)
    counts["identity_overrides"] = erase_overrides(settings.store_dir, ids)
    logger.info("erased %d ids from the data layer: %s", len(ids), counts)
    return counts


def _open_events_log(settings: TailorSettings) -> OnlineEventLog | None:
    path = settings.online_dir / EVENTS_LOG
    return OnlineEventLog(path) if path.exists() else None


def _quarantine_tables(store: EventStore) -> list[str]:
    return sorted(t for t in store.manifest() if t.startswith("quarantine/"))


def _erase_store(
    store: EventStore, ids: frozenset[str], mentions: _Mentions, now: datetime
) -> dict[str, int]:
    """Events, customer record versions and quarantined rows of ``ids``, out of the
    event store in one batch."""
    counts = {"events": 0, "customers": 0, "quarantine": 0}
    if not (store.root / MANIFEST).exists():
        return counts
    with store.writer(now) as batch:
        con = connect()
        try:
            counts["events"] = _rewrite_naming(store, batch, con, "events", ids)
            counts["customers"] = _rewrite_naming(store, batch, con, "customers", ids)
        finally:
            con.close()
        for table in _quarantine_tables(store):
            for path in store.files(table):
                data = pq.ParquetFile(path).read()
                hit = mentions(data.column("raw").to_pylist())
                if hit.any():
                    keep = data.filter(pa.array(~hit))
                    store.replace_part(batch, table, _relative(store, path), keep)
                    counts["quarantine"] += int(hit.sum())
    return counts


def _rewrite_naming(
    store: EventStore,
    batch: Batch,
    con: duckdb.DuckDBPyConnection,
    table: str,
    ids: frozenset[str],
) -> int:
    """Rewrite the files of ``table`` holding a row whose customer or anonymous id is
    one of ``ids`` (found in one DuckDB pass) without those rows; rows removed."""
    files = store.files(table)
    if not files:
        return 0
    columns = [c for c in PERSON_COLUMNS if c in contract_for(table).names]
    where = " OR ".join(f"list_contains($ids, {c})" for c in columns)
    hits = con.execute(
        f"SELECT DISTINCT filename FROM read_parquet($files, union_by_name = true, "
        f"filename = true) WHERE {where}",
        {"files": [str(f) for f in files], "ids": sorted(ids)},
    ).fetchall()
    value_set = pa.array(sorted(ids), type=pa.string())
    removed = 0
    for (name,) in hits:
        path = Path(name)
        data = pq.ParquetFile(path).read()
        hit = np.zeros(data.num_rows, dtype=bool)
        for column in columns:
            if column in data.column_names:
                found = pc.is_in(data.column(column).cast(pa.string()), value_set=value_set)
                hit |= np.asarray(pc.fill_null(found, False), dtype=bool)
        store.replace_part(batch, table, _relative(store, path), data.filter(pa.array(~hit)))
        removed += int(hit.sum())
    return removed


def _relative(store: EventStore, path: Path) -> str:
    return str(Path(path).relative_to(store.root))


# --------------------------------------------------------------------------- raw rows
class _Mentions:
    """Which raw rows (quarantined: JSON objects, or lines that could not be split)
    name the person: an id as the value of ``customer_id`` / ``anonymous_id``, or an
    ``email`` / ``phone`` equal to theirs, in the clear or as a keyed hash (under
    the current or a retired key)."""

    def __init__(self, person: LinkedPerson, hasher: KeyedHasher, *, region: str) -> None:
        self.ids = frozenset(person.ids)
        self.emails = frozenset(person.emails)
        self.phones = frozenset(person.phones)
        self.region = region
        self.hashes = frozenset(
            h
            for kind, values in (("email", self.emails), ("phone", self.phones))
            for value in values
            for h in hasher.candidates(key_text(kind, value))
        )
        self.phone_digits = frozenset(_phone_digits(self.phones))

    def __call__(self, raws: Sequence[Any]) -> np.ndarray:
        hit = np.zeros(len(raws), dtype=bool)
        emails: list[tuple[int, str]] = []
        phones: list[tuple[int, str]] = []
        for n, raw in enumerate(raws):
            if raw is None:
                continue
            text = str(raw)
            try:
                row = json.loads(text)
            except ValueError:
                row = None
            if isinstance(row, dict):
                hit[n] = self._row(n, row, emails, phones)
            else:
                hit[n] = self._line(text)
        for kind, pairs, wanted in (("email", emails, self.emails), ("phone", phones, self.phones)):
            if pairs and wanted:
                values = pd.Series([v for _, v in pairs], dtype=object)
                normal = normalised(kind, values, region=self.region)
                rows = np.asarray([n for n, _ in pairs], dtype=np.int64)
                hit[rows[normal.isin(wanted).fillna(False).to_numpy(dtype=bool)]] = True
        return hit

    def _row(
        self,
        n: int,
        row: dict[str, Any],
        emails: list[tuple[int, str]],
        phones: list[tuple[int, str]],
    ) -> bool:
        for key, value in row.items():
            if value is None:
                continue
            name = str(key).split("#")[0]  # a repeated column's copies: name#position
            text = str(value).strip()
            if name in PERSON_COLUMNS and text in self.ids:
                return True
            if name in ("email", "phone"):
                if text in self.hashes:
                    return True
                (emails if name == "email" else phones).append((n, text))
        return False

    def _line(self, text: str) -> bool:
        fields = {f for f in _FIELDS.split(text) if f}
        if fields & self.ids or fields & self.hashes:
            return True
        if any(f.lower() in self.emails for f in fields):
            return True
        # A phone may hold spaces and brackets: compare the digits of wider fields.
        wide = (re.sub(r"\D", "", f) for f in _WIDE_FIELDS.split(text))
        return any(d in self.phone_digits for d in wide if len(d) >= 7)


def _phone_digits(phones: Iterable[str]) -> set[str]:
    """Each E.164 phone's digits, with and without its country code."""
    out: set[str] = set()
    for phone in phones:
        out.add(phone.lstrip("+"))
        try:
            out.add(str(phonenumbers.parse(phone, None).national_number))
        except phonenumbers.NumberParseException:
            continue
    return out


def _id_mentions(ids: set[str]) -> _Mentions:
    """A matcher of raw rows naming one of ``ids`` (no contact values)."""
    return _Mentions(LinkedPerson(frozenset(ids)), KeyedHasher("none", b"unused"), region="US")


# --------------------------------------------------------------------------- snapshots
def _erase_snapshots(root: Path, ids: frozenset[str], lock_timeout: float | None) -> int:
    """Every snapshot folder under ``root`` without ``ids``; table rows removed or
    changed, all folders together."""
    if not Path(root).is_dir():
        return 0
    changed = 0
    with snapshots_locked(root, lock_timeout=lock_timeout):
        for folder in snapshot_folders(root):
            files, count = _scrubbed_snapshot(folder, ids)
            if files:
                rewrite_snapshot(folder, files)
                changed += count
    return changed


Writer = Callable[[Path], None]


def _scrubbed_snapshot(folder: Path, ids: frozenset[str]) -> tuple[dict[str, Writer | None], int]:
    """The files of ``folder`` to rewrite without ``ids`` (by name: a function that
    writes the new file), and how many rows that removes or changes."""
    files: dict[str, Writer | None] = {}
    tables: dict[str, pd.DataFrame] = {}
    changed = 0
    for path in sorted(folder.glob("*.parquet")):
        if path.name == "users.parquet":
            continue  # with the matrix below
        if not _NAMING_COLUMNS.intersection(pq.read_schema(path).names):
            continue  # no column names a person (items): not read
        frame = pd.read_parquet(path)
        scrubbed, count = scrub_frame(frame, ids)
        if count:
            tables[path.stem] = scrubbed
            files[path.name] = _parquet_writer(scrubbed)
            changed += count
    users_path, matrix_path = folder / "users.parquet", folder / "interactions.npz"
    nnz: int | None = None
    if users_path.exists():
        users = pd.read_parquet(users_path)
        gone = users["customer_id"].astype(str).isin(ids).to_numpy(dtype=bool)
        if gone.any():
            users = users[~gone].reset_index(drop=True)
            files[users_path.name] = _parquet_writer(users)
            if matrix_path.exists():
                matrix = sp.load_npz(matrix_path).tocsr()[~gone]
                nnz = int(matrix.nnz)
                files[matrix_path.name] = _matrix_writer(matrix)
            changed += int(gone.sum())
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        updated = _scrub_json(manifest, ids)
        if files:
            _recount(updated, tables, nnz)
        if updated != manifest:
            files[manifest_path.name] = _text_writer(json.dumps(updated, indent=2, default=str))
    return files, changed


def scrub_frame(frame: pd.DataFrame, ids: Collection[str]) -> tuple[pd.DataFrame, int]:
    """``frame`` without the rows keyed by one of ``ids`` (any of
    :data:`SNAPSHOT_ID_COLUMNS`) and without those ids in its id lists
    (:data:`SNAPSHOT_LIST_COLUMNS`; a list left with fewer than two ids goes, a
    conflict keyed by an erased id is re-keyed by the smallest id left or goes);
    with the number of rows removed or changed.

    Parameters
    ----------
    frame : pandas.DataFrame
        A snapshot table.
    ids : collection of str
        The person's ids.
    """
    wanted = {str(i) for i in ids}
    drop = np.zeros(len(frame), dtype=bool)
    for column in SNAPSHOT_ID_COLUMNS:
        if column in frame.columns:
            named = frame[column].astype("string").isin(wanted)
            drop |= named.fillna(False).to_numpy(dtype=bool)
    lists = [c for c in SNAPSHOT_LIST_COLUMNS if c in frame.columns]
    if not lists:
        return (frame[~drop].reset_index(drop=True), int(drop.sum())) if drop.any() else (frame, 0)
    values: dict[str, list[Any]] = {c: frame[c].tolist() for c in lists}
    keys = frame["key"].tolist() if "key" in frame.columns else None
    kinds = frame["kind"].tolist() if "kind" in frame.columns else None
    counts = frame["n_customers"].tolist() if "n_customers" in frame.columns else None
    edited = np.zeros(len(frame), dtype=bool)
    for i in range(len(frame)):
        if drop[i]:
            continue
        left: list[str] = []
        for column in lists:
            text = values[column][i]
            if not isinstance(text, str):
                continue
            members = text.split(",")
            left = [m for m in members if m not in wanted]
            if len(left) < len(members):
                values[column][i] = ",".join(left)
                edited[i] = True
                if counts is not None:
                    counts[i] = len(left)
        if edited[i] and len(left) < 2:
            drop[i] = True  # no conflict left between the others
        elif keys is not None and str(keys[i]) in wanted:
            if kinds is not None and kinds[i] in _KEYED_BY_CUSTOMER and len(left) >= 2:
                keys[i] = min(left)
                edited[i] = True
            else:
                drop[i] = True
    changed = int(drop.sum() + (edited & ~drop).sum())
    if not changed:
        return frame, 0
    out = frame.copy()
    updates: list[tuple[str, list[Any] | None]] = [
        *values.items(),
        ("key", keys),
        ("n_customers", counts),
    ]
    for name, new in updates:
        if new is not None:
            out[name] = pd.Series(new, index=out.index, dtype=frame[name].dtype)
    return out[~drop].reset_index(drop=True), changed


def _scrub_json(value: Any, ids: frozenset[str]) -> Any:
    """``value`` (decoded JSON) without ``ids``: as list items, as keys, as values."""
    if isinstance(value, dict):
        return {k: _scrub_json(v, ids) for k, v in value.items() if k not in ids}
    if isinstance(value, list):
        return [_scrub_json(v, ids) for v in value if not (isinstance(v, str) and v in ids)]
    if isinstance(value, str) and value in ids:
        return None
    return value


def _recount(manifest: dict[str, Any], tables: dict[str, pd.DataFrame], nnz: int | None) -> None:
    """The manifest's counts of the rewritten tables, as they now are."""
    rows = manifest.get("rows")
    if isinstance(rows, dict):
        for name, frame in tables.items():
            if name in rows:
                rows[name] = len(frame)
        people = tables.get("customers")
        if people is not None and "personalised" in people.columns:
            rows["personalised_customers"] = int(people["personalised"].sum())
        if nnz is not None:
            rows["interactions_nnz"] = nnz
    for name, column, key in (
        ("segments", "segment", "segment_sizes"),
        ("triggers", "trigger", "trigger_counts"),
    ):
        table = tables.get(name)
        if table is not None and column in table.columns:
            manifest[key] = {str(k): int(v) for k, v in table[column].value_counts().items()}


def _parquet_writer(frame: pd.DataFrame) -> Writer:
    def write(path: Path) -> None:
        frame.to_parquet(path, index=False)

    return write


def _matrix_writer(matrix: sp.csr_matrix) -> Writer:
    def write(path: Path) -> None:
        sp.save_npz(path, matrix, compressed=False)

    return write


def _text_writer(text: str) -> Writer:
    def write(path: Path) -> None:
        path.write_text(text)

    return write
