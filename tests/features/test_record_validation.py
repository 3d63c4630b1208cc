"""The plain-record path of validation gives what the vectorised path gives, row for
row: the same typed valid rows, in the same order, and the same rejected rows with the
same reasons and raw rows (hypothesis over plain, odd and bad records)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.data.contracts import CONTRACTS, EVENT_TYPES, EVENTS, RowLimits
from features.data.readers import records_frame
from features.data.record_validation import type_records
from features.data.validation import Validated, validate
from tests.conftest import NOW

LIMITS = RowLimits(max_field_length=12, max_text_length=40, max_json_bytes=60)

PLAIN = {
    "event_id": "e1",
    "ts": "2026-11-01T10:00:00Z",
    "event_type": "add_to_cart",
    "customer_id": "c1",
    "item_id": "i1",
    "quantity": 2,
    "price": 9.5,
    "properties": {"colour": "red"},
}


def _both(records: list[dict[str, Any]], kind: str = "events") -> tuple[Validated, Validated]:
    contract = CONTRACTS[kind]
    skew = timedelta(days=1)
    full = validate(
        records_frame(records),
        np.arange(len(records), dtype=np.int64),
        contract,
        now=NOW,
        max_future_skew=skew,
        limits=LIMITS,
    )
    fast = type_records(records, contract, now=NOW, max_future_skew=skew, limits=LIMITS).validated()
    return full, fast


def _assert_same(full: Validated, fast: Validated) -> None:
    pd.testing.assert_frame_equal(fast.valid, full.valid)
    np.testing.assert_array_equal(fast.valid_lines, full.valid_lines)
    pd.testing.assert_frame_equal(
        fast.rejected.reset_index(drop=True),
        full.rejected.reset_index(drop=True),
        check_dtype=False,
    )


_texts = st.one_of(
    st.sampled_from(["c1", "i9", "abc-DEF_1", "x" * 12, "x" * 13, " padded", "tab\t", ""]),
    st.sampled_from(["   ", "né", "ünï", "naïve ", "\u00a0nbsp", "\ud800", "42"]),
    st.text(max_size=15),
)
_times = st.one_of(
    st.sampled_from(
        [
            "2026-11-01T10:00:00Z",
            "2026-11-01T10:00:00.123456Z",
            "2026-11-01T10:00:00.5+02:00",
            "2026-11-01T10:00:00-05:30",
            "2026-11-01T10:00:00",
            "2026-11-01 10:00:00",
            "2026-11-01T10:00:00.1234567Z",
            "2026-11-01",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "2026-12-02T00:00:00Z",
            "2026-11-31T10:00:00Z",
            "2026-11-01T25:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2019-10-01 00:00:00 UTC",
            "yesterday",
        ]
    ),
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.isoformat().replace("+00:00", "Z")),
)
_numbers = st.one_of(
    st.integers(min_value=-3, max_value=5),
    st.integers(min_value=2**53 - 2, max_value=2**53 + 2),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1),
    st.sampled_from(["3", "2.5", "NaN", True]),
)
_json = st.one_of(
    st.dictionaries(st.text(max_size=4), st.one_of(st.integers(), st.text(max_size=8)), max_size=3),
    st.sampled_from(['{"a": 1}', "{}", "[1]", "not json", "", "  ", '{"a": NaN}', "1"]),
    st.lists(st.integers(), max_size=2),
    st.just({"nan": float("nan")}),
    st.just({"long": "y" * 80}),
)
_VALUES: dict[str, Any] = {
    "event_id": _texts,
    "ts": _times,
    "event_type": st.one_of(st.sampled_from(EVENT_TYPES), st.sampled_from(["bogus", "Purchase"])),
    "customer_id": _texts,
    "anonymous_id": _texts,
    "item_id": _texts,
    "quantity": _numbers,
    "price": _numbers,
    "propensity": _numbers,
    "channel": st.sampled_from(["web", "email", "fax", " web"]),
    "properties": _json,
}
_ODD_KEYS = st.sampled_from([" event_id", "unknown", "customer_id ", ""])


@st.composite
def _record(draw: st.DrawFn) -> dict[str, Any]:
    """A plain event with up to three of its fields changed: left out, null or drawn."""
    record: dict[str, Any] = dict(PLAIN)
    changed = draw(st.lists(st.sampled_from(sorted(_VALUES)), max_size=3, unique=True))
    for name in changed:
        how = draw(st.sampled_from(["absent", "null", "drawn", "drawn"]))
        if how == "absent":
            record.pop(name, None)
        elif how == "null":
            record[name] = None
        else:
            record[name] = draw(_VALUES[name])
    if draw(st.integers(min_value=0, max_value=6)) == 0:
        record[draw(_ODD_KEYS)] = draw(st.one_of(st.none(), st.text(max_size=5), st.integers()))
    return record


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_record(), min_size=1, max_size=6))
def test_plain_and_vectorised_paths_agree_on_any_events(records):
    full, fast = _both(records)
    _assert_same(full, fast)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"customer_id": _texts},
            optional={
                "email": _texts,
                "signup_ts": _times,
                "consent_email": st.one_of(st.booleans(), st.sampled_from(["yes", "0", 1])),
                "attributes": _json,
            },
        ),
        min_size=1,
        max_size=4,
    )
)
def test_plain_and_vectorised_paths_agree_on_customers(records):
    full, fast = _both(records, "customers")
    _assert_same(full, fast)


_EDGES = {
    "customer_id": [
        "x" * 12,
        "x" * 13,
        " padded",
        "tab\t",
        "",
        "   ",
        "né",
        "naïve ",
        "\ud800",
        42,
    ],
    "ts": [
        "2026-11-01T10:00:00.123456Z",
        "2026-11-01T10:00:00.5+02:00",
        "2026-11-01T10:00:00",
        "2026-11-01 10:00:00",
        "2026-11-01T10:00:00.1234567Z",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:00:00Z",
        "2026-11-29T12:00:00Z",
        "2026-11-29T12:00:01Z",
        "2026-11-31T10:00:00Z",
        "0001-01-01T00:00:00Z",
        "2019-10-01 00:00:00 UTC",
    ],
    "quantity": [0, -1, 2**53, 2**53 + 1, 2**53 + 2, 2.0, 2.5, "3", True, float("nan")],
    "price": [0, 0.1, -0.0, -1e-9, 1e308, 2**53 + 2, float("inf"), "2.5", False],
    "propensity": [0, 1, 1.0000001, 0.3],
    "event_type": ["purchase", "Purchase", "login", "stock_change"],
    "channel": ["web", "fax", " web"],
    "properties": [{}, "{}", '{"b": 1, "a": 2}', "  ", "[1]", {"long": "y" * 80}, [1]],
}


@pytest.mark.parametrize(
    ("name", "value"), [(n, v) for n, values in _EDGES.items() for v in values], ids=repr
)
def test_plain_and_vectorised_paths_agree_on_each_edge(name, value):
    full, fast = _both([PLAIN, dict(PLAIN, **{name: value}), dict(PLAIN, event_id="e2")])
    _assert_same(full, fast)


def test_plain_rows_are_typed_without_the_vectorised_path(monkeypatch):
    """The common case never reaches pandas' validation at all."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the vectorised path ran for plain rows")

    monkeypatch.setattr("features.data.record_validation.validate", refuse)
    records = [dict(PLAIN, event_id=f"e{i}") for i in range(3)]
    result = type_records(records, EVENTS, now=NOW, limits=LIMITS).validated()
    assert result.valid["event_id"].tolist() == ["e0", "e1", "e2"]
    assert result.valid["ts"].iloc[0] == pd.Timestamp("2026-11-01T10:00:00Z")
    assert result.valid["properties"].iloc[0] == '{"colour": "red"}'
    assert result.rejected.empty


def test_a_bad_row_is_rejected_by_the_vectorised_path_beside_plain_ones():
    records = [dict(PLAIN, event_id="a"), dict(PLAIN, event_id="b", price=-1), PLAIN]
    result = type_records(records, EVENTS, now=NOW, limits=LIMITS).validated()
    assert result.valid["event_id"].tolist() == ["a", "e1"]
    assert result.valid_lines.tolist() == [0, 2]
    assert result.rejected["line_number"].tolist() == [1]
    assert result.rejected["reason"].iloc[0] == "price: '-1' is below 0"
