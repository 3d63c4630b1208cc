"""Checks of the A/B statistics' arguments, shared by their modules.

The private validators of :mod:`measurement.stats`, :mod:`measurement.planning` and
:mod:`measurement.sequential`: each returns the argument in the form the statistics
use (an ``int``, an int64 or float64 array) or raises
:class:`features.errors.InputError` naming the argument and its value, as the
conventions in :mod:`measurement.stats` say. Plain ``math`` and ``numpy``: no
statistics library backs them.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from features.errors import InputError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _show(value: object) -> object:
    """A short form of an argument for an error message."""
    if isinstance(value, np.ndarray | list | tuple) and len(value) > 10:
        return f"<{type(value).__name__} of {len(value)}>"
    return value


def _finite(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return False
    return math.isfinite(float(value))


def _level(value: float, name: str) -> None:
    if not _finite(value) or not 0.0 < value < 1.0:
        raise InputError(name, value, "must be a number in (0, 1)")


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(name, value, "must be an integer >= 1")
    return int(value)


def _count(value: int, name: str) -> int:
    """A count: an integer (or integral float) >= 0."""
    if isinstance(value, bool) or not _finite(value) or float(value) != int(value):
        raise InputError(name, value, "must be a whole number")
    if value < 0:
        raise InputError(name, value, "must be >= 0")
    return int(value)


def _arm(successes: int, trials: int, k_name: str, n_name: str) -> tuple[int, int]:
    k = _count(successes, k_name)
    n = _count(trials, n_name)
    if n == 0:
        raise InputError(n_name, trials, "an arm needs at least 1 trial (it has no rate)")
    if k > n:
        raise InputError(k_name, successes, f"must be <= {n_name}={n}")
    return k, n


def _counts(values: ArrayLike, name: str) -> IntArray:
    """An array of counts: whole numbers >= 0, as int64."""
    array = np.asarray(values)
    if array.dtype == np.bool_ or array.dtype.kind not in "iuf":
        raise InputError(name, _show(values), "must be whole numbers")
    if array.dtype.kind == "f" and not (
        np.all(np.isfinite(array)) and np.array_equal(array, np.floor(array))
    ):
        raise InputError(name, _show(values), "must be whole numbers")
    if np.any(array < 0):
        raise InputError(name, _show(values), "counts must be >= 0")
    return array.astype(np.int64)


def _arms(k: IntArray, n: IntArray, k_name: str, n_name: str) -> None:
    if np.any(n == 0):
        raise InputError(n_name, _show(n.tolist()), "every arm needs at least 1 trial")
    if np.any(k > n):
        raise InputError(k_name, _show(k.tolist()), f"must be <= {n_name}, element by element")


def _looks(values: ArrayLike, name: str) -> IntArray:
    """Cumulative counts per look: 1-D, non-empty, non-decreasing."""
    array = _counts(values, name)
    if array.ndim != 1 or array.size == 0:
        raise InputError(name, _show(values), "needs a 1-D sequence of at least one look")
    if np.any(np.diff(array) < 0):
        raise InputError(name, _show(values), "cumulative counts must not decrease")
    return array


def _sample(values: ArrayLike, name: str) -> FloatArray:
    """One arm's per-recipient values: 1-D, finite, at least two."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(name, _show(values), "must be numbers") from error
    if array.ndim != 1 or array.size < 2:
        raise InputError(name, _show(values), "needs a 1-D array of at least 2 values")
    if not np.all(np.isfinite(array)):
        raise InputError(name, _show(values), "values must be finite (no NaN or inf)")
    return array
