"""Validate raw rows against a table contract: typed rows out, bad rows with reasons.

Pure and vectorised: a raw frame (strings or loosely typed values) goes in, a
typed frame in contract order and a frame of rejected rows, each with every
reason it failed, come out. Nothing is dropped and nothing raises on the values
of a row: every input row is in exactly one of the two outputs, whatever it holds
(JSON objects where text belongs, NaN, a year 1 date, a key of spaces, a megabyte
id); a reason names the field and quotes at most a short prefix of the value, never
the value of a personal-data column (``email``, ``phone``), and any e-mail- or
phone-shaped text it quotes is masked (:func:`features.pii.hashing.redact`). The
rejected row itself is kept as given here; the quarantine masks it when it writes it
(:func:`features.pii.masking.mask_raw_rows`).

The JSON columns (``properties``, ``attributes``) take a JSON object, as a dict
(JSON posts, JSONL, Parquet structs) or as text holding one; they are stored as
canonical JSON text (``json.dumps`` with sorted keys), which DuckDB's JSON
functions read. Parsing JSON is per value (over the distinct texts of a chunk).

This module names the columns, applies the row rules (one of, the events' item and
link ids), stores the JSON columns and writes the rejected rows; each other column is
typed and checked by :mod:`features.data.typed_columns`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from features.data.contracts import EXTRA_COLUMN, Column, RowLimits, TableContract
from features.data.json_columns import is_missing, json_texts
from features.data.typed_columns import (
    READABLE,
    Fail,
    _as_text,
    _check_column,
    _prefix,
    event_window,
)
from features.pii.redaction import redact

# Event types that are about one product and so need an item_id.
ITEM_EVENTS: frozenset[str] = frozenset(
    {
        "product_view",
        "add_to_cart",
        "remove_from_cart",
        "add_to_wishlist",
        "purchase",
        "stock_change",
    }
)
# Event types that link an anonymous id to a customer and so need both.
LINK_EVENTS: frozenset[str] = frozenset({"login", "identify"})

REJECT_COLUMNS = ["line_number", "reason", "raw"]

MAPPING_ERROR = "__mapping_error__"
"""A column an adapter may add: why it could not map the row (null: it could). Such a
row is rejected with that reason, like any failed check; the column is not kept."""

DEFAULT_LIMITS = RowLimits()


@dataclass
class Validated:
    """Result of :func:`validate`.

    Attributes
    ----------
    valid : pandas.DataFrame
        Typed rows in contract column order (index 0..n-1).
    valid_lines : numpy.ndarray of int64
        Source line number of each valid row.
    rejected : pandas.DataFrame
        Columns ``line_number``, ``reason`` (every failed check, ``; ``-joined)
        and ``raw`` (the row as given, as a JSON object).
    """

    valid: pd.DataFrame
    valid_lines: np.ndarray
    rejected: pd.DataFrame


def validate(
    frame: pd.DataFrame,
    line_numbers: np.ndarray,
    contract: TableContract,
    *,
    now: datetime,
    max_future_skew: timedelta = timedelta(days=1),
    limits: RowLimits = DEFAULT_LIMITS,
) -> Validated:
    """Check types, enums, bounds and row rules of ``frame`` against ``contract``.

    Parameters
    ----------
    frame : pandas.DataFrame, shape (n, k)
        Raw rows. Column names are stripped of surrounding spaces; columns not in
        the contract are kept in the contract's extra column (``properties`` or
        ``attributes``). Two names that are equal once stripped are one field (a
        row giving both values is rejected). In an object column, ``None`` and NaN
        are missing; :func:`features.data.readers.records_frame` builds frames from
        JSON records in which a JSON ``NaN`` stays a refusable value.
    line_numbers : numpy.ndarray of int64, shape (n,)
        Source line of each row, reported with rejected rows.
    contract : TableContract
        The table's contract.
    now : datetime
        Reference time (UTC); timestamps later than ``now + max_future_skew`` are
        rejected.
    max_future_skew : timedelta
        Tolerated clock skew for timestamps.
    limits : RowLimits
        Earliest timestamp, longest id, text and JSON a row may hold.
    """
    frame = frame.reset_index(drop=True)
    lines = np.asarray(line_numbers, dtype=np.int64)
    n = len(frame)
    reasons = np.full(n, "", dtype=object)

    def fail(mask: np.ndarray, message: np.ndarray | str) -> None:
        if not mask.any():
            return
        msg = message[mask] if isinstance(message, np.ndarray) else message
        reasons[mask] = reasons[mask] + "; " + msg

    named = _named_columns(frame, fail)

    if MAPPING_ERROR in named.columns:
        unmapped = _as_text(named[MAPPING_ERROR]).fillna("")
        named = named.drop(columns=[MAPPING_ERROR])
        given = (unmapped != "").to_numpy(dtype=bool)
        fail(given, unmapped.map(_printable).to_numpy(dtype=object))

    events_window = event_window(now, max_future_skew, limits)
    typed: dict[str, pd.Series] = {}
    extra_name = EXTRA_COLUMN[contract.kind]
    unknown = [c for c in named.columns if c not in contract.names]
    for column in contract.columns:
        raw = _column(named, column.name, n)
        if column.dtype == "json":
            extras = named[unknown] if column.name == extra_name and unknown else None
            value = _check_json(raw, extras, column, limits, fail)
        else:
            events_ts = contract.kind == "events" and column.name == "ts"
            window = events_window if events_ts else READABLE
            value = _check_column(raw, column, limits, window, fail)
        typed[column.name] = value

    if contract.one_of:
        none = np.logical_and.reduce([typed[c].isna().to_numpy() for c in contract.one_of])
        fail(none, f"at least one of {', '.join(contract.one_of)} is required")

    if contract.kind == "events":
        _check_events(typed, fail)

    ok = reasons == ""
    valid = pd.DataFrame({c: typed[c][ok].reset_index(drop=True) for c in contract.names})
    rejected = pd.DataFrame(
        {
            "line_number": lines[~ok],
            "reason": pd.Series(reasons[~ok], dtype=object).str.slice(2).to_numpy(),
            "raw": _rows_as_json(frame.loc[~ok]),
        }
    )
    return Validated(valid, lines[ok], rejected)


def _named_columns(frame: pd.DataFrame, fail: Fail) -> pd.DataFrame:
    """``frame`` with stripped, unique column names.

    Columns whose names are equal once stripped (``"event_id"`` and ``" event_id "``,
    or two blank keys) become one: the first value given; a row giving two is failed.
    """
    names = [str(c).strip() for c in frame.columns]
    if len(set(names)) == len(names):
        return frame.set_axis(names, axis=1)
    columns: dict[str, pd.Series] = {}
    given: dict[str, np.ndarray] = {}
    clashes: dict[str, np.ndarray] = {}
    for position, name in enumerate(names):
        values = frame.iloc[:, position]
        present = ~_missing(values)
        if name not in columns:
            columns[name], given[name] = values.astype(object), present
            continue
        clashes[name] = clashes.get(name, np.zeros(len(frame), dtype=bool)) | (
            given[name] & present
        )
        columns[name] = columns[name].where(given[name], values.astype(object))
        given[name] = given[name] | present
    for name, clash in clashes.items():
        label = repr(name) if name else "a blank key"
        fail(clash, f"{_printable(label)}: given more than once (keys that differ only in spaces)")
    return pd.DataFrame(columns, index=frame.index)


def _column(frame: pd.DataFrame, name: str, n: int) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series([None] * n, dtype=object)


def _check_events(typed: dict[str, pd.Series], fail: Fail) -> None:
    event_type = typed["event_type"].fillna("").to_numpy(dtype=object)
    needs_item = np.isin(event_type, list(ITEM_EVENTS)) & typed["item_id"].isna().to_numpy()
    if needs_item.any():
        fail(needs_item, "item_id: required for " + event_type + " events")
    link = np.isin(event_type, list(LINK_EVENTS)) & (
        typed["customer_id"].isna().to_numpy() | typed["anonymous_id"].isna().to_numpy()
    )
    if link.any():
        fail(
            link,
            "customer_id and anonymous_id: both required for " + event_type + " events",
        )


# --------------------------------------------------------------------------- JSON columns
def _check_json(
    raw: pd.Series,
    extras: pd.DataFrame | None,
    column: Column,
    limits: RowLimits,
    fail: Fail,
) -> pd.Series:
    """The column as canonical JSON text (:func:`features.data.json_columns.json_texts`);
    a value that cannot be stored fails its row with the reason."""
    texts, reasons = json_texts(raw, extras, limits)
    fail(reasons != "", _prefix(column.name, reasons))
    return pd.Series(texts, dtype="string")


# --------------------------------------------------------------------------- reasons, raw rows
def _missing(values: pd.Series) -> np.ndarray:
    return np.array([is_missing(v) for v in values.to_numpy(dtype=object)], dtype=bool)


def _printable(text: str) -> str:
    """A short, storable version of text for a reason (e-mail and phone-shaped text
    masked)."""
    masked = redact(text[:1000])
    short = masked if len(masked) <= 200 and len(text) <= 1000 else masked[:200] + "…"
    return short.encode("utf-8", errors="backslashreplace").decode("utf-8")


def _rows_as_json(rows: pd.DataFrame) -> np.ndarray:
    """Each row as a JSON object: scalars as text (as read), JSON values as JSON,
    missing values as null (keys a JSON record lacked, ``pd.NA``, left out); a key
    repeated in the frame gets a ``#n`` suffix."""
    if len(rows) == 0:
        return np.empty(0, dtype=object)
    keys: list[str] = []
    for position, column in enumerate(rows.columns):
        key = str(column)
        keys.append(key if key not in keys else f"{key}#{position}")
    columns = [rows.iloc[:, j].to_numpy(dtype=object) for j in range(len(keys))]
    out = []
    for i in range(len(rows)):
        row = {
            key: _raw_value(column[i])
            for key, column in zip(keys, columns, strict=True)
            if column[i] is not pd.NA
        }
        try:
            text = json.dumps(row, ensure_ascii=False, default=str)
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: JSON escapes keep them verbatim
            text = json.dumps(row, ensure_ascii=True, default=str)
        except RecursionError:
            shallow = {
                k: "(nested too deeply)" if isinstance(v, dict | list) else v
                for k, v in row.items()
            }
            text = json.dumps(shallow, default=str)
        out.append(text)
    return np.asarray(out, dtype=object)


def _raw_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, dict | list):
        return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
