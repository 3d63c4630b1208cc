"""Validation never raises on what JSON or a file can hold: each row is valid or
rejected with a reason naming the field (examples for each bound, a property over
arbitrary JSON records)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.data.contracts import CONTRACTS, EVENTS, RowLimits
from features.data.online_log import OnlineEventLog
from features.data.readers import records_frame
from features.data.store import stored_schema
from features.data.validation import Validated, validate
from tests.conftest import NOW

EVENT = {
    "event_id": "e1",
    "ts": "2026-11-01T10:00:00Z",
    "event_type": "product_view",
    "customer_id": "c1",
    "item_id": "i1",
}
ROWS = {
    "events": EVENT,
    "customers": {"customer_id": "c1", "email": "a@example.com"},
    "catalog": {"item_id": "i1", "title": "Mug", "price": 9.5},
    "content": {"content_id": "s1", "slot": "subject", "text": "Hello"},
}
JSON_COLUMN = {"events": "properties", "customers": "attributes", "catalog": "properties"}
JSON_COLUMN["content"] = "attributes"


def _check(records: list[dict[str, Any]], kind: str = "events", **kw: Any) -> Validated:
    frame = records_frame(records)
    return validate(frame, np.arange(len(records)), CONTRACTS[kind], now=NOW, **kw)


def _reason(record: dict[str, Any], kind: str = "events", **kw: Any) -> str:
    result = _check([record], kind, **kw)
    assert len(result.valid) == 0, f"accepted: {record}"
    return str(result.rejected["reason"].iloc[0])


def _valid(record: dict[str, Any], kind: str = "events", **kw: Any) -> pd.Series:
    result = _check([record], kind, **kw)
    assert len(result.rejected) == 0, result.rejected["reason"].tolist()
    return result.valid.iloc[0]


# --------------------------------------------------------------------------- JSON columns
@pytest.mark.parametrize("kind", sorted(ROWS))
def test_the_json_column_takes_an_object_as_a_dict_or_as_text_stored_canonical(kind):
    column = JSON_COLUMN[kind]
    as_dict = _valid({**ROWS[kind], column: {"b": [1, 2], "a": {"x": None}}}, kind)
    as_text = _valid({**ROWS[kind], column: ' { "a" : {"x": null}, "b": [1,2] } '}, kind)
    canonical = json.dumps({"a": {"x": None}, "b": [1, 2]}, sort_keys=True)
    assert as_dict[column] == as_text[column] == canonical
    # DuckDB's JSON functions read what is stored.
    con = duckdb.connect()
    value = con.execute("SELECT json_extract(?::JSON, '$.b[1]')::INT", [as_dict[column]])
    assert value.fetchone() == (2,)
    con.close()


@pytest.mark.parametrize("kind", sorted(ROWS))
@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("notjson", "not valid JSON"),
        ('{"a": 1', "not valid JSON"),
        ("[1, 2]", "a JSON array, not a JSON object"),
        ("42", "a number, not a JSON object"),
        ('"text"', "a JSON string, not a JSON object"),
        ([1, 2], "a JSON array, not a JSON object"),
        (7, "a number, not a JSON object"),
        (True, "true/false, not a JSON object"),
        ('{"a": NaN}', "NaN or Infinity"),
        ({"a": float("inf")}, "NaN or Infinity"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_anything_but_a_json_object_is_rejected_naming_the_column(kind, value, fragment):
    column = JSON_COLUMN[kind]
    reason = _reason({**ROWS[kind], column: value}, kind)
    assert reason.startswith(f"{column}: ") and fragment in reason
    assert len(reason) < 200  # the value is not quoted back


def test_a_bad_properties_value_rejects_its_row_only():
    records = [
        {**EVENT, "event_id": "good", "properties": {"coupon": "X"}},
        {**EVENT, "event_id": "bad", "properties": "notjson"},
    ]
    result = _check(records)
    assert result.valid["event_id"].tolist() == ["good"]
    assert result.rejected["line_number"].tolist() == [1]
    assert json.loads(result.rejected["raw"].iloc[0])["properties"] == "notjson"


def test_unknown_columns_fold_into_properties_as_valid_json():
    row = _valid(
        {**EVENT, "properties": {"a": 1}, "coupon": "X", "meta": {"k": [1, "two"]}, "n": 3}
    )
    assert json.loads(row["properties"]) == {
        "a": 1,
        "coupon": "X",
        "meta": {"k": [1, "two"]},
        "n": 3,
    }
    # An unknown column holding NaN cannot be stored as JSON: the row says so.
    frame = pd.DataFrame([{**EVENT, "score": float("inf")}])
    result = validate(frame, np.arange(1), EVENTS, now=NOW)
    assert "properties: holds NaN or Infinity" in result.rejected["reason"].iloc[0]


def test_properties_larger_than_the_bound_are_rejected():
    big = {"blob": "x" * 70_000}
    assert "properties: 70,012 bytes of JSON, more than 65,536" in _reason(
        {**EVENT, "properties": big}
    )
    # Unknown columns count too, even a very long key.
    assert "max_properties_bytes" in _reason({**EVENT, "k" * 100_000: 1})
    small = RowLimits(max_json_bytes=10)
    assert "more than 10 (max_properties_bytes)" in _reason(
        {**EVENT, "properties": {"a": "bcdefgh"}}, limits=small
    )


# --------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("column", ["price", "quantity", "propensity"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "NaN", "Infinity"])
def test_nan_and_infinity_are_refused_in_number_fields(column, value):
    reason = _reason({**EVENT, "event_type": "purchase", column: value})
    assert reason.startswith(f"{column}: ") and "is not a finite number" in reason


def test_a_json_nan_is_refused_but_a_missing_number_is_not():
    assert pd.isna(_valid({**EVENT, "price": None})["price"])
    assert "price" in _reason({**EVENT, "price": float("nan")})


@pytest.mark.parametrize("value", [10**30, 1e300, -(2**60)])
def test_integers_beyond_float_precision_are_refused(value):
    assert _reason({**EVENT, "quantity": value}).startswith("quantity: ")


def test_numbers_in_bounds_pass():
    row = _valid({**EVENT, "event_type": "purchase", "quantity": 2.0, "price": 0, "propensity": 1})
    assert (row["quantity"], row["price"], row["propensity"]) == (2, 0.0, 1.0)


# --------------------------------------------------------------------------- timestamps
@pytest.mark.parametrize("ts", ["0001-01-01", "1969-12-31T23:59:59Z", "1000-01-01T00:00:00Z"])
def test_events_before_the_earliest_time_are_refused(ts):
    reason = _reason({**EVENT, "ts": ts})
    assert reason.startswith("ts: ") and "(min_event_ts)" in reason


def test_events_far_in_the_future_are_refused():
    for ts in ("9999-12-31T00:00:00Z", "2262-04-12T00:00:00Z", "3000-01-01"):
        assert "ts: " in _reason({**EVENT, "ts": ts})


def test_the_earliest_event_time_is_a_setting():
    limits = RowLimits(min_event_ts=datetime(2026, 11, 2, tzinfo=UTC))
    assert "before 2026-11-02T00:00:00Z (min_event_ts)" in _reason(EVENT, limits=limits)
    assert _valid({**EVENT, "ts": "1970-01-01T00:00:00Z"})["ts"] == pd.Timestamp(0, tz="UTC")


def test_other_timestamps_may_be_old_but_not_beyond_what_pandas_reads():
    assert (
        _valid({**ROWS["catalog"], "created_ts": "1922-03-04"}, "catalog")["created_ts"].year
        == 1922
    )
    reason = _reason({**ROWS["catalog"], "created_ts": "1500-01-01"}, "catalog")
    assert reason.startswith("created_ts: ")
    assert _reason({**ROWS["customers"], "signup_ts": "0001-01-01"}, "customers").startswith(
        "signup_ts: "
    )


def test_timestamp_text_of_any_length_is_judged_without_parsing_it_all():
    reason = _reason({**EVENT, "ts": "2026-11-01" + " " * 10 + "x" * 1_000_000})
    assert reason.startswith("ts: ") and "is not a timestamp" in reason and len(reason) < 200


# --------------------------------------------------------------------------- ids and text
def test_ids_longer_than_the_bound_are_refused_without_quoting_them():
    reason = _reason({**EVENT, "event_id": "x" * 1_000_000})
    assert reason.startswith("event_id: ")
    assert "1,000,000 characters long, more than 256 (max_field_length)" in reason
    assert len(reason) < 200
    assert "item_id: " in _reason({**EVENT, "item_id": "i" * 257})
    assert _valid({**EVENT, "item_id": "i" * 256})["item_id"] == "i" * 256
    assert "more than 8 (max_field_length)" in _reason(EVENT, limits=RowLimits(max_field_length=8))


def test_free_text_has_its_own_longer_bound():
    row = {**ROWS["content"], "text": "Sale! " * 100}
    assert len(_valid(row, "content")["text"]) > 256
    reason = _reason({**ROWS["content"], "text": "y" * 5000}, "content")
    assert reason.startswith("text: ") and "(max_text_length)" in reason


@pytest.mark.parametrize("blank", ["", " ", "\t "])
def test_empty_ids_count_as_missing(blank):
    assert _reason({**EVENT, "event_id": blank}) == "event_id: missing (required)"
    reason = _reason({**EVENT, "customer_id": blank, "anonymous_id": blank})
    assert reason == "at least one of customer_id, anonymous_id is required"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"a": 1}, "customer_id: a JSON object is not text"),
        ([1, 2], "customer_id: a JSON array is not text"),
        ("\ud800", "customer_id: holds characters that are not Unicode text"),
    ],
)
def test_values_that_are_not_text_are_refused_in_text_fields(value, fragment):
    assert fragment in _reason({**EVENT, "customer_id": value, "anonymous_id": "a1"})


def test_non_scalar_values_are_refused_in_typed_fields():
    assert "ts: a JSON object is not a timestamp" in _reason({**EVENT, "ts": {"a": 1}})
    assert "price: a JSON array is not a number" in _reason({**EVENT, "price": [1]})
    reason = _reason({**ROWS["customers"], "consent_email": {"yes": True}}, "customers")
    assert "consent_email: a JSON object is not true/false" in reason


# --------------------------------------------------------------------------- keys
def test_blank_and_padded_keys():
    # A key padded with spaces is the field; a blank key is an unknown column.
    row = _valid({**EVENT, " event_id ": "e9", "event_id": None, "": "x"})
    assert row["event_id"] == "e9"
    assert json.loads(row["properties"]) == {"": "x"}
    # Two keys that differ only in spaces, both given: which one is meant is unknown.
    reason = _reason({**EVENT, " event_id": "e2"})
    assert reason.startswith("'event_id': given more than once")
    assert "a blank key: given more than once" in _reason({**EVENT, "": 1, " ": 2})


def test_a_long_key_is_kept_within_the_properties_bound():
    row = _valid({**EVENT, "k" * 1000: "v"})
    assert json.loads(row["properties"]) == {"k" * 1000: "v"}


# --------------------------------------------------------------------------- POST /events
def test_the_online_log_takes_json_objects_and_rejects_only_bad_events(tmp_path):
    log = OnlineEventLog(tmp_path / "events.db")
    try:
        appended = log.append(
            [
                {**EVENT, "event_id": "p1", "properties": {"coupon": "X", "n": 1}},
                {**EVENT, "event_id": "p2", "properties": "notjson"},
                {**EVENT, "event_id": "p3", "ts": "0001-01-01"},
                {**EVENT, "event_id": "p4", "": 1, " ": 2},
                {**EVENT, "event_id": "p5", "price": float("nan")},
                {**EVENT, "event_id": "x" * 1_000_000},
            ],
            now=NOW,
            max_future_skew=timedelta(days=1),
        )
        assert [row["event_id"] for row in appended.accepted] == ["p1"]
        reasons = dict(zip(appended.rejected["index"], appended.rejected["reason"], strict=True))
        assert sorted(reasons) == [1, 2, 3, 4, 5]
        for index, field in [(1, "properties"), (2, "ts"), (4, "price"), (5, "event_id")]:
            assert reasons[index].startswith(f"{field}: ")
        pending, _ = log.pending()
        assert pending["event_id"].tolist() == ["p1"]
        assert json.loads(pending["properties"].iloc[0]) == {"coupon": "X", "n": 1}
        assert len(log.quarantined()) == 5
    finally:
        log.close()


def test_events_the_log_accepted_are_read_back_whatever_the_limits_are_now(tmp_path):
    """Posted under wider limits (a 300-character id) or stamped ahead of the reader's
    clock, a logged event is still pending and replayed: none is lost on the way back."""
    log = OnlineEventLog(tmp_path / "events.db")
    try:
        long_id = "x" * 300
        appended = log.append(
            [{**EVENT, "event_id": long_id, "ts": "2026-11-29T06:00:00Z"}],
            now=NOW,
            max_future_skew=timedelta(days=1),
            limits=RowLimits(max_field_length=1000),
        )
        assert len(appended.accepted) == 1
        pending, through = log.pending()
        assert pending["event_id"].tolist() == [long_id]
        replayed, _ = log.since(0)
        assert [row["event_id"] for row in replayed] == [long_id]
        assert replayed[0]["ts"] == datetime(2026, 11, 29, 6, tzinfo=UTC)
        assert through == 1
    finally:
        log.close()


# --------------------------------------------------------------------------- property
NASTY = [
    "",
    " ",
    "\ud800",
    "NaN",
    "Infinity",
    "-inf",
    "0001-01-01",
    "9999-12-31T00:00:00Z",
    "2026-11-01T10:00:00Z",
    "2026-11-01 09:00:00 UTC",
    "x" * 300,
    "{",
    "[]",
    '{"a": NaN}',
    '{"a": 1}',
    "true",
    "1e400",
    "purchase",
    "product_view",
    "email",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(NASTY)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
field_names = sorted({c for contract in CONTRACTS.values() for c in contract.names})
keys = (
    st.sampled_from(field_names)
    | st.sampled_from(["", " ", " ts ", "k" * 300])
    | st.text(max_size=8)
)


@st.composite
def records(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]]]:
    kind = draw(st.sampled_from(sorted(ROWS)))
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        base = dict(ROWS[kind]) if draw(st.booleans()) else {}
        base.update(draw(st.dictionaries(keys, json_values, max_size=6)))
        rows.append(base)
    return kind, rows


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_validate_never_raises_and_partitions_the_rows(drawn):
    kind, rows = drawn
    contract = CONTRACTS[kind]
    lines = np.arange(10, 10 + len(rows), dtype=np.int64)
    result = validate(records_frame(rows), lines, contract, now=NOW)

    assert len(result.valid) + len(result.rejected) == len(rows)
    assert sorted([*result.valid_lines, *result.rejected["line_number"]]) == lines.tolist()
    assert list(result.valid.columns) == contract.names
    assert all(isinstance(r, str) and r for r in result.rejected["reason"])
    for raw in result.rejected["raw"]:
        raw.encode("utf-8")
        assert isinstance(json.loads(raw), dict)
    # What is valid can be stored as it is, and read back.
    pa.Table.from_pandas(result.valid, schema=contract.arrow_schema(), preserve_index=False)
    extra = JSON_COLUMN[kind]
    for text in result.valid[extra].dropna():
        assert isinstance(json.loads(text), dict) and len(text.encode()) <= 65_536
    for column in contract.columns:
        values = result.valid[column.name].dropna()
        if column.dtype in ("int", "float"):
            assert all(math.isfinite(float(v)) for v in values)
        if column.dtype == "string":
            assert all(0 < len(v) <= 4096 for v in values)
        if column.dtype == "timestamp":
            assert all(pd.Timestamp("1677-09-22", tz="UTC") < v for v in values)
    if kind == "events" and len(result.valid):
        assert (result.valid["ts"] >= pd.Timestamp("1970-01-01", tz="UTC")).all()
        assert stored_schema(contract)  # the events schema the store writes
