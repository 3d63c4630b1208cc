"""Validate raw rows against a table contract: typed rows out, bad rows with reasons.

Pure and vectorised: a raw frame (strings or loosely typed values) goes in, a
typed frame in contract order and a frame of rejected rows, each with every
reason it failed, come out. Nothing is dropped: every input row is in exactly one
of the two outputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd

from features.contracts import EXTRA_COLUMN, Column, TableContract

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
) -> Validated:
    """Check types, enums, bounds and row rules of ``frame`` against ``contract``.

    Parameters
    ----------
    frame : pandas.DataFrame, shape (n, k)
        Raw rows. Columns not in the contract are kept as JSON in the
        contract's extra column (``properties`` or ``attributes``).
    line_numbers : numpy.ndarray of int64, shape (n,)
        Source line of each row, reported with rejected rows.
    contract : TableContract
        The table's contract.
    now : datetime
        Reference time (UTC); events later than ``now + max_future_skew`` are rejected.
    max_future_skew : timedelta
        Tolerated clock skew for event timestamps.
    """
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    n = len(frame)
    reasons = np.full(n, "", dtype=object)

    def fail(mask: np.ndarray, message: np.ndarray | str) -> None:
        if not mask.any():
            return
        msg = message[mask] if isinstance(message, np.ndarray) else message
        reasons[mask] = reasons[mask] + "; " + msg

    if MAPPING_ERROR in frame.columns:
        unmapped = frame[MAPPING_ERROR].astype("string").fillna("")
        frame = frame.drop(columns=[MAPPING_ERROR])
        fail((unmapped != "").to_numpy(dtype=bool), unmapped.to_numpy(dtype=object))

    typed: dict[str, pd.Series] = {}
    for column in contract.columns:
        raw = frame[column.name] if column.name in frame.columns else pd.Series([None] * n)
        value, unparsable, text = _coerce(raw, column)
        fail(unparsable, _describe(column, text, unparsable))
        if column.required:
            fail(value.isna().to_numpy() & ~unparsable, f"{column.name}: missing (required)")
        if column.enum is not None:
            bad = (value.notna() & ~value.isin(column.enum)).to_numpy()
            allowed = ", ".join(column.enum)
            fail(bad, _quoted(column.name, text, bad, f" is not one of: {allowed}"))
        if column.min_value is not None:
            bad = (value < column.min_value).fillna(False).to_numpy(dtype=bool)
            fail(bad, _quoted(column.name, text, bad, f" is below {column.min_value:g}"))
        if column.max_value is not None:
            bad = (value > column.max_value).fillna(False).to_numpy(dtype=bool)
            fail(bad, _quoted(column.name, text, bad, f" is above {column.max_value:g}"))
        typed[column.name] = value

    if contract.one_of:
        none = np.logical_and.reduce([typed[c].isna().to_numpy() for c in contract.one_of])
        fail(none, f"at least one of {', '.join(contract.one_of)} is required")

    if contract.kind == "events":
        _check_events(typed, fail, now=now, max_future_skew=max_future_skew)

    extra_name = EXTRA_COLUMN[contract.kind]
    unknown = [c for c in frame.columns if c not in contract.names]
    if unknown:
        typed[extra_name] = _merge_extras(typed[extra_name], frame[unknown])

    ok = reasons == ""
    valid = pd.DataFrame({c: typed[c][ok].reset_index(drop=True) for c in contract.names})
    rejected = pd.DataFrame(
        {
            "line_number": np.asarray(line_numbers, dtype=np.int64)[~ok],
            "reason": pd.Series(reasons[~ok], dtype=object).str.slice(2).to_numpy(),
            "raw": _rows_as_json(frame.loc[~ok]),
        }
    )
    return Validated(valid, np.asarray(line_numbers, dtype=np.int64)[ok], rejected)


def _check_events(
    typed: dict[str, pd.Series],
    fail: Callable[[np.ndarray, np.ndarray | str], None],
    *,
    now: datetime,
    max_future_skew: timedelta,
) -> None:
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
    limit = pd.Timestamp(now).tz_convert("UTC") + max_future_skew
    future = (typed["ts"] > limit).fillna(False).to_numpy(dtype=bool)
    if future.any():
        stamps = typed["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").fillna("").to_numpy(dtype=object)
        fail(future, "ts: " + stamps + f" is in the future (later than {limit.isoformat()})")


def _coerce(raw: pd.Series, column: Column) -> tuple[pd.Series, np.ndarray, pd.Series]:
    """Return (typed values, mask of given-but-unparsable values, values as text)."""
    text = _as_text(raw)
    given = text.notna().to_numpy()
    if column.dtype in ("string", "json"):
        value: pd.Series = text
        if column.dtype == "json":
            bad = given & ~_is_json_object(text)
            return text.mask(bad), bad, text
        return value, np.zeros(len(raw), dtype=bool), text
    if column.dtype == "timestamp":
        value = _parse_timestamps(raw, text)
    elif column.dtype == "bool":
        if pd.api.types.is_bool_dtype(raw.dtype):
            value = raw.astype("boolean")
        else:
            lower = text.str.lower()
            value = pd.Series(pd.NA, index=raw.index, dtype="boolean")
            value[lower.isin(_TRUE).fillna(False)] = True
            value[lower.isin(_FALSE).fillna(False)] = False
    else:
        number = pd.to_numeric(text, errors="coerce")
        finite = np.isfinite(number.to_numpy(dtype=float, na_value=np.nan))
        number = number.where(finite)
        if column.dtype == "int":
            integral = (number % 1 == 0).fillna(False)
            value = number.where(integral).astype("Int64")
        else:
            value = number.astype("float64")
    unparsable = given & value.isna().to_numpy()
    return value, unparsable, text


def _as_text(raw: pd.Series) -> pd.Series:
    """Values as stripped text, missing and empty as NA (integral floats without .0)."""
    if pd.api.types.is_float_dtype(raw.dtype):
        values = raw.to_numpy(dtype=float, na_value=np.nan)
        finite = values[np.isfinite(values)]
        if len(finite) and bool((finite % 1 == 0).all()):
            raw = raw.astype("Int64")
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        text = raw.map(lambda v: v.isoformat() if pd.notna(v) else None).astype("string")
    else:
        text = raw.astype("string").str.strip()
    return text.mask(text == "")


def _parse_timestamps(raw: pd.Series, text: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        stamps = pd.to_datetime(raw)
        if stamps.dt.tz is None:
            return stamps.dt.tz_localize("UTC").astype("datetime64[us, UTC]")
        return stamps.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    retry = parsed.isna() & text.notna()
    if retry.any():
        # "2019-10-01 00:00:00 UTC" (REES46 and many exports): ISO 8601 with a zone name.
        zoned = text[retry].str.replace(r"\s*(UTC|GMT)$", "Z", regex=True)
        parsed[retry] = pd.to_datetime(zoned, utc=True, errors="coerce", format="ISO8601")
        retry = parsed.isna() & text.notna()
    if retry.any():
        # Anything else dateutil understands; only the few rows still unparsed.
        parsed[retry] = pd.to_datetime(text[retry], utc=True, errors="coerce", format="mixed")
    return parsed.astype("datetime64[us, UTC]")


def _is_json_object(text: pd.Series) -> np.ndarray:
    """Whether each value is a JSON object (vectorised in DuckDB)."""
    values = pd.DataFrame({"v": text.astype(object).where(text.notna(), None)})
    con = duckdb.connect()
    try:
        con.register("t", values)
        result = con.execute(
            "SELECT coalesce(json_valid(v) AND json_type(v::JSON) = 'OBJECT', false) AS ok FROM t"
        ).fetchnumpy()["ok"]
    finally:
        con.close()
    return np.asarray(result, dtype=bool)


def _describe(column: Column, text: pd.Series, mask: np.ndarray) -> np.ndarray:
    kind = {
        "timestamp": "a timestamp",
        "int": "an integer",
        "float": "a number",
        "bool": "true/false",
        "json": "a JSON object",
        "string": "text",
    }[column.dtype]
    return _quoted(column.name, text, mask, f" is not {kind}")


def _quoted(name: str, text: pd.Series, mask: np.ndarray, suffix: str) -> np.ndarray:
    out = np.full(len(text), "", dtype=object)
    if mask.any():
        values = text[mask].astype(object).map(lambda v: repr(str(v)[:80]))
        out[mask] = (f"{name}: " + values + suffix).to_numpy(dtype=object)
    return out


def _rows_as_json(rows: pd.DataFrame) -> np.ndarray:
    if rows.empty:
        return np.empty(0, dtype=object)
    as_text = rows.astype(object).where(rows.notna(), None).astype(str).where(rows.notna(), None)
    lines = as_text.to_json(orient="records", lines=True, force_ascii=False)
    return np.asarray(lines.rstrip("\n").split("\n"), dtype=object)


def _merge_extras(existing: pd.Series, extras: pd.DataFrame) -> pd.Series:
    """Unknown columns as a JSON object, merged into the existing JSON column."""
    if existing.empty:
        return existing
    extras_text = extras.astype(object)
    blank = extras_text.isna() | extras_text.map(lambda v: isinstance(v, str) and not v.strip())
    extras_text = extras_text.where(~blank, None)
    lines = extras_text.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
    packed = pd.Series(lines.rstrip("\n").split("\n"), index=existing.index, dtype="string")
    both = existing.notna().to_numpy()
    merged = packed.to_numpy(dtype=object)
    if both.any():
        merged[both] = [
            json.dumps({**json.loads(e), **json.loads(p)}, sort_keys=True)
            for e, p in zip(existing[both], packed[both], strict=True)
        ]
    return pd.Series(merged, index=existing.index, dtype="string")
