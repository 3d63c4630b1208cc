"""The embedded event store: Parquet files under ``TAILOR_HOME/store`` and one manifest.

Layout::

    store/
      _manifest.json                      committed files of every table
      events/date=YYYY-MM-DD/part-<batch>.parquet
      customers/part-<batch>.parquet      (also catalog/, content/: versioned rows)
      quarantine/<kind>/part-<batch>.parquet
      .lock

A batch writes its part files first (invisible: no reader looks past the
manifest), fsyncs them and the folders that name them, then replaces the manifest
atomically (write, fsync, rename, fsync the folder). An interrupted batch
therefore leaves the store exactly as it was; its orphan files are removed by the
next writer. A batch may also replace committed files (erasure, retention:
:meth:`EventStore.replace_part`): the rewritten file and the manifest without the
old one are committed together, then the old file is deleted. A reader that had
read the old manifest and finds a file gone reads again (:meth:`EventStore.read`).
One writer at a time: an exclusive file lock on ``.lock``, released by the OS if
its holder dies; a second writer waits for it (saying so) up to its
``lock_timeout``. A write the file system refuses (read-only, full) fails the
batch with :class:`~features.errors.WriteFailed`, its files removed.

Dimension tables (customers, catalog, content) keep every version of a row, with
``_ingested_at``; their current state is the latest version per key, and the
history is what lets a later job see, e.g., an item come back into stock between
two catalog ingests.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.data.contracts import CONTRACTS, TableContract, contract_for
from features.data.locks import exclusive_lock
from features.errors import WriteFailed

logger = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
# A quarantined row: ``raw`` is the row as given with its personal data masked (keyed
# hashes, see features.data.ingest); ``reason`` never quotes a personal value.
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("quarantined_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("line_number", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.string()),
    ]
)
# Bookkeeping columns stored beside the contract columns.
INGESTED_AT = "_ingested_at"
ROW_HASH = "_row_hash"


def stored_schema(contract: TableContract) -> pa.Schema:
    """Arrow schema of a stored table: the contract plus bookkeeping columns."""
    schema = contract.arrow_schema().append(pa.field(INGESTED_AT, pa.timestamp("us", tz="UTC")))
    if contract.kind != "events":
        schema = schema.append(pa.field(ROW_HASH, pa.uint64()))
    return schema


@dataclass
class Batch:
    """Files written by one ingest, committed together or not at all."""

    batch_id: str
    started_at: datetime
    files: dict[str, list[str]] = field(default_factory=dict)
    # Committed files this batch replaces: old path -> its rewrite (None: dropped).
    replaced: dict[str, dict[str, str | None]] = field(default_factory=dict)

    def add(self, table: str, relpath: str) -> None:
        self.files.setdefault(table, []).append(relpath)


class EventStore:
    """Parquet tables under one root, committed through a manifest.

    Parameters
    ----------
    root : Path
        The store folder (``TAILOR_HOME/store``); created on first write.
    lock_timeout : float, optional
        Seconds a writer waits for another to finish (``None``: as long as it takes).
    """

    def __init__(self, root: Path, *, lock_timeout: float | None = None) -> None:
        self.root = Path(root)
        self.lock_timeout = lock_timeout

    # ---------------------------------------------------------------- reading
    def manifest(self) -> dict[str, list[str]]:
        """Committed files per table (paths relative to the root)."""
        path = self.root / MANIFEST
        if not path.exists():
            return {}
        data = json.loads(path.read_text())
        tables: dict[str, list[str]] = data["tables"]
        return tables

    def files(self, table: str) -> list[Path]:
        """Committed Parquet files of ``table`` (``events``, ``quarantine/events``, ...)."""
        return [self.root / rel for rel in self.manifest().get(table, [])]

    def relation(self, con: duckdb.DuckDBPyConnection, table: str) -> duckdb.DuckDBPyRelation:
        """A DuckDB relation over the committed files of ``table`` (empty if none)."""
        files = self.files(table)
        if files:
            return con.read_parquet([str(f) for f in files], union_by_name=True)
        schema = _empty_schema(table)
        return con.from_arrow(schema.empty_table())

    def read(self, table: str, *, current: bool = True) -> pd.DataFrame:
        """Read a whole table into pandas.

        Parameters
        ----------
        table : str
            ``events``, ``customers``, ``catalog``, ``content`` or ``quarantine/<kind>``.
        current : bool
            For dimension tables: only the latest version of each key.
        """
        for attempt in range(_READ_ATTEMPTS):
            committed = self.manifest().get(table, [])
            try:
                return self._read(table, [self.root / rel for rel in committed], current)
            except (OSError, duckdb.Error):
                # A writer replaced files since the manifest was read (erasure,
                # retention): the new manifest names what to read instead.
                if attempt + 1 == _READ_ATTEMPTS or self.manifest().get(table) == committed:
                    raise
        raise AssertionError("unreachable")

    def _read(self, table: str, files: list[Path], current: bool) -> pd.DataFrame:
        con = connect()
        try:
            if current and files and table in CONTRACTS and table != "events":
                key = CONTRACTS[table].key
                # Part files are named by batch id, which sorts in commit order.
                return con.execute(
                    f"SELECT * EXCLUDE (filename) FROM read_parquet(?, union_by_name = true, "
                    f"filename = true) QUALIFY row_number() OVER "
                    f"(PARTITION BY {key} ORDER BY filename DESC) = 1 ORDER BY {key}",
                    [[str(f) for f in files]],
                ).df()
            if files:
                return con.read_parquet([str(f) for f in files], union_by_name=True).df()
            return con.from_arrow(_empty_schema(table).empty_table()).df()
        finally:
            con.close()

    def register(self, con: duckdb.DuckDBPyConnection, table: str, name: str) -> None:
        """Create (or replace) a view ``name`` in ``con`` over the committed ``table``."""
        self.relation(con, table).create_view(name, replace=True)

    def count(self, table: str) -> int:
        files = self.files(table)
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)

    def existing_keys(self, kind: str) -> pa.Array:
        """Stored keys of ``kind`` (event ids, or customer / item / content ids)."""
        contract = contract_for(kind)
        files = self.files(kind)
        if not files:
            return pa.array([], type=pa.string())
        table = pq.ParquetDataset([str(f) for f in files]).read(columns=[contract.key])
        return table.column(contract.key).combine_chunks()

    def current_hashes(self, kind: str) -> pd.Series:
        """Row hash of the current version of each key of a dimension table."""
        current = self.read(kind, current=True)
        if current.empty:
            return pd.Series([], dtype="uint64")
        return pd.Series(
            current[ROW_HASH].to_numpy(), index=current[contract_for(kind).key].astype("string")
        )

    # ---------------------------------------------------------------- writing
    @contextmanager
    def writer(self, now: datetime | None = None) -> Iterator[Batch]:
        """Hold the write lock, collect one batch, commit it atomically on success.

        Files added to the batch become visible only when the block exits
        without an exception; on an exception they are removed.

        Raises
        ------
        JobFailed
            Another writer held the lock past ``lock_timeout``.
        WriteFailed
            The store's folder cannot be written (read-only, full, ...).
        """
        with exclusive_lock(
            self.root, what=f"the event store {self.root}", timeout=self.lock_timeout
        ):
            try:
                self._remove_orphans()
            except OSError as error:
                raise WriteFailed(self.root, error) from error
            # Batch ids sort in commit order: a sequence number comes first.
            sequence = len(self._history()) + 1
            batch = Batch(
                batch_id=f"{sequence:09d}-{uuid.uuid4().hex[:8]}",
                started_at=now or datetime.now(UTC),
            )
            try:
                yield batch
            except BaseException:
                self._remove_files(batch)
                raise
            self._commit(batch)

    def write_part(self, batch: Batch, table: str, data: pa.Table, subdir: str = "") -> Path:
        """Write one Parquet part of ``table`` for ``batch`` (not yet visible).

        Raises :class:`~features.errors.WriteFailed` if the file system refuses it.
        """
        folder = self.root / table / subdir if subdir else self.root / table
        n = len(batch.files.get(table, []))
        path = folder / f"part-{batch.batch_id}-{n:05d}.parquet"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(data, path, compression="zstd")
            _fsync(path)
        except OSError as error:
            path.unlink(missing_ok=True)
            raise WriteFailed(path, error) from error
        batch.add(table, str(path.relative_to(self.root)))
        return path

    def replace_part(
        self, batch: Batch, table: str, relpath: str, keep: pa.Table | None
    ) -> Path | None:
        """Replace the committed file ``relpath`` of ``table`` by ``keep`` (its rows
        that stay), in ``batch``: both take effect when the batch commits, and the
        old file is deleted then (erasure, retention).

        The rewrite keeps the old file's name with ``-r<batch id>`` added, so it
        sorts where the old file did: a dimension table's current version of a key
        is its row in the last file by name, which a rewrite must not change.

        Parameters
        ----------
        keep : pyarrow.Table, optional
            The rows to keep; ``None`` or no rows: the file is dropped.

        Returns
        -------
        Path or None
            The new file (not yet visible), or ``None`` when the file is dropped.

        Raises
        ------
        ValueError
            ``relpath`` is not a committed file of ``table``, or already replaced.
        WriteFailed
            The file system refuses the new file.
        """
        if relpath not in self.manifest().get(table, []):
            raise ValueError(f"{relpath} is not a committed file of {table}")
        replaced = batch.replaced.setdefault(table, {})
        if relpath in replaced:
            raise ValueError(f"{relpath} is already replaced in batch {batch.batch_id}")
        if keep is None or keep.num_rows == 0:
            replaced[relpath] = None
            return None
        old = self.root / relpath
        path = old.with_name(f"{old.stem}-r{batch.batch_id}.parquet")
        try:
            pq.write_table(keep, path, compression="zstd")
            _fsync(path)
        except OSError as error:
            path.unlink(missing_ok=True)
            raise WriteFailed(path, error) from error
        rel = str(path.relative_to(self.root))
        batch.add(table, rel)
        replaced[relpath] = rel
        return path

    def _commit(self, batch: Batch) -> None:
        if not batch.files and not batch.replaced:
            return
        tables = self.manifest()
        for table in {*batch.files, *batch.replaced}:
            tables[table] = _merged(
                tables.get(table, []), batch.files.get(table, []), batch.replaced.get(table, {})
            )
        history = self._history()
        history.append(
            {
                "batch_id": batch.batch_id,
                "committed_at": datetime.now(UTC).isoformat(),
                "files": sum(len(v) for v in batch.files.values()),
            }
            | ({"replaced": sum(len(v) for v in batch.replaced.values())} if batch.replaced else {})
        )
        payload = json.dumps({"tables": tables, "batches": history}, indent=1)
        tmp = self.root / f"{MANIFEST}.{batch.batch_id}.tmp"
        try:
            # The parts' folder entries first: the manifest must never name a file a
            # power cut could lose.
            for folder in self._new_folders(batch):
                _fsync(folder)
            with open(tmp, "w") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.root / MANIFEST)
        except BaseException as error:
            tmp.unlink(missing_ok=True)
            self._remove_files(batch)
            if isinstance(error, OSError):
                raise WriteFailed(tmp, error) from error
            raise
        try:
            _fsync(self.root)
        except OSError as error:  # committed: the rename is done, only its flush failed
            logger.warning("committed, but could not flush %s to disk: %s", self.root, error)
        self._delete_replaced(batch)

    def _delete_replaced(self, batch: Batch) -> None:
        """Delete the files a committed batch replaced, and folders left empty.

        Raises :class:`~features.errors.WriteFailed` if one cannot be deleted: the
        batch is committed (no reader sees the file), but its bytes are still on disk
        until the next writer removes it as an orphan; an erasure must say so.
        """
        folders: set[Path] = set()
        for old in (rel for replaced in batch.replaced.values() for rel in replaced):
            path = self.root / old
            try:
                path.unlink(missing_ok=True)
            except OSError as error:
                raise WriteFailed(path, error) from error
            folders.add(path.parent)
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            try:
                if folder != self.root and not any(folder.iterdir()):
                    folder.rmdir()
                _fsync(folder.parent if not folder.exists() else folder)
            except OSError as error:  # deleted all the same; only the tidying failed
                logger.warning("could not tidy %s: %s", folder, error)

    def _new_folders(self, batch: Batch) -> list[Path]:
        """Folders holding the batch's files, and theirs up to the root, deepest first."""
        folders: set[Path] = set()
        for rels in batch.files.values():
            for rel in rels:
                folder = (self.root / rel).parent
                while folder != self.root and folder not in folders:
                    folders.add(folder)
                    folder = folder.parent
        return sorted(folders, key=lambda f: len(f.parts), reverse=True)

    def _history(self) -> list[dict[str, object]]:
        path = self.root / MANIFEST
        if not path.exists():
            return []
        batches: list[dict[str, object]] = json.loads(path.read_text()).get("batches", [])
        return batches

    def _remove_files(self, batch: Batch) -> None:
        """Remove a failed batch's files; one that cannot be removed now (a read-only
        file system) is an orphan, invisible, that the next writer removes."""
        for rels in batch.files.values():
            for rel in rels:
                try:
                    (self.root / rel).unlink(missing_ok=True)
                except OSError:
                    continue

    def _remove_orphans(self) -> None:
        """Delete part files no manifest names (left by an interrupted batch)."""
        committed = {rel for rels in self.manifest().values() for rel in rels}
        for path in self.root.rglob("part-*.parquet"):
            if str(path.relative_to(self.root)) not in committed:
                path.unlink()
        for tmp in self.root.glob(f"{MANIFEST}.*.tmp"):
            tmp.unlink()


def _merged(committed: list[str], new: list[str], replaced: dict[str, str | None]) -> list[str]:
    """A table's files after a batch: each replaced file's rewrite in its place (or
    nothing), then the batch's other new files."""
    rewrites = {rel for rel in replaced.values() if rel is not None}
    out = [replaced.get(rel, rel) for rel in committed]
    return [rel for rel in out if rel is not None] + [rel for rel in new if rel not in rewrites]


# A reader whose files a writer keeps replacing gives up after this many reads.
_READ_ATTEMPTS = 5


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that hands timestamps back in UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _empty_schema(table: str) -> pa.Schema:
    if table.startswith("quarantine/"):
        return QUARANTINE_SCHEMA
    return stored_schema(contract_for(table))


def _fsync(path: Path) -> None:
    """Flush a file or a folder entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


STRING_DTYPE = pd.StringDtype("pyarrow", na_value=float("nan"))
_NULLABLE = {
    pa.int8(): "Int8",
    pa.int16(): "Int16",
    pa.int32(): "Int32",
    pa.int64(): "Int64",
    pa.uint8(): "UInt8",
    pa.uint16(): "UInt16",
    pa.uint32(): "UInt32",
    pa.uint64(): "UInt64",
    pa.bool_(): "boolean",
}


def fetch_frame(
    con: duckdb.DuckDBPyConnection, query: str, params: dict[str, object] | None = None
) -> pd.DataFrame:
    """The result of ``query`` as pandas, through Arrow.

    The dtypes are those of DuckDB's ``.df()`` (``str``; ``Int64`` / ``boolean`` for
    columns holding nulls, numpy types otherwise; decimals as ``float64``), but no
    Python object is made per string, which is several times faster on results of
    hundreds of thousands of strings.
    """
    table = con.sql(query, params=params).to_arrow_table()
    names = table.column_names
    columns = {name: _series(c) for name, c in zip(names, table.columns, strict=True)}
    return pd.DataFrame(columns, columns=names)


def _series(column: pa.ChunkedArray) -> pd.Series:
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if column.null_count == len(column):  # no string at all: .df() gives objects
            return pd.Series([None] * len(column), dtype=object)
        return pd.Series(column, dtype=STRING_DTYPE)
    if pa.types.is_decimal(kind):
        return pd.Series(column.cast(pa.float64()).to_numpy(), dtype="float64")
    if kind in _NULLABLE and column.null_count:
        return pd.Series(
            column.to_pandas(types_mapper={kind: pd.api.types.pandas_dtype(_NULLABLE[kind])}.get)
        )
    return pd.Series(column.to_pandas())
