"""The project's one root exception and its input-error subclass."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any


class TailorError(Exception):
    """Root of every error Tailor raises on purpose."""


class InputError(TailorError, ValueError):
    """Bad input from a caller: names the field and the offending value.

    The message quotes the value with anything shaped like an e-mail address or a
    phone number masked (:func:`features.pii.hashing.redact`): messages reach
    logs and HTTP answers, personal data must not. ``value`` keeps it as given.

    Parameters
    ----------
    field : str
        The field, option or column that was wrong.
    value : Any
        The value that was given.
    reason : str
        What was expected instead.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        # Imported here: the hashing module raises this error.
        from features.pii.redaction import redact

        super().__init__(f"{field}={redact(repr(value))}: {reason}")


class NotFoundError(TailorError, LookupError):
    """Something asked for does not exist (a snapshot, a model, a file)."""


class JobFailed(TailorError):
    """A job could not do its work on the data it was given.

    The message says why and what to change (a setting, a flag, more data); the
    command line exits non-zero with it.
    """


_WHY = {
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


class WriteFailed(JobFailed):
    """Tailor's own folders could not be written (read-only, full, no permission).

    The message is one line: the path, what went wrong, what to change.

    Parameters
    ----------
    path : Path
        The file or folder that could not be written.
    error : Exception
        What the operating system (an ``OSError``) or the library that wrote
        (SQLite) said.
    """

    def __init__(self, path: Path, error: Exception) -> None:
        self.path = Path(path)
        self.errno = error.errno if isinstance(error, OSError) else None
        if isinstance(error, OSError):
            why = _WHY.get(error.errno or 0) or (error.strerror or str(error))
            why = f"{why} (errno {error.errno})"
        else:
            why = str(error)
        if self.errno in (errno.ENOSPC, errno.EDQUOT):
            change = "free space there"
        elif self.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            change = "make it writable"
        else:
            change = "check that folder"
        super().__init__(
            f"cannot write {path}: {why}; {change}, or set "
            f"TAILOR_HOME (home) to another folder; nothing was changed"
        )
