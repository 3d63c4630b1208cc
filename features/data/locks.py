"""Exclusive locks between processes that write the same folder.

A lock is an OS file lock (``flock``) on a file in the folder it guards
(``store/.lock``, ``features/.lock``): the OS releases it when its holder exits,
however it exits (SIGKILL included), so a crashed job never leaves a stale lock. A
process that finds the lock held says so (a warning naming the folder and the
holder's pid) and waits up to a timeout, then fails with :class:`~features.errors.JobFailed`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from features.errors import JobFailed, WriteFailed

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
_POLL_SECONDS = 0.1


@contextmanager
def exclusive_lock(
    folder: Path, *, what: str, timeout: float | None, keep_file: bool = True
) -> Iterator[None]:
    """Hold the exclusive lock of ``folder`` (created if need be) for the block.

    Parameters
    ----------
    folder : Path
        The folder guarded; its lock file is ``folder/.lock``.
    what : str
        What holds it, for messages ("the event store", "the feature snapshots").
    timeout : float, optional
        Seconds to wait for another holder; ``None``: wait as long as it takes,
        ``0``: do not wait.
    keep_file : bool
        False: the holder removes the lock file as it lets go, leaving the folder
        as it found it (one who then locks the removed file sees so and locks
        the new one; a holder that dies leaves the file, unlocked).

    Raises
    ------
    JobFailed
        The lock stayed held for ``timeout`` seconds (:class:`WriteFailed`: the
        folder cannot be written).
    """
    path = folder / LOCK_FILE
    deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
    waited = False
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # A bare descriptor: no buffer whose flush could fail on a full disk.
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise WriteFailed(path, error) from None
        try:
            waited = _acquire(fd, path, what=what, timeout=timeout, deadline=deadline, quiet=waited)
        except BaseException:
            os.close(fd)
            raise
        if _still_there(fd, path):
            break
        os.close(fd)  # its last holder removed that file: lock the one there now
    try:
        _note_holder(fd)
        try:
            yield
        finally:
            if not keep_file:
                _remove(path)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _still_there(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:  # a read-only folder: the file stays, unlocked, and is reused
        pass


def _acquire(
    fd: int,
    path: Path,
    *,
    what: str,
    timeout: float | None,
    deadline: float | None,
    quiet: bool,
) -> bool:
    """Lock ``fd``, waiting (and saying so, unless ``quiet``) until ``deadline``;
    whether it had to wait."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return quiet
    except BlockingIOError:
        pass
    holder = _holder(fd)
    if timeout is not None and timeout <= 0:
        raise JobFailed(_busy(what, path, holder, waited=None))
    if not quiet:
        limit = "as long as it takes" if timeout is None else f"up to {timeout:g} s (lock_timeout)"
        logger.warning(
            "waiting for %s: another process (%s) holds %s; waiting %s",
            what,
            holder,
            path,
            limit,
        )
    while True:
        time.sleep(_POLL_SECONDS)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if deadline is not None and time.monotonic() >= deadline:
                raise JobFailed(_busy(what, path, _holder(fd), waited=timeout)) from None


def _busy(what: str, path: Path, holder: str, *, waited: float | None) -> str:
    how_long = "" if waited is None else f" for {waited:g} s"
    return (
        f"{what} is busy: another process ({holder}) has held {path}{how_long}; run this "
        f"again when it has finished, or wait longer with lock_timeout (TAILOR_LOCK_TIMEOUT)"
    )


def _holder(fd: int) -> str:
    """The pid the holder wrote into the lock file, as words."""
    try:
        pid = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


def _note_holder(fd: int) -> None:
    """Write our pid into the lock file, for the messages of those who wait.

    Best effort: on a full disk the lock is held all the same, and the write that
    matters fails later with its own error.
    """
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass
