"""One raw column read as its contract type: typed values out, a reason per refused value.

The per-column half of :func:`features.data.validation.validate`, vectorised: text,
timestamps, integers, numbers and true/false parsed; the required, enum, bound, length
and time-window checks; a value no column can hold (a JSON object where text belongs,
bytes, text that is not Unicode) refused. Should the vectorised path raise on some
value, the column is read value by value, so no value makes validation raise. A reason
names the column and quotes at most a short prefix of the value, with e-mail- and
phone-shaped text masked (:func:`features.pii.hashing.redact`); the value of a
column that is personal data (``email``, ``phone``: :mod:`features.pii.masking`) is
never quoted, the reason names the column and says why. The time windows a
timestamp may take (:class:`Window`, :data:`READABLE`, :func:`event_window`) are here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.data.contracts import Column, RowLimits
from features.data.json_columns import NOT_UNICODE, json_kind
from features.pii.masking import is_personal
from features.pii.redaction import redact

_TRUE = frozenset({"true", "t", "1", "yes", "y"})
_FALSE = frozenset({"false", "f", "0", "no", "n"})

# Integers are held exactly up to 2**53 on the way through float64.
_MAX_INT = float(2**53)
# No timestamp is written in more characters than this; longer text is not parsed.
_MAX_TIMESTAMP_CHARS = 64
# How much of a value a reason quotes, and how much text is read to mask what it quotes
# (an e-mail address or phone number running past the quote is masked whole).
_QUOTE_CHARS = 40
_MASK_CHARS = 400
# What a reason says in place of a personal value.
WITHHELD = "(value not shown: personal data)"

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
                f"{name}: {_short(v, name)} is {k:,} characters long, more than {bound:,} "
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


# --------------------------------------------------------------------------- reasons
def _short(value: object, name: str = "") -> str:
    """How a reason quotes a value of column ``name``: a short prefix, masked; nothing
    of a personal value."""
    if is_personal(name):
        return WITHHELD
    text = str(value)
    masked = redact(text[:_MASK_CHARS])
    cut = len(masked) > _QUOTE_CHARS or len(text) > _MASK_CHARS
    return repr(masked[:_QUOTE_CHARS]) + ("…" if cut else "")


def _quoted(name: str, text: pd.Series, mask: np.ndarray, suffix: str) -> np.ndarray | str:
    """'name: <value's prefix><suffix>' where ``mask`` ('' where nothing is)."""
    if not mask.any():
        return ""
    out = np.full(len(text), "", dtype=object)
    values = text[mask].astype(object).map(lambda v: _short(v, name))
    out[mask] = (f"{name}: " + values + suffix).to_numpy(dtype=object)
    return out


def _prefix(name: str, what: np.ndarray) -> np.ndarray | str:
    mask = what != ""
    if not mask.any():
        return ""
    out = np.full(len(what), "", dtype=object)
    out[mask] = f"{name}: " + what[mask]
    return out
