"""Ingest a file into the event store: read, map, validate, dedupe, quarantine, commit.

Every input row ends in exactly one of: stored (accepted), duplicate (its key is
already stored, or repeated in the file), quarantine (with every reason it
failed), or dropped because its customer or anonymous id belongs to an erased
person (given the privacy ledger: a late file must not bring them back, and the
quarantine would keep them). The whole file is one batch: committed together or
not at all.

The quarantine keeps each rejected row so that an operator can see what was wrong
and fix the source, but not its personal data: before it is written, a contact field
(``email``, ``phone``) and every other personal attribute (names, address, postcode,
date of birth; at the top level or inside ``attributes`` / ``properties``) is replaced
by its keyed hash, and any other text has e-mail- and phone-shaped values masked
(:func:`features.pii.masking.mask_raw_rows`). An operator looking for the rows of one
address hashes it as the suppression list does (``hasher.hash(key_text("email",
normalised address))``) and searches for that. Reasons never quote a personal value.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.data.adapters import adapter_for
from features.data.contracts import RowLimits, TableContract, contract_for
from features.data.readers import BadLine, detect_format, iter_chunks
from features.data.store import (
    INGESTED_AT,
    QUARANTINE_SCHEMA,
    ROW_HASH,
    Batch,
    EventStore,
    stored_schema,
)
from features.data.validation import DEFAULT_LIMITS, validate
from features.pii.hashing import ErasedIds
from features.pii.masking import HasherSource, home_hasher, mask_raw_rows
from features.pii.redaction import redact
from features.progress import Progress

logger = logging.getLogger(__name__)
# Columns naming a person, whose erased values a row must not bring back.
PERSON_COLUMNS = ("customer_id", "anonymous_id")


@dataclass
class IngestReport:
    """What one ingest did, row by row accounted for."""

    kind: str
    source: str
    path: str
    batch_id: str
    rows_read: int = 0
    records: int = 0  # rows after the adapter (one source row may give several)
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    already_quarantined: int = 0
    erased: int = 0  # rows of erased people, dropped
    quarantine_path: str = ""
    seconds: float = 0.0

    @property
    def nothing_new(self) -> bool:
        return self.accepted == 0 and self.quarantined == self.already_quarantined

    def summary(self) -> str:
        """Human-readable summary, the line the CLI prints."""
        lines = [
            f"{self.kind} from {self.path} ({self.source}): read {self.rows_read:,} rows "
            + (f"(mapped to {self.records:,} records) " if self.records != self.rows_read else "")
            + f"in {self.seconds:.1f} s",
            f"  accepted    {self.accepted:,}",
            f"  duplicates  {self.duplicates:,} (already stored or repeated in the file)",
            f"  quarantined {self.quarantined:,}"
            + (
                f" ({self.already_quarantined:,} already in quarantine)"
                if self.already_quarantined
                else ""
            ),
        ]
        if self.erased:
            lines.append(f"  erased      {self.erased:,} rows dropped (their person was erased)")
        if self.quarantined:
            lines.append(f"  quarantine: {self.quarantine_path}")
        if self.nothing_new:
            lines.append("  nothing new: every row was already stored or quarantined")
        return "\n".join(lines)


def ingest_file(
    path: Path,
    *,
    kind: str,
    store: EventStore,
    now: datetime,
    source: str = "contract",
    fmt: str | None = None,
    chunk_rows: int = 1_000_000,
    max_future_skew: timedelta = timedelta(days=1),
    limits: RowLimits = DEFAULT_LIMITS,
    progress: Progress | None = None,
    ledger: ErasedIds | None = None,
    hasher: HasherSource | None = None,
    phone_region: str = "US",
) -> IngestReport:
    """Ingest one file of ``kind`` into ``store`` as one atomic batch.

    Parameters
    ----------
    path : Path
        CSV / TSV / JSONL / Parquet file, optionally gzip-compressed.
    kind : str
        ``events``, ``customers``, ``catalog`` or ``content``.
    store : EventStore
        Destination.
    now : datetime
        Ingest time (UTC), stamped on rows and used for the future-timestamp check.
    source : str
        ``contract`` (the Tailor formats) or an adapter: ``taobao``, ``rees46``,
        ``movielens``, ``hillstrom``.
    fmt : str, optional
        Overrides the format implied by the suffix.
    chunk_rows : int
        Rows per chunk; bounds memory.
    max_future_skew : timedelta
        Events later than ``now`` + this are quarantined.
    limits : RowLimits
        Earliest event time, longest id, text and JSON a row may hold; a row
        beyond them is quarantined.
    progress : callable, optional
        Called with a message after each chunk.
    ledger : ErasedIds, optional
        The privacy ledger: rows (valid or not) whose ``customer_id`` or
        ``anonymous_id`` it lists as erased are dropped and counted
        (:attr:`IngestReport.erased`). ``None``: no check.
    hasher : KeyedHasher, optional
        The keyed hash that replaces personal data in quarantined rows
        (``KeyedHasher.from_settings(settings.privacy, settings.home)``); default:
        the ledger's, else the key of the store's home (``store.root.parent``), which
        is that hasher when the settings give no ``privacy.hash_key``. Read only when
        a quarantined row holds personal data.
    phone_region : str
        Region of phone numbers written without a country code (how a quarantined
        phone is normalised before it is hashed).
    """
    contract = contract_for(kind)
    masking = _hasher_source(store, hasher if hasher is not None else _ledger_hasher(ledger))
    adapter = adapter_for(source, kind)
    file_format = adapter.fmt if (fmt is None and adapter.fmt) else detect_format(path, fmt)
    started = time.perf_counter()
    source_name = str(path)

    with store.writer(now) as batch:
        report = IngestReport(
            kind=kind,
            source=source,
            path=source_name,
            batch_id=batch.batch_id,
            quarantine_path=str(store.root / "quarantine" / kind),
        )
        seen = _KeySet(store.existing_keys(kind)) if kind == "events" else None
        quarantined_hashes = _quarantined_hashes(store, kind)
        dimension_rows: list[pd.DataFrame] = []
        chunks = iter_chunks(
            path,
            fmt=file_format,
            chunk_rows=chunk_rows,
            column_names=(adapter.column_names or {}).get(kind),
            delimiter=(adapter.delimiter or {}).get(kind),
            encoding=(adapter.encoding or {}).get(kind, "utf8"),
            quoting=adapter.quoting,
        )
        for chunk in chunks:
            report.rows_read += len(chunk.frame) + len(chunk.bad_lines)
            # Rows are labelled by their line number, so a row an adapter expands into
            # several records gives each of them its line.
            raw = chunk.frame.set_axis(pd.Index(chunk.line_numbers), axis=0)
            mapped = adapter.to_contract(raw, kind) if len(raw) else raw
            lines = mapped.index.to_numpy(dtype=np.int64)
            if not np.isin(lines, chunk.line_numbers).all():
                raise AssertionError(f"adapter {source!r} lost the line numbers of its rows")
            report.records += len(mapped) + len(chunk.bad_lines)
            result = validate(
                mapped,
                lines,
                contract,
                now=now,
                max_future_skew=max_future_skew,
                limits=limits,
            )
            rejected = pd.concat(
                [result.rejected, _bad_lines_frame(chunk.bad_lines)], ignore_index=True
            )
            rows = result.valid
            if ledger is not None:
                rows, rejected = _drop_erased(rows, rejected, ledger, report)
            rejected = _masked(rejected, masking, phone_region)
            _write_quarantine(
                store, batch, kind, rejected, source_name, now, report, quarantined_hashes
            )
            if seen is not None:
                fresh = seen.add_new(rows[contract.key])
                report.duplicates += int((~fresh).sum())
                valid = rows[fresh]
                report.accepted += len(valid)
                write_events(store, batch, valid, now)
            else:
                dimension_rows.append(rows)
            if progress is not None:
                progress(
                    f"{kind}: {report.rows_read:,} rows read, {report.accepted:,} accepted, "
                    f"{report.quarantined:,} quarantined ({time.perf_counter() - started:.1f} s)"
                )
        if seen is None:
            _write_dimension(store, batch, contract, dimension_rows, now, report)
    report.seconds = time.perf_counter() - started
    logger.debug("ingest %s: %s", kind, report)
    return report


def _drop_erased(
    valid: pd.DataFrame, rejected: pd.DataFrame, ledger: ErasedIds, report: IngestReport
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``valid`` and ``rejected`` without the rows of erased people, counted in
    ``report.erased``. A rejected row is read from its raw JSON (a line that is not
    JSON, by its fields: any of them an erased id)."""
    columns = [c for c in PERSON_COLUMNS if c in valid.columns]
    named = [_raw_ids(raw) for raw in rejected["raw"]]
    candidates = {i for ids in named for i in ids}
    for column in columns:
        candidates.update(valid[column].dropna().astype(str).unique().tolist())
    erased = ledger.erased(candidates)
    if not erased:
        return valid, rejected
    drop = np.zeros(len(valid), dtype=bool)
    for column in columns:
        drop |= valid[column].astype("string").isin(erased).fillna(False).to_numpy(dtype=bool)
    drop_rejected = np.array([bool(erased.intersection(ids)) for ids in named], dtype=bool)
    report.erased += int(drop.sum() + drop_rejected.sum())
    return (
        valid[~drop].reset_index(drop=True),
        rejected[~drop_rejected].reset_index(drop=True),
    )


_FIELD_SEPARATORS = re.compile(r"[\s,;|\t\"']+")


def _raw_ids(raw: Any) -> set[str]:
    """The person ids a quarantined row names: its ``customer_id`` / ``anonymous_id``
    values (a repeated column's ``#n`` copies too) when it is a JSON object, else
    every field of the line (it could not be split into columns)."""
    text = str(raw)
    try:
        row = json.loads(text)
    except ValueError:
        row = None
    if isinstance(row, dict):
        return {
            str(value).strip()
            for key, value in row.items()
            if str(key).split("#")[0] in PERSON_COLUMNS and value is not None
        }
    return {field for field in _FIELD_SEPARATORS.split(text) if field}


class _KeySet:
    """Keys seen so far (stored plus this batch), for vectorised duplicate checks."""

    def __init__(self, existing: pa.Array) -> None:
        self._parts: list[pa.Array] = [existing]

    def add_new(self, keys: pd.Series) -> np.ndarray:
        """Mark keys not seen before (first occurrence only) and remember them."""
        values = pa.array(keys.to_numpy(dtype=object), type=pa.string())
        known = pa.concat_arrays(self._parts) if len(self._parts) > 1 else self._parts[0]
        stored = pc.is_in(values, value_set=known).to_numpy(zero_copy_only=False)
        fresh = ~stored & ~keys.duplicated().to_numpy()
        self._parts = [known, values.filter(pa.array(fresh))]
        return np.asarray(fresh, dtype=bool)


def write_events(store: EventStore, batch: Batch, valid: pd.DataFrame, now: datetime) -> None:
    if valid.empty:
        return
    frame = valid.assign(**{INGESTED_AT: pd.Timestamp(now).tz_convert("UTC")})
    schema = stored_schema(contract_for("events"))
    dates = frame["ts"].dt.strftime("%Y-%m-%d")
    for date, part in frame.groupby(dates, sort=True):
        part = part.sort_values("ts", kind="stable")
        table = pa.Table.from_pandas(part, schema=schema, preserve_index=False)
        store.write_part(batch, "events", table, subdir=f"date={date}")


def _write_dimension(
    store: EventStore,
    batch: Batch,
    contract: TableContract,
    frames: list[pd.DataFrame],
    now: datetime,
    report: IngestReport,
) -> None:
    rows = [f for f in frames if not f.empty]
    if not rows:
        return
    frame = pd.concat(rows, ignore_index=True)
    # Repeated keys in one file: the last row is the latest version.
    last = ~frame[contract.key].duplicated(keep="last")
    report.duplicates += int((~last).sum())
    frame = frame[last.to_numpy()].reset_index(drop=True)
    hashes = pd.util.hash_pandas_object(frame[contract.names], index=False).to_numpy()
    current = store.current_hashes(contract.kind)
    stored = current.reindex(frame[contract.key].astype("string")).to_numpy()
    unchanged = stored == hashes
    report.duplicates += int(unchanged.sum())
    changed = frame[~unchanged].assign(
        **{INGESTED_AT: pd.Timestamp(now).tz_convert("UTC"), ROW_HASH: hashes[~unchanged]}
    )
    report.accepted += len(changed)
    if len(changed):
        table = pa.Table.from_pandas(changed, schema=stored_schema(contract), preserve_index=False)
        store.write_part(batch, contract.kind, table)


def _bad_lines_frame(bad: list[BadLine]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "line_number": np.asarray([b.line_number for b in bad], dtype=np.int64),
            "reason": [b.reason for b in bad],
            "raw": [b.text for b in bad],
        }
    )


def _ledger_hasher(ledger: ErasedIds | None) -> HasherSource | None:
    return ledger.hasher if ledger is not None else None


def _hasher_source(store: EventStore, hasher: HasherSource | None) -> HasherSource:
    """``hasher``, or what reads the home's own key when a row first needs it."""
    if hasher is not None:
        return hasher
    return lambda: home_hasher(store.root.parent)


def _masked(rejected: pd.DataFrame, hasher: HasherSource, region: str) -> pd.DataFrame:
    """Rejected rows as the quarantine keeps them: personal data keyed-hashed, e-mail
    and phone-shaped text masked, in the rows and in the reasons."""
    if rejected.empty:
        return rejected
    raw = mask_raw_rows(rejected["raw"].tolist(), hasher, region=region)
    reasons = [redact(str(reason)) for reason in rejected["reason"]]
    return rejected.assign(raw=np.asarray(raw, dtype=object), reason=reasons)


def _quarantined_hashes(store: EventStore, kind: str) -> set[int]:
    files = store.files(f"quarantine/{kind}")
    if not files:
        return set()
    stored = store.read(f"quarantine/{kind}", current=False)
    return set(_raw_hashes(stored["raw"]).tolist())


def _raw_hashes(raw: pd.Series) -> np.ndarray:
    return pd.util.hash_pandas_object(raw.astype("string"), index=False).to_numpy()


def _write_quarantine(
    store: EventStore,
    batch: Batch,
    kind: str,
    rejected: pd.DataFrame,
    source: str,
    now: datetime,
    report: IngestReport,
    known: set[int],
) -> None:
    if rejected.empty:
        return
    report.quarantined += len(rejected)
    hashes = _raw_hashes(rejected["raw"])
    new = ~np.isin(hashes, np.fromiter(known, dtype=np.uint64, count=len(known)))
    report.already_quarantined += int((~new).sum())
    rows = rejected[new]
    known.update(hashes[new].tolist())
    if rows.empty:
        return
    frame = pd.DataFrame(
        {
            "batch_id": batch.batch_id,
            "quarantined_at": pd.Timestamp(now).tz_convert("UTC"),
            "source": source,
            "line_number": rows["line_number"].to_numpy(dtype=np.int64),
            "reason": rows["reason"].astype(str).to_numpy(),
            "raw": rows["raw"].to_numpy(dtype=object),
        }
    )
    table = pa.Table.from_pandas(frame, schema=QUARANTINE_SCHEMA, preserve_index=False)
    store.write_part(batch, f"quarantine/{kind}", table)
