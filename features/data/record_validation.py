"""Validate a few decoded JSON records (``POST /events``) without pandas' fixed costs.

:func:`features.data.validation.validate` is vectorised: a 250,000-row chunk costs little
per row, but a call on one row pays some twenty pandas operations per column, about
20 ms, and a service that validates every posted call holds the GIL that long.

:func:`type_records` gives the same answer for any records, row for row: it
takes each record whose every value is plainly valid (text ids within their bound,
a strict ISO 8601 time inside the event window, finite numbers within their bounds,
a JSON object that dumps within its bound, the row rules met) and types it in plain
Python; every other record — anything odd, anything to reject — goes through
:func:`~features.data.validation.validate` itself, so each reason is written once, there.
A property test holds both paths to the same valid rows and the same rejected ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from features.data.contracts import Column, RowLimits, TableContract
from features.data.json_columns import canonical_json, dump_json
from features.data.readers import records_frame
from features.data.typed_columns import READABLE, Window, event_window, has_surrogates
from features.data.validation import (
    DEFAULT_LIMITS,
    ITEM_EVENTS,
    LINK_EVENTS,
    Validated,
    validate,
)

# A time pandas and Python read alike: date, 'T', time, at most microseconds, and a
# 'Z' or ±HH:MM offset (none: UTC). Anything else takes the full path.
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?")
_MAX_INT = 2**53

# The dtype each logical type has in a validated frame.
DTYPES = {
    "string": "string",
    "json": "string",
    "timestamp": "datetime64[us, UTC]",
    "int": "Int64",
    "float": "float64",
    "bool": "boolean",
}

_SLOW = object()
"""What a plain value check answers for a value it does not take."""


@dataclass(frozen=True)
class TypedRecords:
    """Result of :func:`type_records`.

    Attributes
    ----------
    rows : list of dict
        Each valid record typed, every contract column in order: ``str``,
        ``datetime`` (UTC), ``int``, ``float``, ``bool`` or ``None`` where missing.
    lines : numpy.ndarray of int64
        Position in the call of each valid row (ascending).
    rejected : pandas.DataFrame
        As :attr:`features.data.validation.Validated.rejected`.
    """

    contract: TableContract
    rows: list[dict[str, Any]]
    lines: np.ndarray
    rejected: pd.DataFrame

    def frame(self) -> pd.DataFrame:
        """The valid rows as the typed frame :func:`validate` gives."""
        return pd.DataFrame(
            {
                column.name: pd.Series(
                    [row[column.name] for row in self.rows], dtype=DTYPES[column.dtype]
                )
                for column in self.contract.columns
            }
        )

    def validated(self) -> Validated:
        """What :func:`~features.data.validation.validate` gives for the same records
        (``records_frame(records)``, line numbers 0..n-1)."""
        return Validated(self.frame(), self.lines, self.rejected)


def type_records(
    records: Sequence[Mapping[str, Any]],
    contract: TableContract,
    *,
    now: datetime,
    max_future_skew: timedelta = timedelta(days=1),
    limits: RowLimits = DEFAULT_LIMITS,
) -> TypedRecords:
    """Validate ``records`` and keep the valid ones as typed dicts (no frame built).

    Parameters
    ----------
    records : sequence of mapping
        Decoded JSON objects, as ``POST /events`` receives them.
    contract, now, max_future_skew, limits
        As for :func:`~features.data.validation.validate`.
    """
    checker = _PlainRows(contract, event_window(now, max_future_skew, limits), limits)
    names = contract.names
    rows: list[tuple[int, dict[str, Any]]] = []
    odd: list[int] = []
    for position, record in enumerate(records):
        values = checker.row(record)
        if values is None:
            odd.append(position)
        else:
            rows.append((position, dict(zip(names, values, strict=True))))
    if not odd:
        return TypedRecords(
            contract,
            [r for _, r in rows],
            np.asarray([p for p, _ in rows], np.int64),
            _no_rejects(),
        )
    # Columns in the order the whole call names them, as validate would see them.
    order = list(dict.fromkeys(str(k) for r in records for k in r))
    frame = records_frame([records[i] for i in odd])
    frame = frame[[name for name in order if name in frame.columns]]
    slow = validate(
        frame,
        np.asarray(odd, dtype=np.int64),
        contract,
        now=now,
        max_future_skew=max_future_skew,
        limits=limits,
    )
    slow_rows = [_plain(row) for row in slow.valid.to_dict("records")]
    rows.extend(zip(slow.valid_lines.tolist(), slow_rows, strict=True))
    rows.sort(key=lambda pair: pair[0])
    return TypedRecords(
        contract, [r for _, r in rows], np.asarray([p for p, _ in rows], np.int64), slow.rejected
    )


def _plain(row: dict[Any, Any]) -> dict[str, Any]:
    """A typed frame's row in plain Python values (``None`` where missing)."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if value is None or value is pd.NA or value is pd.NaT:
            value = None
        elif isinstance(value, pd.Timestamp):
            value = value.to_pydatetime()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            value = None
        out[str(name)] = value
    return out


def _no_rejects() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "line_number": np.empty(0, dtype=np.int64),
            "reason": np.empty(0, dtype=object),
            "raw": np.empty(0, dtype=object),
        }
    )


class _PlainRows:
    """Types a record whose values are all plainly valid; ``None`` for any other."""

    def __init__(self, contract: TableContract, window: Window, limits: RowLimits) -> None:
        self.contract = contract
        self.limits = limits
        self.names = frozenset(contract.names)
        self.checks = [
            (column.name, self._check(column, _window(contract, column, window)))
            for column in contract.columns
        ]

    def row(self, record: Mapping[str, Any]) -> list[Any] | None:
        if not self.names.issuperset(record):  # unknown or padded keys: folded, or clash
            return None
        values: list[Any] = []
        for name, check in self.checks:
            value = check(record.get(name))
            if value is _SLOW:
                return None
            values.append(value)
        row = dict(zip(self.contract.names, values, strict=True))
        if self.contract.one_of and all(row[name] is None for name in self.contract.one_of):
            return None
        if self.contract.kind == "events":
            kind = row["event_type"]
            if kind in ITEM_EVENTS and row["item_id"] is None:
                return None
            if kind in LINK_EVENTS and (row["customer_id"] is None or row["anonymous_id"] is None):
                return None
        return values

    def _check(self, column: Column, window: Window) -> Any:
        """The function that types one value of ``column`` (``_SLOW``: not plainly)."""
        check = {
            "string": self._text,
            "timestamp": self._time,
            "int": self._number,
            "float": self._number,
            "bool": _flag,
            "json": self._json,
        }[column.dtype]

        def typed(value: Any) -> Any:
            if value is None:
                return _SLOW if column.required else None
            result = check(value, column, window)
            if result is _SLOW or result is None:
                return _SLOW if column.required else result
            if column.enum is not None and result not in column.enum:
                return _SLOW
            if column.min_value is not None and result < column.min_value:
                return _SLOW
            if column.max_value is not None and result > column.max_value:
                return _SLOW
            return result

        return typed

    def _text(self, value: Any, column: Column, window: Window) -> Any:
        if type(value) is not str or not value:
            return _SLOW
        # Ends in plain ASCII, not blank: nothing for any strip to take off.
        first, last = value[0], value[-1]
        if not ("!" <= first <= "~" and "!" <= last <= "~"):
            return _SLOW
        bound = self.limits.max_text_length if column.free_text else self.limits.max_field_length
        if len(value) > bound or (not value.isascii() and has_surrogates(value)):
            return _SLOW
        return value

    def _time(self, value: Any, column: Column, window: Window) -> Any:
        if type(value) is not str or not _ISO.fullmatch(value):
            return _SLOW
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            return _SLOW
        stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
        if not window.earliest <= stamp <= window.latest:
            return _SLOW
        return stamp

    def _number(self, value: Any, column: Column, window: Window) -> Any:
        kind = type(value)
        if kind is int:
            if abs(value) > _MAX_INT:
                return _SLOW
            return value if column.dtype == "int" else float(value)
        if kind is float and column.dtype == "float" and math.isfinite(value):
            return value
        return _SLOW

    def _json(self, value: Any, column: Column, window: Window) -> Any:
        if type(value) is dict:
            text, problem = dump_json(value, self.limits.max_json_bytes)
        elif type(value) is str:
            text, problem = canonical_json(value, self.limits.max_json_bytes)
        else:
            return _SLOW
        return _SLOW if problem else text


def _flag(value: Any, column: Column, window: Window) -> Any:
    return value if type(value) is bool else _SLOW


def _window(contract: TableContract, column: Column, events: Window) -> Window:
    """The window of a timestamp column: an event's ``ts`` has its own."""
    return events if contract.kind == "events" and column.name == "ts" else READABLE
