"""The ``attr_`` columns of the customer table: the customer record's ``attributes``
JSON as typed columns, personal data (:data:`features.pii.masking.NOT_FEATURES`) and
other identifying keys left out."""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.data.store import STRING_DTYPE, fetch_frame
from features.errors import InputError
from features.pii.masking import NOT_FEATURES

ATTRIBUTE_PREFIX = "attr_"
_NUMERIC_JSON = ("BIGINT", "UBIGINT", "DOUBLE", "BOOLEAN")


def _attribute_columns(
    con: duckdb.DuckDBPyConnection,
    attributes: pd.Series,
    personal: np.ndarray,
    excluded: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The customer record's ``attributes`` JSON as typed columns ``attr_<key>``.

    Keys in ``excluded`` (lower-cased: the fields identity resolution compares) and
    in :data:`~features.pii.masking.NOT_FEATURES` (contact data, names, street
    address, date of birth) identify a person and describe no taste: identity
    resolution may read them, but they never become features, and so never reach a
    snapshot, a model or a segment.

    A key whose every value is a JSON number or boolean is a number (``float64``,
    booleans 0/1); any other key is text (a JSON string as is, a nested value as its
    JSON), which models encode as categories. Keys are lower-cased with anything but
    letters, digits and ``_`` made ``_``. Null for customers without consent to
    profiling, and where the key is absent.

    Raises
    ------
    InputError
        A value that is not a JSON object, or two keys that name one column.
    """
    n = len(attributes)
    con.register(
        "attribute_rows",
        pa.table(
            {
                "r": np.arange(n, dtype=np.int64),
                "attributes": pa.array(attributes.where(personal, None), pa.string()),
            }
        ),
    )
    bad = fetch_frame(
        con,
        "SELECT attributes FROM attribute_rows WHERE attributes IS NOT NULL AND NOT "
        "coalesce(json_valid(attributes) AND json_type(attributes::JSON) = 'OBJECT', false) "
        "LIMIT 3",
    )
    if len(bad):
        raise InputError("attributes", bad["attributes"].tolist(), "must be JSON objects")
    values = fetch_frame(
        con,
        """
        SELECT t.r, j.key, j.type,
               CASE WHEN j.type = 'BOOLEAN' THEN CAST(j.value::VARCHAR = 'true' AS DOUBLE)
                    WHEN j.type IN ('BIGINT', 'UBIGINT', 'DOUBLE')
                    THEN CAST(j.value::VARCHAR AS DOUBLE) END AS number,
               CASE WHEN j.type = 'VARCHAR' THEN j.value ->> '$'
                    ELSE j.value::VARCHAR END AS text
        FROM attribute_rows t, json_each(t.attributes) j
        WHERE t.attributes IS NOT NULL AND j.type <> 'NULL'
        ORDER BY j.key, t.r
        """,
    )
    out: dict[str, Any] = {}
    named: dict[str, str] = {}
    for key, rows in values.groupby("key", sort=True):
        if str(key).lower() in excluded or str(key).lower() in NOT_FEATURES:
            continue
        name = ATTRIBUTE_PREFIX + "".join(
            ch if ch.isascii() and (ch.isalnum() or ch == "_") else "_" for ch in str(key).lower()
        )
        if name in named:
            raise InputError("attributes", [named[name], key], f"two keys name one column {name}")
        named[name] = str(key)
        where = rows["r"].to_numpy(dtype=np.int64)
        if rows["type"].isin(_NUMERIC_JSON).all():
            column = np.full(n, np.nan)
            column[where] = rows["number"].to_numpy(dtype=float)
            out[name] = column
        else:
            text = np.full(n, None, dtype=object)
            text[where] = rows["text"].to_numpy(dtype=object)
            out[name] = pd.array(text, dtype=STRING_DTYPE)
    return out
