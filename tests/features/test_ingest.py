"""Ingest: every malformed row quarantined with its reason, idempotency, formats, atomicity."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.data.ingest import ingest_file
from features.data.store import EventStore
from features.errors import InputError
from tests.conftest import NOW

HEADER = "event_id,ts,event_type,customer_id,anonymous_id,item_id,quantity,price,campaign,coupon"
GOOD_ROWS = [
    "e1,2026-11-01T10:00:00Z,product_view,c1,,i1,,,,",
    "e2,2026-11-01T10:05:00+01:00,add_to_cart,c1,,i1,1,9.99,,",
    "e3,2026-11-02 09:00:00 UTC,purchase,c1,,i1,1,9.99,,SAVE10",
    "e4,2026-11-02T09:00:00Z,page_view,,anon-9,,,,spring,",
    "e5,2026-11-03T09:00:00Z,login,c2,anon-9,,,,,",
]
# Each malformed row and the reason (a fragment) it must be quarantined with.
BAD_ROWS = {
    "b1,yesterday,product_view,c1,,i1,,,,": "ts: 'yesterday' is not a timestamp",
    "b2,2026-13-45T99:00:00Z,product_view,c1,,i1,,,,": "ts: '2026-13-45T99:00:00Z'",
    "b3,2026-11-01T10:00:00Z,teleport,c1,,i1,,,,": "event_type: 'teleport' is not one of",
    "b4,2026-11-01T10:00:00Z,purchase,c1,,i1,1,-5.00,,": "price: '-5.00' is below 0",
    "b5,2026-11-01T10:00:00Z,product_view,,,i1,,,,": (
        "at least one of customer_id, anonymous_id is required"
    ),
    ",2026-11-01T10:00:00Z,product_view,c1,,i1,,,,": "event_id: missing (required)",
    "b7,2026-11-01T10:00:00Z,add_to_cart,c1,,i1,two,,,": "quantity: 'two' is not an integer",
    "b8,2026-11-01T10:00:00Z,add_to_cart,c1,,,1,,,": "item_id: required for add_to_cart events",
    "b9,2026-11-01T10:00:00Z,login,c1,,,,,,": "both required for login events",
    "b10,2027-06-01T10:00:00Z,page_view,c1,,,,,,": "is in the future",
    "b11,2026-11-01T10:00:00Z,page_view,c1": "line has 4 fields, expected 10",
}


def _write_events_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def _ingest(path: Path, store: EventStore, kind: str = "events", **kw: object):
    return ingest_file(path, kind=kind, store=store, now=NOW, **kw)  # type: ignore[arg-type]


def test_each_malformed_row_is_quarantined_with_its_reason(tmp_path, store):
    path = _write_events_csv(tmp_path / "events.csv", GOOD_ROWS + list(BAD_ROWS))
    report = _ingest(path, store)

    assert report.rows_read == len(GOOD_ROWS) + len(BAD_ROWS)
    assert report.accepted == len(GOOD_ROWS)
    assert report.quarantined == len(BAD_ROWS)
    assert sorted(store.read("events")["event_id"]) == sorted(r.split(",")[0] for r in GOOD_ROWS)

    quarantine = store.read("quarantine/events", current=False)
    by_line = dict(zip(quarantine["line_number"], quarantine["reason"], strict=True))
    for offset, (row, fragment) in enumerate(BAD_ROWS.items()):
        line = 2 + len(GOOD_ROWS) + offset  # header is line 1
        assert fragment in by_line[line], (row, by_line[line])
    # The raw row is kept verbatim so it can be fixed and replayed.
    raw = quarantine.set_index("line_number").loc[2 + len(GOOD_ROWS), "raw"]
    assert json.loads(raw)["ts"] == "yesterday"


def test_a_row_with_several_faults_lists_every_reason(tmp_path, store):
    path = _write_events_csv(tmp_path / "e.csv", ["x1,never,teleport,,,i1,,-1,,"])
    _ingest(path, store)
    reason = store.read("quarantine/events", current=False)["reason"].iloc[0]
    for fragment in ("ts: 'never'", "event_type: 'teleport'", "price: '-1'", "at least one of"):
        assert fragment in reason


def test_timestamps_are_normalised_to_utc(tmp_path, store):
    _ingest(_write_events_csv(tmp_path / "e.csv", GOOD_ROWS), store)
    events = store.read("events").set_index("event_id")
    assert str(events["ts"].dt.tz) == "UTC"
    assert events.loc["e2", "ts"] == pd.Timestamp("2026-11-01T09:05:00Z")
    assert events.loc["e3", "ts"] == pd.Timestamp("2026-11-02T09:00:00Z")


def test_unknown_columns_are_kept_in_properties(tmp_path, store):
    _ingest(_write_events_csv(tmp_path / "e.csv", GOOD_ROWS), store)
    events = store.read("events").set_index("event_id")
    assert json.loads(events.loc["e3", "properties"]) == {"campaign": None, "coupon": "SAVE10"}
    assert json.loads(events.loc["e4", "properties"])["campaign"] == "spring"


def test_reingesting_the_same_file_stores_nothing_new(tmp_path, store):
    path = _write_events_csv(tmp_path / "e.csv", GOOD_ROWS + list(BAD_ROWS))
    first = _ingest(path, store)
    second = _ingest(path, store)
    assert first.accepted == len(GOOD_ROWS)
    assert second.accepted == 0
    assert second.duplicates == len(GOOD_ROWS)
    assert second.already_quarantined == len(BAD_ROWS)
    assert second.nothing_new and "nothing new" in second.summary()
    assert store.count("events") == len(GOOD_ROWS)
    assert store.count("quarantine/events") == len(BAD_ROWS)


def test_duplicates_inside_one_file_are_stored_once(tmp_path, store):
    rows = [*GOOD_ROWS, GOOD_ROWS[0], GOOD_ROWS[0]]
    report = _ingest(_write_events_csv(tmp_path / "e.csv", rows), store)
    assert report.accepted == len(GOOD_ROWS)
    assert report.duplicates == 2
    assert store.read("events")["event_id"].is_unique


def test_duplicates_across_chunks_are_stored_once(tmp_path, store):
    rows = [f"k{i},2026-11-01T10:00:00Z,page_view,c{i % 7},,,,,," for i in range(2500)]
    rows += rows[:1200]  # repeats fall into later chunks
    report = _ingest(_write_events_csv(tmp_path / "e.csv", rows), store, chunk_rows=1000)
    assert report.accepted == 2500
    assert report.duplicates == 1200
    assert store.count("events") == 2500


def test_events_are_partitioned_by_event_date(tmp_path, store):
    _ingest(_write_events_csv(tmp_path / "e.csv", GOOD_ROWS), store)
    folders = sorted({f.parent.name for f in store.files("events")})
    assert folders == ["date=2026-11-01", "date=2026-11-02", "date=2026-11-03"]


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "jsonl", "jsonl.gz", "parquet"])
def test_round_trip_of_each_format(tmp_path, store, fmt):
    frame = pd.DataFrame(
        {
            "event_id": ["r1", "r2", "r3"],
            "ts": ["2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z", "2026-11-02T12:30:00Z"],
            "event_type": ["product_view", "purchase", "email_open"],
            "customer_id": ["c1", "c1", "c2"],
            "item_id": ["i1", "i1", None],
            "quantity": [None, 2, None],
            "price": [None, 19.5, None],
            "campaign_id": [None, None, "cmp1"],
            "properties": [None, '{"coupon": "X"}', None],
        }
    )
    path = tmp_path / f"events.{fmt}"
    if fmt.startswith("csv"):
        frame.to_csv(path, index=False)
    elif fmt.startswith("jsonl"):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    report = _ingest(path, store)
    assert (report.accepted, report.quarantined) == (3, 0)
    stored = store.read("events").sort_values("event_id").reset_index(drop=True)
    assert list(stored["event_id"]) == ["r1", "r2", "r3"]
    assert stored["ts"].tolist() == pd.to_datetime(frame["ts"], utc=True).tolist()
    assert stored.loc[1, "quantity"] == 2
    assert stored.loc[1, "price"] == pytest.approx(19.5)
    assert json.loads(stored.loc[1, "properties"]) == {"coupon": "X"}
    assert stored.loc[2, "campaign_id"] == "cmp1"
    assert pd.isna(stored.loc[0, "price"])


def test_jsonl_nested_properties_and_bad_lines(tmp_path, store):
    path = tmp_path / "e.jsonl.gz"
    lines = [
        json.dumps(
            {
                "event_id": "j1",
                "ts": "2026-11-01T10:00:00Z",
                "event_type": "page_view",
                "anonymous_id": "a1",
                "properties": {"url": "/home"},
            }
        ),
        "{not json",
        "[1, 2]",
    ]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    report = _ingest(path, store)
    assert (report.accepted, report.quarantined) == (1, 2)
    assert json.loads(store.read("events")["properties"].iloc[0]) == {"url": "/home"}
    reasons = store.read("quarantine/events", current=False).sort_values("line_number")
    assert reasons["line_number"].tolist() == [2, 3]
    assert "not valid JSON" in reasons["reason"].iloc[0]
    assert "must be a JSON object" in reasons["reason"].iloc[1]


def test_interrupted_ingest_leaves_the_store_as_it_was(tmp_path, store, monkeypatch):
    _ingest(_write_events_csv(tmp_path / "a.csv", GOOD_ROWS[:2]), store)
    before = store.read("events")
    manifest_before = (store.root / "_manifest.json").read_text()

    def crash(self, batch):  # the process dies after the parts are written
        raise KeyboardInterrupt

    monkeypatch.setattr(EventStore, "_commit", crash)
    with pytest.raises(KeyboardInterrupt):
        _ingest(_write_events_csv(tmp_path / "b.csv", GOOD_ROWS + list(BAD_ROWS)), store)
    monkeypatch.undo()

    assert (store.root / "_manifest.json").read_text() == manifest_before
    pd.testing.assert_frame_equal(store.read("events"), before)
    assert store.count("quarantine/events") == 0
    # A later ingest completes the job, and no orphan part is left behind.
    report = _ingest(_write_events_csv(tmp_path / "b.csv", GOOD_ROWS + list(BAD_ROWS)), store)
    assert report.accepted == len(GOOD_ROWS) - 2
    on_disk = {str(p.relative_to(store.root)) for p in store.root.rglob("part-*.parquet")}
    committed = {rel for rels in store.manifest().values() for rel in rels}
    assert on_disk == committed


def test_files_left_by_a_killed_ingest_are_invisible_then_removed(tmp_path, store):
    _ingest(_write_events_csv(tmp_path / "a.csv", GOOD_ROWS), store)
    orphan = store.root / "events" / "date=2026-11-01" / "part-dead-00000.parquet"
    pd.DataFrame({"event_id": ["ghost"]}).to_parquet(orphan)
    assert "ghost" not in set(store.read("events")["event_id"])
    _ingest(_write_events_csv(tmp_path / "b.csv", GOOD_ROWS[:1]), store)
    assert not orphan.exists()


def test_dimension_reingest_keeps_versions_and_current_state(tmp_path, store):
    header = "item_id,title,category,brand,price,in_stock,created_ts,colour"
    tee = "i2,Tee,apparel,Zed,15,1,,"
    v1 = [header, "i1,Mug,home,Acme,9.5,true,2026-01-01T00:00:00Z,red", tee]
    v2 = [header, "i1,Mug,home,Acme,9.5,false,2026-01-01T00:00:00Z,red", tee]
    (tmp_path / "c1.csv").write_text("\n".join(v1) + "\n")
    (tmp_path / "c2.csv").write_text("\n".join(v2) + "\n")
    first = _ingest(tmp_path / "c1.csv", store, kind="catalog")
    again = _ingest(tmp_path / "c1.csv", store, kind="catalog")
    changed = _ingest(tmp_path / "c2.csv", store, kind="catalog")
    assert (first.accepted, again.accepted, again.duplicates) == (2, 0, 2)
    assert (changed.accepted, changed.duplicates) == (1, 1)
    current = store.read("catalog").set_index("item_id")
    assert not current.loc["i1", "in_stock"] and current.loc["i2", "in_stock"]
    assert json.loads(current.loc["i1", "properties"]) == {"colour": "red"}
    history = store.read("catalog", current=False)
    assert history[history["item_id"] == "i1"]["in_stock"].tolist().count(True) == 1
    assert len(history) == 3


def test_customers_booleans_and_bad_consent_value(tmp_path, store):
    path = tmp_path / "customers.csv"
    path.write_text(
        "customer_id,email,consent_email,consent_personalization,signup_ts\n"
        "c1,a@x.com,true,false,2026-01-01T00:00:00Z\n"
        "c2,b@x.com,maybe,yes,2026-01-01T00:00:00Z\n"
    )
    report = _ingest(path, store, kind="customers")
    assert (report.accepted, report.quarantined) == (1, 1)
    reason = store.read("quarantine/customers", current=False)["reason"].iloc[0]
    assert reason == "consent_email: 'maybe' is not true/false"


def test_future_skew_is_configurable(tmp_path, store):
    row = "f1,2026-11-30T00:00:00Z,page_view,c1,,,,,,"
    path = _write_events_csv(tmp_path / "e.csv", [row])
    report = _ingest(path, store, max_future_skew=timedelta(hours=1))
    assert report.quarantined == 1


def test_bad_arguments_name_the_field(tmp_path, store):
    with pytest.raises(InputError, match="kind='orders'"):
        _ingest(tmp_path / "x.csv", store, kind="orders")
    with pytest.raises(InputError, match="path=.*no such file"):
        _ingest(tmp_path / "missing.csv", store)
    with pytest.raises(InputError, match="source='shopify'"):
        _ingest(tmp_path / "x.csv", store, source="shopify")
    with pytest.raises(InputError, match="cannot tell the format"):
        (tmp_path / "x.txt").write_text("a\n")
        _ingest(tmp_path / "x.txt", store)


def test_every_row_is_accounted_for_on_a_large_mixed_file(tmp_path, store):
    rng = np.random.default_rng(3)
    n = 20_000
    kinds = rng.choice(["ok", "bad_ts", "bad_type", "dup"], size=n, p=[0.9, 0.03, 0.03, 0.04])
    rows = []
    for i, kind in enumerate(kinds):
        event_id = "m0" if kind == "dup" else f"m{i}"
        ts = "garbage" if kind == "bad_ts" else "2026-11-01T10:00:00Z"
        event_type = "warp" if kind == "bad_type" else "page_view"
        rows.append(f"{event_id},{ts},{event_type},c{i % 50},,,,,,")
    report = _ingest(_write_events_csv(tmp_path / "e.csv", rows), store, chunk_rows=5000)
    assert report.rows_read == n
    assert report.accepted + report.duplicates + report.quarantined == n
    assert report.quarantined == int(((kinds == "bad_ts") | (kinds == "bad_type")).sum())


# --------------------------------------------------------------------------- malformed anywhere
CSV_HEADER = "event_id,ts,event_type,customer_id,item_id,price,properties"
GOOD_CSV = 'g{n},2026-11-01T10:00:00Z,product_view,c1,i1,9.5,"{{""n"": {n}}}"'


def test_malformed_csv_rows_anywhere_are_quarantined_and_the_rest_ingested(tmp_path, store):
    # (line content, reason fragment); None: a good row. Line 1 is the header.
    lines: list[tuple[bytes, str | None]] = [
        (GOOD_CSV.format(n=1).encode(), None),
        (b'b1,2026-11-01T10:00:00Z,product_view,c1,i1,1,"{not json"', "properties: not valid JSON"),
        (b'b2,2026-11-01T10:00:00Z,product_view,c1,i1,1,"[1, 2]"', "properties: a JSON array"),
        (b"b3,2026-11-01T10:00:00Z,product_view,c\xff1,i1,1,", "line is not utf8 text"),
        (GOOD_CSV.format(n=2).encode(), None),
        (b"b4,2026-11-01T10:00:00Z,purchase,c1,i1,NaN,", "price: 'NaN' is not a finite number"),
        (b"b5,0001-01-01,product_view,c1,i1,1,", "ts: '0001-01-01' is before 1970"),
        (b"x" * 300 + b",2026-11-01T10:00:00Z,page_view,c1,,,", "event_id: 'xxx"),
        (b"", None),  # a blank line: skipped, but counted
        (b'b7,2026-11-01T10:00:00Z,page_view,c1,,,"{""a"": 1', "cannot be split into fields"),
        (GOOD_CSV.format(n=3).encode(), None),
        (b"b8,2026-11-01T10:00:00Z,page_view,c1,,,,extra", "line has 8 fields, expected 7"),
        (GOOD_CSV.format(n=4).encode(), None),
    ]
    path = tmp_path / "events.csv"
    path.write_bytes(b"\n".join([CSV_HEADER.encode(), *(line for line, _ in lines)]) + b"\n")
    report = _ingest(path, store, chunk_rows=3)

    expected = {n + 2: fragment for n, (line, fragment) in enumerate(lines) if fragment}
    assert report.quarantined == len(expected)
    assert sorted(store.read("events")["event_id"]) == ["g1", "g2", "g3", "g4"]
    assert report.rows_read == len(lines) - 1  # the blank line is no row
    quarantine = store.read("quarantine/events", current=False)
    by_line = dict(zip(quarantine["line_number"], quarantine["reason"], strict=True))
    assert sorted(by_line) == sorted(expected)
    for line, fragment in expected.items():
        assert fragment in by_line[line], (line, by_line[line])
    stored = store.read("events").set_index("event_id")
    assert stored.loc["g3", "properties"] == '{"n": 3}'  # canonical JSON text


def test_a_quoted_value_over_several_lines_is_one_row_and_line_numbers_stay_right(tmp_path, store):
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,ts,event_type,customer_id,properties\n"
        "a,2026-11-01T10:00:00Z,page_view,c1,\n"
        'b,2026-11-01T10:00:00Z,page_view,c2,"{""note"":\n'
        '""two lines""}"\n'
        "c,2026-11-01T10:00:00Z,page_view,c3,\n"
        "d,2026-11-01T10:00:00Z,page_view\n"
        'e,2026-11-01T10:00:00Z,page_view,"c5\n'
        "f,2026-11-01T10:00:00Z,page_view,c6,\n"
    )
    report = _ingest(path, store)
    events = store.read("events").set_index("event_id")
    assert sorted(events.index) == ["a", "b", "c", "f"]
    assert events.loc["b", "properties"] == '{"note": "two lines"}'
    quarantine = store.read("quarantine/events", current=False).sort_values("line_number")
    assert quarantine["line_number"].tolist() == [6, 7]  # b spans lines 3 and 4
    assert "a quote is left open" in quarantine["reason"].iloc[1]
    assert report.accepted + report.quarantined == 6


def test_malformed_jsonl_rows_anywhere_are_quarantined_and_the_rest_ingested(tmp_path, store):
    good = {
        "ts": "2026-11-01T10:00:00Z",
        "event_type": "product_view",
        "customer_id": "c1",
        "item_id": "i1",
    }

    def line(**fields: object) -> bytes:
        return json.dumps({**good, **fields}).encode()

    lines: list[tuple[bytes, str | None]] = [
        (line(event_id="g1", properties={"coupon": "X"}), None),
        (line(event_id="b1", properties="notjson"), "properties: not valid JSON"),
        (line(event_id="b2", properties=[1, 2]), "properties: a JSON array, not a JSON object"),
        (line(event_id="b3", properties=7), "properties: a number, not a JSON object"),
        (line(event_id="g2", properties='{"a": [1, {"b": null}]}'), None),
        (b'{"event_id": "b4", "price": NaN, "ts": "2026-11-01T10:00:00Z"}', "price: 'NaN'"),
        (line(event_id="b5", price=float("inf")), "price: 'inf' is not a finite number"),
        (line(event_id="b6", ts="0001-01-01"), "ts: '0001-01-01' is before"),
        (line(event_id="b7", customer_id="\ud800"), "customer_id: holds characters that are not"),
        (line(event_id="b8", customer_id={"id": 1}), "customer_id: a JSON object is not text"),
        (b'{"event_id": "b9", "\xff": 1}', "line is not UTF-8 text"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        (line(event_id="x" * 1_000_000), "(max_field_length)"),
        (line(event_id="g3", **{"": "blank key", " note ": "padded"}), None),
        (line(event_id="b10", **{" event_id": "other"}), "'event_id': given more than once"),
        (line(event_id="g4", quantity=2.0, event_type="add_to_cart"), None),
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(text for text, _ in lines) + b"\n")
    report = _ingest(path, store, chunk_rows=4)

    expected = {n + 1: fragment for n, (_, fragment) in enumerate(lines) if fragment}
    assert sorted(store.read("events")["event_id"]) == ["g1", "g2", "g3", "g4"]
    assert report.quarantined == len(expected)
    quarantine = store.read("quarantine/events", current=False)
    by_line = dict(zip(quarantine["line_number"], quarantine["reason"], strict=True))
    assert sorted(by_line) == sorted(expected)
    for number, fragment in expected.items():
        assert fragment in by_line[number], (number, by_line[number])
        assert len(by_line[number]) < 300
    stored = store.read("events").set_index("event_id")
    assert json.loads(stored.loc["g1", "properties"]) == {"coupon": "X"}
    assert json.loads(stored.loc["g3", "properties"]) == {"": "blank key", "note": "padded"}
    assert stored.loc["g4", "quantity"] == 2
    # Stored properties are JSON that DuckDB reads.
    con = duckdb.connect()
    store.register(con, "events", "events")
    coupon = con.execute(
        "SELECT properties->>'$.coupon' FROM events WHERE event_id = 'g1'"
    ).fetchone()
    assert coupon == ("X",)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_malformed_attributes_quarantine_only_their_customer(tmp_path, store, fmt):
    rows = [
        {"customer_id": "c1", "email": "a@x.com", "attributes": '{"tier": "gold"}'},
        {"customer_id": "c2", "email": "b@x.com", "attributes": "{tier: gold}"},
        {"customer_id": "c3", "email": "c@x.com", "attributes": '["gold"]'},
        {"customer_id": "c4", "email": "d@x.com", "attributes": None},
    ]
    path = tmp_path / f"customers.{fmt}"
    frame = pd.DataFrame(rows)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    report = _ingest(path, store, kind="customers")
    assert (report.accepted, report.quarantined) == (2, 2)
    assert sorted(store.read("customers")["customer_id"]) == ["c1", "c4"]
    quarantine = store.read("quarantine/customers", current=False).sort_values("line_number")
    first = 2 if fmt == "csv" else 1
    assert quarantine["line_number"].tolist() == [first + 1, first + 2]
    assert quarantine["reason"].str.startswith("attributes: ").all()
