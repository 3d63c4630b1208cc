"""Adapters on the real public logs in ../shared/data (skipped when absent), and on
small hand-made files whose mapping is checked value by value."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.data.adapters import content_event_ids
from features.data.ingest import ingest_file
from features.errors import InputError
from tests.conftest import NOW


def test_taobao_sample_stores_every_complete_row_and_quarantines_the_cut_line(shared_data, store):
    path = shared_data / "taobao-userbehavior-sample" / "UserBehavior.csv.gz"
    first = ingest_file(path, kind="events", store=store, now=NOW, source="taobao")
    assert first.rows_read == 84_476
    assert first.accepted == 84_475
    assert first.quarantined == 1
    quarantine = store.read("quarantine/events", current=False)
    assert quarantine["line_number"].tolist() == [84_476]
    assert quarantine["reason"].iloc[0] == "line has 4 fields, expected 5"
    assert quarantine["raw"].iloc[0] == "100370,1968385,1875258,pv"

    again = ingest_file(path, kind="events", store=store, now=NOW, source="taobao")
    assert (again.accepted, again.duplicates, again.already_quarantined) == (0, 84_475, 1)
    assert "nothing new" in again.summary()
    assert store.count("events") == 84_475

    events = store.read("events")
    counts = events["event_type"].value_counts().to_dict()
    # Counts documented in the dataset's SOURCE.md.
    assert counts == {
        "product_view": 75_872,
        "add_to_cart": 4_497,
        "add_to_wishlist": 2_356,
        "purchase": 1_750,
    }
    assert events["customer_id"].nunique() == 815
    first_row = events[events["ts"] == pd.Timestamp(1511544070, unit="s", tz="UTC")]
    assert {"1"} <= set(first_row["customer_id"])
    assert json.loads(events["properties"].iloc[0]).keys() == {"category_id"}


def test_taobao_catalog_has_one_row_per_item(shared_data, store):
    path = shared_data / "taobao-userbehavior-sample" / "UserBehavior.csv.gz"
    report = ingest_file(path, kind="catalog", store=store, now=NOW, source="taobao")
    assert report.accepted == 55_368
    assert store.read("catalog")["item_id"].is_unique


def test_rees46_sample_maps_types_and_keeps_session(shared_data, store):
    path = shared_data / "rees46-sample" / "2019-Oct-sample.csv"
    report = ingest_file(path, kind="events", store=store, now=NOW, source="rees46")
    assert report.rows_read == 1_000
    assert report.accepted + report.duplicates == 1_000
    assert report.quarantined == 0
    events = store.read("events")
    mapped = {"product_view", "add_to_cart", "purchase", "remove_from_cart"}
    assert set(events["event_type"]) <= mapped
    first = events.sort_values("ts").iloc[0]
    assert first["ts"] == pd.Timestamp("2019-10-01T00:00:00Z")
    props = json.loads(events.loc[events["item_id"] == "44600062", "properties"].iloc[0])
    assert props["brand"] == "shiseido"
    assert props["user_session"] == "72d76fde-8bb3-4e00-8c23-a032dfed738c"
    catalog = ingest_file(path, kind="catalog", store=store, now=NOW, source="rees46")
    assert catalog.quarantined == 0
    items = store.read("catalog").set_index("item_id")
    assert items.loc["44600062", "brand"] == "shiseido"
    assert items.loc["44600062", "price"] == 35.79


def test_movielens_ratings_become_interactions(shared_data, store):
    ml = shared_data / "movielens-100k"
    report = ingest_file(ml / "u.data", kind="events", store=store, now=NOW, source="movielens")
    assert (report.accepted, report.quarantined) == (100_000, 0)
    events = store.read("events")
    assert events["customer_id"].nunique() == 943
    assert events["item_id"].nunique() == 1_682
    row = events[(events["customer_id"] == "196") & (events["item_id"] == "242")].iloc[0]
    assert json.loads(row["properties"]) == {"rating": "3"}
    assert row["ts"] == pd.Timestamp(881250949, unit="s", tz="UTC")

    catalog = ingest_file(ml / "u.item", kind="catalog", store=store, now=NOW, source="movielens")
    assert (catalog.accepted, catalog.quarantined) == (1_682, 0)
    items = store.read("catalog").set_index("item_id")
    assert items.loc["1", "title"] == "Toy Story (1995)"
    assert items.loc["1", "category"] == "Animation"
    assert items.loc["2", "category"] == "Action"


def test_content_event_ids_are_stable_and_keep_repeated_rows_apart():
    raw = pd.DataFrame({"a": ["1", "1", "2"], "b": ["x", "x", "x"]})
    ids = content_event_ids(raw, ["a", "b"], "tb")
    assert ids.iloc[0] != ids.iloc[1]
    assert ids.iloc[0].rsplit("-", 1)[0] == ids.iloc[1].rsplit("-", 1)[0]
    assert ids.tolist() == content_event_ids(raw.copy(), ["a", "b"], "tb").tolist()


HILLSTROM_HEADER = (
    "recency,history_segment,history,mens,womens,zip_code,newbie,channel,segment,visit,"
    "conversion,spend\n"
)


def _hillstrom_file(tmp_path):
    path = tmp_path / "hillstrom.csv"
    path.write_text(
        HILLSTROM_HEADER
        + "9,5) $500 - $750,675.83,1,0,Rural,1,Web,Mens E-Mail,1,1,29.99\n"
        + '2,"1) $0 - $100",45.34,1,0,Urban,0,Phone,No E-Mail,1,0,0.0\n'
        + "6,2) $100 - $200,134.83,0,1,Surburban,0,Multichannel,Womens E-Mail,0,0,0.0\n"
        + "x,2) $100 - $200,134.83,0,1,Surburban,0,Web,Kids E-Mail,2,0,0.0\n"
    )
    return path


def test_hillstrom_customers_and_content_hand_mapped(tmp_path, store):
    path = _hillstrom_file(tmp_path)
    report = ingest_file(path, kind="customers", store=store, now=NOW, source="hillstrom")
    assert (report.accepted, report.quarantined) == (3, 1)
    customers = store.read("customers").set_index("customer_id")
    assert list(customers.index) == ["hs-0", "hs-1", "hs-2"]
    assert json.loads(customers.loc["hs-1", "attributes"]) == {
        "recency": 2,
        "history_segment": "1) $0 - $100",
        "history": 45.34,
        "mens": 1,
        "womens": 0,
        "zip_code": "Urban",
        "newbie": 0,
        "channel": "Phone",
    }
    assert customers["consent_email"].all() and customers["consent_personalization"].all()
    assert set(customers["country"]) == {"US"}
    quarantine = store.read("quarantine/customers", current=False)
    assert quarantine["line_number"].tolist() == [5]
    assert quarantine["reason"].tolist() == ["recency: 'x' is not a whole number of months"]

    report = ingest_file(path, kind="content", store=store, now=NOW, source="hillstrom")
    assert (report.accepted, report.quarantined) == (3, 1)
    content = store.read("content").set_index("content_id")
    assert content["slot"].to_dict() == {
        "mens_email": "offer",
        "no_email": "offer",
        "womens_email": "offer",
    }
    assert {k: json.loads(v)["offer_type"] for k, v in content["attributes"].items()} == {
        "mens_email": "mens",
        "no_email": "none",
        "womens_email": "womens",
    }
    assert content["active"].all()
    reason = store.read("quarantine/content", current=False)["reason"].tolist()
    assert reason == ["segment: 'Kids E-Mail' is not one of: Mens E-Mail, Womens E-Mail, No E-Mail"]


def test_hillstrom_events_hand_mapped(tmp_path, store):
    path = _hillstrom_file(tmp_path)
    report = ingest_file(path, kind="events", store=store, now=NOW, source="hillstrom")
    # Rows 0-2: history + send (+ visit, + conversion); row 3's four records quarantined.
    assert (report.rows_read, report.records) == (4, 12)
    assert (report.accepted, report.quarantined) == (9, 3)
    assert "read 4 rows (mapped to 12 records)" in report.summary()
    events = store.read("events").set_index("event_id")
    send = pd.Timestamp("2008-03-01T10:00:00Z")
    assert events.loc[
        "hs-0-history", ["ts", "event_type", "item_id", "price", "channel"]
    ].tolist() == [
        send - pd.Timedelta(days=270),
        "purchase",
        "history",
        675.83,
        "web",
    ]
    assert pd.isna(events.loc["hs-1-history", "channel"])  # Phone: no contract channel
    sent = events[events["event_type"] == "email_sent"]
    assert sent["content_id"].to_dict() == {
        "hs-0-sent": "mens_email",
        "hs-1-sent": "no_email",
        "hs-2-sent": "womens_email",
    }
    assert (sent["ts"] == send).all() and (sent["campaign_id"] == "hillstrom-2008-03").all()
    assert (sent["slot"] == "offer").all() and np.allclose(sent["propensity"], 1 / 3)
    assert sent["decision_id"].tolist() == ["hs-0-offer", "hs-1-offer", "hs-2-offer"]
    # The no-email arm mailed nothing: no channel, and it says so.
    assert sent["channel"].tolist()[0] == "email" and pd.isna(sent.loc["hs-1-sent", "channel"])
    assert json.loads(sent.loc["hs-1-sent", "properties"]) == {"mailed": False}
    clicks = events[events["event_type"] == "email_click"]
    assert clicks[["content_id", "decision_id", "channel"]].to_dict("index") == {
        "hs-0-visit": {"content_id": "mens_email", "decision_id": "hs-0-offer", "channel": "email"},
        "hs-1-visit": {"content_id": "no_email", "decision_id": "hs-1-offer", "channel": "web"},
    }
    assert (clicks["ts"] == send + pd.Timedelta(hours=1)).all()
    order = events.loc["hs-0-conversion"]
    assert (order["event_type"], order["item_id"], order["price"], order["decision_id"]) == (
        "purchase",
        "order",
        29.99,
        "hs-0-offer",
    )
    assert order["ts"] == send + pd.Timedelta(hours=2)
    quarantine = store.read("quarantine/events", current=False)
    assert quarantine["line_number"].tolist() == [5, 5, 5]
    assert set(quarantine["reason"]) == {
        "recency: 'x' is not a whole number of months; segment: 'Kids E-Mail' is not one of: "
        "Mens E-Mail, Womens E-Mail, No E-Mail; visit: '2' is not 0 or 1"
    }
    again = ingest_file(path, kind="events", store=store, now=NOW, source="hillstrom")
    assert (again.accepted, again.duplicates) == (0, 9) and again.nothing_new


def test_hillstrom_refuses_a_file_of_another_shape(tmp_path, store):
    path = tmp_path / "other.csv"
    path.write_text("recency,segment\n1,Mens E-Mail\n")
    with pytest.raises(InputError, match=r"columns=\['history_segment'"):
        ingest_file(path, kind="events", store=store, now=NOW, source="hillstrom")
    with pytest.raises(InputError, match="source 'hillstrom' provides events, customers, content"):
        ingest_file(path, kind="catalog", store=store, now=NOW, source="hillstrom")


def test_hillstrom_train_half_ingests_as_it_is(shared_data, store):
    path = shared_data / "hillstrom-train" / "hillstrom_train.csv.gz"
    for kind in ("customers", "content"):
        report = ingest_file(path, kind=kind, store=store, now=NOW, source="hillstrom")
        assert report.rows_read == 32_063 and report.quarantined == 0
    assert store.count("customers") == 32_063
    assert sorted(store.read("content")["content_id"]) == ["mens_email", "no_email", "womens_email"]
    report = ingest_file(path, kind="events", store=store, now=NOW, source="hillstrom")
    assert report.quarantined == 0 and report.accepted == report.records
    events = store.read("events")
    sends = events[events["event_type"] == "email_sent"]
    sent = sends["content_id"].value_counts().to_dict()
    # Arm sizes, visit and conversion rates and spend per customer from SOURCE.md.
    assert sent == {"mens_email": 10_732, "womens_email": 10_677, "no_email": 10_654}
    clicks = events[events["event_type"] == "email_click"]["content_id"].value_counts()
    rates = (clicks / pd.Series(sent)).round(4).to_dict()
    assert rates == {"mens_email": 0.1889, "womens_email": 0.1520, "no_email": 0.1053}
    orders = events[(events["event_type"] == "purchase") & (events["item_id"] == "order")]
    arm = orders["decision_id"].map(sends.set_index("decision_id")["content_id"])
    spend = (orders.groupby(arm)["price"].sum() / pd.Series(sent)).round(3).to_dict()
    assert spend == {"mens_email": 1.490, "womens_email": 1.028, "no_email": 0.677}
    conversion = (orders.groupby(arm).size() / pd.Series(sent)).round(4).to_dict()
    assert conversion == {"mens_email": 0.0129, "womens_email": 0.0084, "no_email": 0.0052}
