"""The project's one root exception and its input-error subclass."""

from __future__ import annotations

from typing import Any


class TailorError(Exception):
    """Root of every error Tailor raises on purpose."""


class InputError(TailorError, ValueError):
    """Bad input from a caller: names the field and the offending value.

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
        super().__init__(f"{field}={value!r}: {reason}")


class NotFoundError(TailorError, LookupError):
    """Something asked for does not exist (a snapshot, a model, a file)."""


class JobFailed(TailorError):
    """A job could not do its work on the data it was given.

    The message says why and what to change (a setting, a flag, more data); the
    command line exits non-zero with it.
    """
