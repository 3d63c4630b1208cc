"""What ``tailor retrain`` needs beside the jobs it runs: which inbox files are new, the
ledger of the ones already ingested, and the exit codes a scheduler reads.

The inbox holds one subfolder per table (``customers/``, ``catalog/``, ``content/``,
``events/``). A file is new when no file with the same content (SHA-256) has been
ingested from the inbox before, so a file copied in twice, renamed or touched is
ingested once; a file whose content changed is new again (the event store dedupes
events by id, and the tables by key). The ledger (``retrain/ledger.json`` in the home)
is rewritten atomically after each file, so a run killed half-way ingests only the
files it had not finished.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.errors import InputError

#: Exit codes of ``tailor retrain`` (2 is every command's "failed": bad input or a job
#: that could not do its work, with the reason printed).
PROMOTED = 0
FAILED = 2
NOTHING_NEW = 3
KEPT = 4

#: The inbox's tables, in the order they are ingested (events last: they refer to the
#: others).
TABLES = ("customers", "catalog", "content", "events")
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".jsonl", ".jsonl.gz", ".json")


@dataclass(frozen=True)
class InboxFile:
    """A file of the inbox: its table, path and content hash."""

    table: str
    path: Path
    sha256: str
    size: int


class Ledger:
    """The inbox files already ingested, by content hash (``ledger.json``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] = {}
        if path.exists():
            try:
                self._entries = json.loads(path.read_text())["ingested"]
            except (ValueError, KeyError, TypeError) as error:
                raise InputError(
                    "ledger", str(path), f"unreadable ({error}); move it aside to re-ingest all"
                ) from None

    def __contains__(self, file: InboxFile) -> bool:
        return file.sha256 in self._entries

    def record(self, file: InboxFile, rows: int) -> None:
        """Note ``file`` as ingested and write the ledger atomically."""
        self._entries[file.sha256] = {
            "table": file.table,
            "path": str(file.path),
            "size": file.size,
            "rows": rows,
            "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        with open(partial, "w") as out:
            json.dump({"ingested": self._entries}, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(self.path)

    def __len__(self) -> int:
        return len(self._entries)


def new_files(inbox: Path, ledger: Ledger) -> list[InboxFile]:
    """The inbox's files not yet ingested, table by table (``TABLES`` order), each
    table's files by name.

    Raises
    ------
    InputError
        When the inbox does not exist, or holds a file of no known table or format
        (named, so it is not silently ignored).
    """
    if not inbox.is_dir():
        raise InputError("retrain.inbox", str(inbox), "no such folder")
    stray = [
        p.name
        for p in inbox.iterdir()
        if not p.name.startswith(".") and (p.is_file() or p.name not in TABLES)
    ]
    if stray:
        raise InputError(
            "retrain.inbox",
            sorted(stray),
            f"the inbox holds one folder per table ({', '.join(TABLES)}); move these into one",
        )
    out: list[InboxFile] = []
    for table in TABLES:
        folder = inbox / table
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if path.name.startswith(".") or path.name.endswith(".partial"):
                continue  # a file still being copied in
            if not path.name.lower().endswith(SUFFIXES):
                raise InputError(
                    "retrain.inbox", str(path), f"not a data file (expected {', '.join(SUFFIXES)})"
                )
            file = InboxFile(table, path, _sha256(path), path.stat().st_size)
            if file not in ledger and all(f.sha256 != file.sha256 for f in out):
                out.append(file)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
