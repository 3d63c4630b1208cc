"""Validate raw rows against a table contract: typed rows out, bad rows with reasons.

Pure and vectorised: a raw frame (strings or loosely typed values) goes in, a
typed frame in contract order and a frame of rejected rows, each with every
reason it failed, come out. Nothing is dropped and nothing raises on the values
of a row: every input row is in exactly one of the two outputs, whatever it holds
(JSON objects where text belongs, NaN, a year 1 date, a key of spaces, a megabyte
id); a reason names the field and quotes at most a short prefix of the value.

The JSON columns (``properties``, ``attributes``) take a JSON object, as a dict
(JSON posts, JSONL, Parquet structs) or as text holding one; they are stored as
canonical JSON text (``json.dumps`` with sorted keys), which DuckDB's JSON
functions read. Parsing JSON is per value (over the distinct texts of a chunk).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.data.contracts import EXTRA_COLUMN, Column, RowLimits, TableContract
from features.data.json_columns import (
    NOT_UNICODE,
    is_missing,
    json_kind,
    json_texts,
)

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

_TRUE = frozenset({"true", "t", "1", "yes", "y"})
_FALSE = frozenset({"false", "f", "0", "no", "n"})

REJECT_COLUMNS = ["line_number", "reason", "raw"]

MAPPING_ERROR = "__mapping_error__"
"""A column an adapter may add: why it could not map the row (null: it could). Such a
row is rejected with that reason, like any failed check; the column is not kept."""

DEFAULT_LIMITS = RowLimits()

# Integers are held exactly up to 2**53 on the way through float64.
_MAX_INT = float(2**53)
# No timestamp is written in more characters than this; longer text is not parsed.
_MAX_TIMESTAMP_CHARS = 64
# How much of a value a reason quotes.
_QUOTE_CHARS = 40

_KINDS = {
    "timestamp": "a timestamp",
    "int": "an integer",
    "float": "a number",
    "bool": "true/false",
    "json": "a JSON object",
    "string": "text",
}
_LIMIT_SETTINGS = {
    "max_field_length": "max_field_length",
    "max_text_length": "max_text_length",
    "max_json_bytes": "max_properties_bytes",
}

Fail = Callable[[np.ndarray, "np.ndarray | str"], None]


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


@dataclass(frozen=True)
class Window:
    """The times a timestamp may take, and the settings that say so."""

    earliest: pd.Timestamp
    latest: pd.Timestamp
    earliest_setting: str
    latest_reason: str


# What pandas holds (nanoseconds): a timestamp outside cannot be read back.
READABLE = Window(
    pd.Timestamp.min.ceil("s").tz_localize("UTC"),
    pd.Timestamp.max.floor("s").tz_localize("UTC"),
    "the earliest time pandas holds",
    "is later than pandas holds",
)


def event_window(now: datetime, max_future_skew: timedelta, limits: RowLimits) -> Window:
    """The times an event's ``ts`` may take: from ``limits.min_event_ts`` to
    ``now + max_future_skew``, within what pandas holds."""
    latest = pd.Timestamp(now).tz_convert("UTC") + max_future_skew
    return Window(
        max(pd.Timestamp(limits.min_event_ts).tz_convert("UTC"), READABLE.earliest),
        min(latest, READABLE.latest),
        "min_event_ts",
        f"is in the future (later than {latest.isoformat()})",
    )


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


# --------------------------------------------------------------------------- typed columns
def _check_column(
    raw: pd.Series, column: Column, limits: RowLimits, window: Window, fail: Fail
) -> pd.Series:
    """The typed column, every failed check reported through ``fail``.

    Should the vectorised path raise on some value, the column is read value by
    value and a value that still cannot be read rejects its row, naming the column:
    no value makes validate raise.
    """
    try:
        value, reasons = _typed(raw, column, limits, window)
    except Exception:
        value, reasons = _typed_one_by_one(raw, column, limits, window)
    given = reasons != ""
    if given.any():
        stripped = np.full(len(reasons), "", dtype=object)
        stripped[given] = [r[2:] for r in reasons[given]]
        fail(given, stripped)
    return value


def _typed_one_by_one(
    raw: pd.Series, column: Column, limits: RowLimits, window: Window
) -> tuple[pd.Series, np.ndarray]:
    pieces: list[pd.Series] = []
    reasons = np.full(len(raw), "", dtype=object)
    for position in range(len(raw)):
        single = raw.iloc[position : position + 1].reset_index(drop=True)
        try:
            piece, why = _typed(single, column, limits, window)
        except Exception as error:
            piece, _ = _typed(pd.Series([None], dtype=object), column, limits, window)
            why = np.array([f"; {column.name}: cannot be read ({type(error).__name__})"])
        pieces.append(piece)
        reasons[position] = why[0]
    if not pieces:
        return _typed(pd.Series([], dtype=object), column, limits, window)
    return pd.concat(pieces, ignore_index=True), reasons


def _typed(
    raw: pd.Series, column: Column, limits: RowLimits, window: Window
) -> tuple[pd.Series, np.ndarray]:
    """(typed values, '; '-prefixed reasons per row, '' where the value passed)."""
    name = column.name
    n = len(raw)
    reasons = np.full(n, "", dtype=object)

    def fail(mask: np.ndarray, message: np.ndarray | str) -> None:
        if mask.any():
            msg = message[mask] if isinstance(message, np.ndarray) else message
            reasons[mask] = reasons[mask] + "; " + msg

    raw, odd = _plain_values(raw, _KINDS[column.dtype])
    refused = odd != ""
    fail(refused, _prefix(name, odd))
    text = _as_text(raw)
    given = text.notna().to_numpy()
    value: pd.Series
    if column.dtype == "string":
        value = text
        setting = "max_text_length" if column.free_text else "max_field_length"
        bound = int(getattr(limits, setting))
        lengths = text.str.len().fillna(0).to_numpy(dtype=np.int64)
        long = lengths > bound
        if long.any():
            message = np.full(n, "", dtype=object)
            message[long] = [
                f"{name}: {_short(v)} is {k:,} characters long, more than {bound:,} "
                f"({_LIMIT_SETTINGS[setting]})"
                for v, k in zip(text[long], lengths[long], strict=True)
            ]
            fail(long, message)
        refused |= long
    elif column.dtype == "timestamp":
        value = _parse_timestamps(raw, text)
        unparsable = given & value.isna().to_numpy()
        fail(unparsable, _quoted(name, text, unparsable, " is not a timestamp"))
        refused |= unparsable | _outside(value, name, text, window, fail)
    elif column.dtype == "bool":
        if pd.api.types.is_bool_dtype(raw.dtype):
            value = raw.astype("boolean")
        else:
            lower = text.str.lower()
            value = pd.Series(pd.NA, index=raw.index, dtype="boolean")
            value[lower.isin(_TRUE).fillna(False).to_numpy(dtype=bool)] = True
            value[lower.isin(_FALSE).fillna(False).to_numpy(dtype=bool)] = False
        unparsable = given & value.isna().to_numpy()
        fail(unparsable, _quoted(name, text, unparsable, " is not true/false"))
        refused |= unparsable
    else:
        value, unparsable = _numbers(text, column, fail)
        refused |= unparsable
    if column.required:
        fail(value.isna().to_numpy() & ~refused, f"{name}: missing (required)")
    if column.enum is not None:
        bad = (value.notna() & ~value.isin(column.enum)).to_numpy(dtype=bool)
        fail(bad, _quoted(name, text, bad, f" is not one of: {', '.join(column.enum)}"))
    if column.min_value is not None:
        bad = (value < column.min_value).fillna(False).to_numpy(dtype=bool)
        fail(bad, _quoted(name, text, bad, f" is below {column.min_value:g}"))
    if column.max_value is not None:
        bad = (value > column.max_value).fillna(False).to_numpy(dtype=bool)
        fail(bad, _quoted(name, text, bad, f" is above {column.max_value:g}"))
    return value.reset_index(drop=True), reasons


def _numbers(text: pd.Series, column: Column, fail: Fail) -> tuple[pd.Series, np.ndarray]:
    """Numbers of an int or float column, and the mask of given values refused."""
    name = column.name
    given = text.notna().to_numpy()
    parsed = pd.to_numeric(text, errors="coerce")
    values = np.asarray(parsed.to_numpy(dtype=float, na_value=np.nan), dtype=float)
    number = pd.Series(values, index=text.index, dtype="float64")
    finite = np.isfinite(values)
    infinite = given & np.isinf(values)
    unread = given & np.isnan(values)
    if unread.any():  # NaN spelled out: parsed, but no number either
        spelled = text[unread].str.lower().str.fullmatch(r"[+-]?nan").to_numpy(dtype=bool)
        infinite[np.flatnonzero(unread)[spelled]] = True
    fail(infinite, _quoted(name, text, infinite, " is not a finite number"))
    unparsable = given & ~finite & ~infinite
    fail(unparsable, _quoted(name, text, unparsable, f" is not {_KINDS[column.dtype]}"))
    if column.dtype == "float":
        return number.where(finite), given & ~finite
    magnitude = np.abs(np.where(finite, values, 0.0))
    huge = finite & (magnitude > _MAX_INT)
    fail(huge, _quoted(name, text, huge, " is too large for an integer (beyond ±2^53)"))
    fraction = finite & ~huge & (magnitude % 1 != 0)
    fail(fraction, _quoted(name, text, fraction, " is not an integer"))
    ok = finite & ~huge & ~fraction
    return number.where(ok).astype("Int64"), given & ~ok


def _outside(
    value: pd.Series, name: str, text: pd.Series, window: Window, fail: Fail
) -> np.ndarray:
    """Fail timestamps outside the window; the mask of those."""
    early = (value < window.earliest).fillna(False).to_numpy(dtype=bool)
    stamp = window.earliest.strftime("%Y-%m-%dT%H:%M:%SZ")
    fail(early, _quoted(name, text, early, f" is before {stamp} ({window.earliest_setting})"))
    late = (value > window.latest).fillna(False).to_numpy(dtype=bool)
    if late.any():
        stamps = np.full(len(value), "", dtype=object)
        stamps[late] = value[late].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(dtype=object)
        fail(late, f"{name}: " + stamps + f" {window.latest_reason}")
    return early | late


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


def _plain_values(raw: pd.Series, kind: str) -> tuple[pd.Series, np.ndarray]:
    """``raw`` with the values no column of ``kind`` can hold taken out (JSON objects
    and arrays, bytes, text that is not Unicode), and what is wrong with each of
    them ('' for the others)."""
    odd = np.full(len(raw), "", dtype=object)
    if raw.dtype != object:
        return raw, odd
    inferred = pd.api.types.infer_dtype(raw, skipna=True)
    if inferred in ("empty", "integer", "floating", "mixed-integer-float", "boolean"):
        return raw, odd
    if inferred == "string" and not _not_unicode(raw).any():
        return raw, odd
    odd = raw.map(lambda v: _odd_kind(v, kind)).to_numpy(dtype=object)
    return raw.where(odd == "", None), odd


def _odd_kind(value: Any, kind: str) -> str:
    """'' for a scalar a column may hold; else what is wrong with it."""
    if isinstance(value, str):
        return "" if not has_surrogates(value) else NOT_UNICODE
    if value is None or isinstance(value, bool | int | float | np.generic):
        return ""
    if isinstance(value, dt.date | dt.datetime | dt.time | pd.Timestamp):
        return ""
    if value is pd.NA or value is pd.NaT:
        return ""
    return f"{json_kind(value)} is not {kind}"


def _as_text(raw: pd.Series) -> pd.Series:
    """Values as stripped text, missing and empty as NA (integral floats without .0)."""
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        text = raw.map(lambda v: v.isoformat() if pd.notna(v) else None).astype("string")
        return text.mask(text == "")
    text = raw.astype("string")
    if pd.api.types.is_float_dtype(raw.dtype):
        values = raw.to_numpy(dtype=float, na_value=np.nan)
        finite = np.isfinite(values)
        whole = values[finite]
        if len(whole) and bool((whole % 1 == 0).all()) and np.abs(whole).max() <= _MAX_INT:
            integers = pd.Series(np.where(finite, values, 0.0), index=raw.index)
            text = integers.astype("int64").astype("string").where(finite, text)
    text = text.str.strip()
    return text.mask(text == "")


def _not_unicode(values: pd.Series) -> np.ndarray:
    """Which strings cannot be written as UTF-8 (lone surrogates from a JSON escape)."""
    array = values.to_numpy(dtype=object)
    try:
        pa.array(array, type=pa.string(), from_pandas=True)
    except (UnicodeError, pa.ArrowException):
        return np.array([has_surrogates(v) for v in array], dtype=bool)
    return np.zeros(len(values), dtype=bool)


def has_surrogates(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _parse_timestamps(raw: pd.Series, text: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        stamps = pd.to_datetime(raw)
        if stamps.dt.tz is None:
            return stamps.dt.tz_localize("UTC").astype("datetime64[us, UTC]")
        return stamps.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    # Nothing longer is a timestamp, and dateutil need not read a megabyte to say so.
    text = text.mask(text.str.len() > _MAX_TIMESTAMP_CHARS)
    parsed = _to_datetime(text, "ISO8601")
    retry = parsed.isna() & text.notna()
    if retry.any():
        # "2019-10-01 00:00:00 UTC" (REES46 and many exports): ISO 8601 with a zone name.
        zoned = text[retry].str.replace(r"\s*(UTC|GMT)$", "Z", regex=True)
        parsed[retry] = _to_datetime(zoned, "ISO8601")
        retry = parsed.isna() & text.notna()
    if retry.any():
        # Anything else dateutil understands; only the few rows still unparsed.
        parsed[retry] = _to_datetime(text[retry], "mixed")
    return parsed


def _to_datetime(text: pd.Series, fmt: str) -> pd.Series:
    """``pd.to_datetime`` (UTC, microseconds), NaT for what it cannot read — also
    where it would raise rather than coerce (dates beyond what it can hold)."""
    try:
        return _stamps(pd.to_datetime(text, utc=True, errors="coerce", format=fmt))
    except (ValueError, OverflowError, TypeError):
        out = []
        for value in text:
            try:
                out.append(_stamps(pd.to_datetime(pd.Series([value]), utc=True, format=fmt))[0])
            except (ValueError, OverflowError, TypeError):
                out.append(pd.NaT)
        return pd.Series(out, index=text.index, dtype="datetime64[us, UTC]")


def _stamps(values: pd.Series) -> pd.Series:
    return values.astype("datetime64[us, UTC]")


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
    """A short, storable version of text for a reason."""
    short = text if len(text) <= 200 else text[:200] + "…"
    return short.encode("utf-8", errors="backslashreplace").decode("utf-8")


def _short(value: object) -> str:
    text = str(value)
    return repr(text[:_QUOTE_CHARS]) + ("…" if len(text) > _QUOTE_CHARS else "")


def _quoted(name: str, text: pd.Series, mask: np.ndarray, suffix: str) -> np.ndarray | str:
    """'name: <value's prefix><suffix>' where ``mask`` ('' where nothing is)."""
    if not mask.any():
        return ""
    out = np.full(len(text), "", dtype=object)
    values = text[mask].astype(object).map(_short)
    out[mask] = (f"{name}: " + values + suffix).to_numpy(dtype=object)
    return out


def _prefix(name: str, what: np.ndarray) -> np.ndarray | str:
    mask = what != ""
    if not mask.any():
        return ""
    out = np.full(len(what), "", dtype=object)
    out[mask] = f"{name}: " + what[mask]
    return out


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
