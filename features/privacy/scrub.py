"""Scrub SQLite files after rows were deleted from them.

A deleted row's bytes stay in the database's free pages and in the write-ahead log
until they are overwritten: a byte scan of the file still finds them. ``VACUUM``
rewrites the database without free pages, and a ``TRUNCATE`` checkpoint copies the
log back and empties it. Readers in other processes keep reading throughout (WAL); a
checkpoint that a long reader holds up is retried, then reported.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

logger = logging.getLogger(__name__)

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def sqlite_files(root: Path) -> list[Path]:
    """Every SQLite database under ``root`` (by suffix and header)."""
    out = []
    for path in sorted(root.rglob("*")):
        if path.suffix in SQLITE_SUFFIXES and path.is_file():
            with path.open("rb") as fh:
                if fh.read(16) == b"SQLite format 3\x00":
                    out.append(path)
    return out


def scrub(path: Path, *, attempts: int = 50) -> bool:
    """VACUUM ``path`` and empty its write-ahead log; ``False`` when a reader kept the
    log from emptying after ``attempts`` tries (its old pages then stay until the
    next checkpoint: the caller says so)."""
    # A plain connection: the file keeps its own journal mode (MLflow's is not WAL).
    con = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        con.execute("PRAGMA busy_timeout=30000")
        con.execute("PRAGMA secure_delete=ON")
        con.execute("VACUUM")
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            return True
        for _ in range(attempts):
            busy, _log, _done = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
            time.sleep(0.05)
        logger.warning("%s: a reader kept its write-ahead log from emptying", path)
        return False
    except sqlite3.Error as error:
        logger.warning("%s: could not be scrubbed: %s", path, error)
        return False
    finally:
        con.close()
