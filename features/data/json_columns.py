"""JSON columns (``properties``, ``attributes``): a JSON object in, canonical JSON text out.

A value is a JSON object, given as a dict (JSON posts, JSONL, Parquet structs) or as text
holding one; it is stored as canonical JSON text (``json.dumps`` with sorted keys),
which DuckDB's JSON functions read. Unknown columns of a row are folded into its object.
Parsing is per value (over the distinct texts of a chunk). Nothing here raises on a
value: what cannot be stored comes back with the reason.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import pandas as pd

from features.data.contracts import RowLimits

NOT_UNICODE = "holds characters that are not Unicode text (lone surrogates)"


def json_texts(
    raw: pd.Series, extras: pd.DataFrame | None, limits: RowLimits
) -> tuple[np.ndarray, np.ndarray]:
    """Each value as canonical JSON text; unknown columns (``extras``) folded in.

    A value is a JSON object given as a dict or as text; anything else is refused with
    what is wrong. So is a result longer than ``limits.max_json_bytes``.

    Returns
    -------
    texts : numpy.ndarray of object, shape (n,)
        Canonical JSON, or None (missing or refused).
    reasons : numpy.ndarray of object, shape (n,)
        What is wrong with each refused value ('' for the others).
    """
    n = len(raw)
    values = raw.to_numpy(dtype=object)
    present = np.flatnonzero(raw.notna().to_numpy(dtype=bool))
    texts = np.full(n, None, dtype=object)
    reasons = np.full(n, "", dtype=object)
    given = values[present]
    if extras is None and pd.api.types.infer_dtype(given, skipna=True) in ("string", "empty"):
        # The common case (CSV, JSON text): each distinct text read and written once.
        codes, uniques = pd.factorize(given)
        done = [canonical_json(text, limits.max_json_bytes) for text in uniques]
        if done:
            texts[present] = _objects([t for t, _ in done])[codes]
            reasons[present] = _objects([r for _, r in done])[codes]
    else:
        objects: list[dict[str, Any] | None] = [None] * n
        parsed: dict[str, tuple[dict[str, Any] | None, str]] = {}
        for i in present:
            value = values[i]
            if isinstance(value, str):
                if value not in parsed:
                    parsed[value] = _json_object(value)
                objects[i], reasons[i] = parsed[value]
            elif isinstance(value, dict):
                objects[i] = value
            else:
                reasons[i] = f"{json_kind(value)}, not a JSON object"
        if extras is not None:
            objects = _fold_extras(objects, extras)
        for row, obj in enumerate(objects):
            if obj is not None and not reasons[row]:
                texts[row], reasons[row] = dump_json(obj, limits.max_json_bytes)
    texts[reasons != ""] = None
    return texts, reasons


def canonical_json(text: str, max_bytes: int) -> tuple[str | None, str]:
    """(canonical JSON of the object ``text`` holds, '') or (None, what is wrong)."""
    obj, problem = _json_object(text)
    if obj is None:
        return None, problem
    return dump_json(obj, max_bytes)


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _json_object(text: str) -> tuple[dict[str, Any] | None, str]:
    """(the object, '') or (None, what is wrong with ``text``)."""
    text = text.strip()
    if not text:
        return None, ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"not valid JSON ({error.msg} at character {error.pos})"
    except RecursionError:
        return None, "JSON nested too deeply"
    if not isinstance(value, dict):
        return None, f"{json_kind(value)}, not a JSON object"
    return value, ""


def json_kind(value: Any) -> str:
    """What a value is, in JSON's words where it is a JSON value."""
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list | tuple | np.ndarray):
        return "a JSON array"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a JSON string"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _fold_extras(
    objects: list[dict[str, Any] | None], extras: pd.DataFrame
) -> list[dict[str, Any] | None]:
    """Each row's unknown columns merged into its object: a blank or null value as
    null, a key the row's JSON record lacked (``pd.NA``) left out."""
    names = [str(c) for c in extras.columns]
    columns = [extras.iloc[:, j].to_numpy(dtype=object) for j in range(len(names))]
    out: list[dict[str, Any] | None] = []
    for i, obj in enumerate(objects):
        folded = {
            name: None if is_missing(column[i]) else column[i]
            for name, column in zip(names, columns, strict=True)
            if column[i] is not pd.NA
        }
        # A row that gave neither stays without one, whatever other rows gave.
        out.append({**obj, **folded} if obj is not None else (folded or None))
    return out


def dump_json(obj: dict[str, Any], max_bytes: int) -> tuple[str | None, str]:
    """(canonical JSON text, '') or (None, why it cannot be stored)."""
    try:
        text = _ENCODER.encode(obj)
    except ValueError:
        return None, "holds NaN or Infinity, which JSON cannot store"
    except RecursionError:
        return None, "JSON nested too deeply"
    except TypeError as error:
        return None, f"cannot be written as JSON ({error})"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None, NOT_UNICODE
    if size > max_bytes:
        return None, f"{size:,} bytes of JSON, more than {max_bytes:,} (max_properties_bytes)"
    return text, ""


def _json_default(value: Any) -> Any:
    """JSON for the non-JSON values a Parquet file or an adapter may hand over."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dt.date | dt.datetime | dt.time | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    raise TypeError(f"a {type(value).__name__} is not JSON")


_ENCODER = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, allow_nan=False, default=_json_default
)


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return not value.strip()
    return False
