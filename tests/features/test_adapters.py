"""Adapters on the real public logs in ../shared/data (skipped when absent)."""

from __future__ import annotations

import json

import pandas as pd

from features.adapters import content_event_ids
from features.ingest import ingest_file
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
