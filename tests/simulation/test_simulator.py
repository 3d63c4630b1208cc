"""Simulator: contract shape, determinism, planted truth visible in the raw logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from features.data.contracts import CATALOG, CONTENT, CUSTOMERS, EVENT_TYPES, EVENTS
from features.data.validation import validate
from features.errors import InputError
from simulation import (
    CUSTOMER_TYPES,
    INVENTORY_ID,
    MALFORMED_KINDS,
    SimulatedStore,
    SimulationConfig,
    simulate,
    subject_traits,
    write_store,
)

SMALL = SimulationConfig(customers=300, days=14, seed=7)


@pytest.fixture(scope="module")
def store() -> SimulatedStore:
    """Big enough (~250k events, about a second) for planted effects to show."""
    return simulate(SimulationConfig(customers=6000, days=30, seed=0))


@pytest.fixture(scope="module")
def small() -> SimulatedStore:
    return simulate(SMALL)


def _parsed_ts(events: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(events["ts"], utc=True, errors="coerce", format="ISO8601")


def _clean(store: SimulatedStore) -> pd.DataFrame:
    bad = [m["row_index"] for m in store.truth["malformed"]]
    return store.events.drop(index=bad)


def _sends(events: pd.DataFrame, slot: str) -> pd.DataFrame:
    rows = events[(events["event_type"] == "email_sent") & (events["slot"] == slot)]
    return rows[["customer_id", "campaign_id", "content_id", "propensity"]]


def _outcome(events: pd.DataFrame, event_type: str) -> pd.DataFrame:
    rows = events.loc[events["event_type"] == event_type, ["customer_id", "campaign_id"]]
    rows = rows.dropna().drop_duplicates()
    return rows.assign(**{event_type: 1})


# ---------------------------------------------------------------- config
@pytest.mark.parametrize(
    "bad",
    [
        {"customers": 0},
        {"days": 0},
        {"malformed_share": 1.5},
        {"duplicate_person_share": -0.1},
        {"n_items": 5, "n_categories": 12},
        {"start": datetime(2026, 10, 1)},  # naive: not UTC
        {"colour": "red"},
    ],
)
def test_config_rejects_bad_values_naming_the_field(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as info:
        SimulationConfig(**bad)
    assert next(iter(bad)) in str(info.value)


def test_config_is_frozen_and_documented() -> None:
    config = SimulationConfig()
    with pytest.raises(ValidationError):
        config.customers = 5  # type: ignore[misc]
    for name, field in SimulationConfig.model_fields.items():
        assert field.description, name


# ---------------------------------------------------------------- shape and contracts
def test_tables_have_exactly_the_contract_columns(small: SimulatedStore) -> None:
    assert list(small.events.columns) == EVENTS.names
    assert list(small.customers.columns) == CUSTOMERS.names
    assert list(small.catalog.columns) == CATALOG.names
    assert list(small.content.columns) == CONTENT.names
    assert len(small.customers) == SMALL.customers
    assert len(small.catalog) == SMALL.n_items
    assert small.customers["customer_id"].is_unique
    assert small.catalog["item_id"].is_unique


def test_event_ids_unique_and_events_sorted_by_time(small: SimulatedStore) -> None:
    ids = small.events["event_id"].dropna()
    assert ids.is_unique
    assert ids.iloc[0] == "e000000001"
    ts = _parsed_ts(small.events).dropna()
    assert ts.is_monotonic_increasing
    start = pd.Timestamp(SMALL.start)
    assert ts.min() >= start
    assert ts.max() < start + pd.Timedelta(days=SMALL.days)


def test_every_row_but_the_planted_ones_passes_validation(store: SimulatedStore) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    events = store.events
    result = validate(events, np.arange(len(events)), EVENTS, now=now)
    planted = {m["row_index"] for m in store.truth["malformed"]}
    assert set(result.rejected["line_number"]) == planted
    for name, contract in (("customers", CUSTOMERS), ("catalog", CATALOG), ("content", CONTENT)):
        frame = getattr(store, name)
        assert validate(frame, np.arange(len(frame)), contract, now=now).rejected.empty, name


def test_every_malformed_row_is_there_and_of_its_kind(store: SimulatedStore) -> None:
    events = store.events
    planted = store.truth["malformed"]
    share = store.truth["config"]["malformed_share"]
    n_clean = len(events) - len(planted)
    assert len(planted) == round(share * n_clean)
    assert {m["kind"] for m in planted} == set(MALFORMED_KINDS)
    parsed = _parsed_ts(events)
    for m in planted:
        row = events.iloc[m["row_index"]]
        kind = m["kind"]
        assert (m["event_id"] is None) == (kind == "missing_event_id")
        if m["event_id"] is not None:
            assert row["event_id"] == m["event_id"]
        if kind == "bad_timestamp":
            assert pd.isna(parsed.iloc[m["row_index"]]), row["ts"]
        elif kind == "unknown_event_type":
            assert row["event_type"] not in EVENT_TYPES
        elif kind == "negative_price":
            assert row["price"] < 0
        elif kind == "missing_ids":
            assert pd.isna(row["customer_id"]) and pd.isna(row["anonymous_id"])
        else:
            assert pd.isna(row["event_id"])
    # and no defect occurs anywhere else
    counts = pd.Series([m["kind"] for m in planted]).value_counts()
    assert parsed.isna().sum() == counts["bad_timestamp"]
    assert (~events["event_type"].isin(EVENT_TYPES)).sum() == counts["unknown_event_type"]
    assert (events["price"] < 0).sum() == counts["negative_price"]
    no_ids = events["customer_id"].isna() & events["anonymous_id"].isna()
    assert no_ids.sum() == counts["missing_ids"]
    assert events["event_id"].isna().sum() == counts["missing_event_id"]


TRUTH_KEYS = {
    "generator", "config", "window", "counts", "categories", "preferred_category",
    "category_preference", "customer_type", "price_sensitivity", "activity_rate",
    "email_engagement", "preferred_hour_utc", "heavy_buyers", "lapsing_customers",
    "lapse_ts", "identity_links", "identity_link_via", "anonymous_links",
    "unlinked_anonymous", "shared_devices", "inventory_anonymous_id", "stock_outages",
    "funnel", "subject_traits", "subject_trait_effects", "best_subject_trait", "open_model",
    "subject_open", "best_subject", "offer_click", "offer_conversion", "best_offer",
    "offer_value", "best_offer_by_value", "value_model", "logging_policy", "campaigns",
    "attribution_hours", "unsubscribed", "malformed", "placeholder_emails",
    "placeholder_email_records", "shared_phones", "households",
}  # fmt: skip


def test_truth_holds_every_planted_parameter(small: SimulatedStore) -> None:
    truth = small.truth
    assert set(truth) == TRUTH_KEYS
    assert SimulationConfig(**truth["config"]) == SMALL
    ids = set(small.customers["customer_id"])
    for key in ("preferred_category", "customer_type", "price_sensitivity", "email_engagement"):
        assert set(truth[key]) == ids, key
    assert set(truth["preferred_category"].values()) <= set(truth["categories"])
    prefs = truth["category_preference"]
    cid = next(iter(prefs))
    assert abs(sum(prefs[cid]) - 1) < 1e-5
    favourite = truth["categories"][int(np.argmax(prefs[cid]))]
    assert favourite == truth["preferred_category"][cid]
    assert set(truth["campaigns"]) == set(truth["logging_policy"]["subject"])


def test_tiny_and_degenerate_configs_run() -> None:
    tiny = simulate(SimulationConfig(customers=1, days=1, n_items=1, n_categories=1))
    assert list(tiny.events.columns) == EVENTS.names
    assert len(tiny.customers) == 1
    none = simulate(
        SimulationConfig(customers=50, days=3, malformed_share=0, duplicate_person_share=0)
    )
    assert none.truth["malformed"] == [] and none.truth["identity_links"] == []
    json.dumps(tiny.truth)


# ---------------------------------------------------------------- determinism and files
def test_same_seed_same_store_and_bytes_different_seed_differs(
    small: SimulatedStore, tmp_path: Path
) -> None:
    again = simulate(SMALL)
    for name in ("customers", "catalog", "content", "events"):
        pd.testing.assert_frame_equal(getattr(small, name), getattr(again, name))
    assert json.dumps(small.truth) == json.dumps(again.truth)
    for fmt in ("csv", "parquet", "jsonl"):
        a = write_store(small, tmp_path / f"a_{fmt}", fmt)
        b = write_store(again, tmp_path / f"b_{fmt}", fmt)
        for key in a:
            assert a[key].read_bytes() == b[key].read_bytes(), (fmt, key)
    other = simulate(SMALL.model_copy(update={"seed": 8}))
    assert not other.events.equals(small.events)
    assert other.truth["preferred_category"] != small.truth["preferred_category"]


def test_written_files_follow_the_conventions(small: SimulatedStore, tmp_path: Path) -> None:
    paths = write_store(small, tmp_path / "csv")
    assert {p.name for p in paths.values()} == {
        "customers.csv",
        "catalog.csv",
        "content.csv",
        "events.csv",
        "truth.json",
    }
    events = pd.read_csv(paths["events"], dtype=str, keep_default_na=False)
    assert list(events.columns) == EVENTS.names
    assert len(events) == len(small.events)
    parsed = _parsed_ts(events)
    bad_ts = sum(m["kind"] == "bad_timestamp" for m in small.truth["malformed"])
    assert parsed.isna().sum() == bad_ts > 0
    assert events.loc[parsed.notna(), "ts"].str.fullmatch(r"\d{4}-\d\d-\d\dT[\d:]{8}Z").all()
    customers = pd.read_csv(paths["customers"], dtype=str, keep_default_na=False)
    assert set(customers["consent_email"]) <= {"true", "false"}
    assert customers["signup_ts"].str.endswith("Z").all()
    assert json.loads(customers["attributes"].iloc[0])["timezone"]
    assert json.loads(paths["truth"].read_text()) == json.loads(json.dumps(small.truth))

    parquet = write_store(small, tmp_path / "pq", "parquet")["events"]
    schema = pq.read_schema(parquet)
    assert schema.names == EVENTS.names
    assert all(str(t) in ("string", "large_string") for t in schema.types)
    lines = write_store(small, tmp_path / "jl", "jsonl")["events"].read_text().splitlines()
    assert len(lines) == len(small.events)
    assert set(json.loads(lines[0])) == set(EVENTS.names)
    with pytest.raises(InputError, match="fmt"):
        write_store(small, tmp_path / "xml", "xml")  # type: ignore[arg-type]


# ---------------------------------------------------------------- customers and identity
def test_customers_have_plausible_contact_data(store: SimulatedStore) -> None:
    customers = store.customers
    phones = customers["phone"].dropna()
    digits = phones.str.replace(r"\D", "", regex=True)
    nanp = digits.str.len().isin([10, 11]) & ~phones.str.startswith(("+44", "+49", "+61"))
    area = digits[nanp].str[-10:].str[:3].astype(int)
    assert (area >= 201).all()
    assert phones.str.contains(r"^\(\d{3}\) \d{3}-\d{4}$").any()
    assert phones.str.contains(r"^\+1 \d{3} \d{3} \d{4}$").any()
    assert phones.str.contains(r"^\d{3}\.\d{3}\.\d{4}$").any()
    start = pd.Timestamp(store.truth["window"]["start"])
    assert (customers["signup_ts"] < start).mean() > 0.6
    assert (customers["signup_ts"] >= start).any()  # new subscribers
    assert 0.03 < (~customers["consent_email"]).mean() < 0.08
    assert 0.06 < (~customers["consent_personalization"]).mean() < 0.14
    attrs = customers["attributes"].map(json.loads)
    assert set(attrs.iloc[0]) == {  # never the latent variables
        "first_name", "last_name", "date_of_birth", "address", "postcode", "city", "timezone",
    }  # fmt: skip


def test_identity_links_are_the_same_person_in_the_customers_table(
    store: SimulatedStore,
) -> None:
    links = store.truth["identity_links"]
    assert len(links) == store.truth["counts"]["customers"] - store.truth["counts"]["persons"]
    assert len(links) > 100
    by_id = store.customers.set_index("customer_id")
    norm_email = by_id["email"].str.strip().str.lower()
    # digits only, without the North American country code "1"
    norm_phone = (
        by_id["phone"]
        .str.replace(r"\D", "", regex=True)
        .str.replace(r"^1(?=\d{10}$)", "", regex=True)
    )
    pairs = pd.DataFrame(links, columns=["a", "b"])
    a, b = pairs["a"], pairs["b"]
    assert a.isin(by_id.index).all() and b.isin(by_id.index).all()
    via = pd.Series(store.truth["identity_link_via"])
    same_email = (norm_email[a].to_numpy() == norm_email[b].to_numpy()) & by_id["email"][b].notna()
    same_phone = (norm_phone[a].to_numpy() == norm_phone[b].to_numpy()) & by_id["phone"][b].notna()
    assert (same_email.to_numpy() == via.str.contains("email").to_numpy()).all()
    assert (same_phone.to_numpy() == via.str.contains("phone").to_numpy()).all()
    exact_copy = (by_id["email"][a].to_numpy() == by_id["email"][b].to_numpy()) & (
        by_id["phone"][a].to_numpy() == by_id["phone"][b].to_numpy()
    )
    assert not exact_copy.any()
    kinds = store.truth["customer_type"]
    assert (a.map(kinds) == b.map(kinds)).all()
    # emails of different persons never collide after normalisation, placeholders aside
    placeholders = store.truth["placeholder_email_records"]
    persons = norm_email.drop([b for _, b in links] + placeholders).dropna()
    assert persons.is_unique


def test_events_of_a_duplicate_person_are_split_across_both_ids(store: SimulatedStore) -> None:
    browse = store.events[store.events["event_type"] == "product_view"]
    active = set(browse["customer_id"].dropna())
    both = sum(a in active and b in active for a, b in store.truth["identity_links"])
    assert both > 0.3 * len(store.truth["identity_links"])


def test_anonymous_links_have_login_events(store: SimulatedStore) -> None:
    events = store.events
    logins = events[events["event_type"] == "login"]
    pairs = set(zip(logins["anonymous_id"], logins["customer_id"], strict=True))
    links = store.truth["anonymous_links"]
    assert len(links) > 100
    assert all((anon, cid) in pairs for anon, cid in links.items())
    # before the login the session is anonymous only
    anon_rows = events[events["anonymous_id"].isin(list(links)[:50])]
    assert anon_rows["customer_id"].isna().any()
    # unlinked anonymous ids never log in
    unlinked = set(store.truth["unlinked_anonymous"])
    assert unlinked and not unlinked & set(logins["anonymous_id"])
    assert not unlinked & set(links)


def test_shared_devices_log_in_as_two_customers(store: SimulatedStore) -> None:
    logins = store.events[store.events["event_type"] == "login"]
    devices = store.truth["shared_devices"]
    assert len(devices) == store.truth["config"]["shared_devices"]
    for device in devices:
        seen = set(logins.loc[logins["anonymous_id"] == device["anonymous_id"], "customer_id"])
        assert seen == set(device["customer_ids"]) and len(seen) == 2
        assert device["anonymous_id"] not in store.truth["anonymous_links"]


# ---------------------------------------------------------------- browsing
def test_customers_convert_more_in_their_preferred_category(store: SimulatedStore) -> None:
    events = _clean(store)
    category = store.catalog.set_index("item_id")["category"]
    preferred = store.truth["preferred_category"]

    def in_preferred(rows: pd.DataFrame) -> pd.Series:
        rows = rows[rows["customer_id"].notna()]
        return rows["item_id"].map(category) == rows["customer_id"].map(preferred)

    views = in_preferred(events[events["event_type"] == "product_view"])
    organic = (events["event_type"] == "purchase") & events["campaign_id"].isna()
    buys = in_preferred(events[organic])
    assert views.mean() > 0.5  # most views in the preferred category
    rate_preferred = buys.sum() / views.sum()
    rate_other = (~buys).sum() / (~views).sum()
    assert rate_preferred > 1.3 * rate_other


def test_funnel_rates_are_realistic(store: SimulatedStore) -> None:
    events = _clean(store)
    kinds = events["event_type"].value_counts()
    organic = ((events["event_type"] == "purchase") & events["campaign_id"].isna()).sum()
    assert 0.07 <= kinds["add_to_cart"] / kinds["product_view"] <= 0.11
    assert 0.28 <= organic / kinds["add_to_cart"] <= 0.42
    assert kinds["remove_from_cart"] > 0 and kinds["add_to_wishlist"] > 0
    # abandoned carts: carted (customer, item) pairs never bought
    carts = events[events["event_type"] == "add_to_cart"][["customer_id", "item_id"]]
    bought = events[events["event_type"] == "purchase"][["customer_id", "item_id"]]
    abandoned = carts.merge(bought.drop_duplicates(), how="left", indicator=True)
    assert (abandoned["_merge"] == "left_only").mean() > 0.4
    # repeat buyers
    orders = events[events["event_type"] == "purchase"].groupby("customer_id")["order_id"]
    assert (orders.nunique() > 5).sum() >= 10
    assert set(events["channel"].dropna()) == {"web", "app", "email"}


def test_price_sensitive_customers_buy_cheaper_items(store: SimulatedStore) -> None:
    events = _clean(store)
    buys = events[(events["event_type"] == "purchase") & events["campaign_id"].isna()]
    sensitivity = buys["customer_id"].map(store.truth["price_sensitivity"])
    ratio = buys["price"] / buys["item_id"].map(store.catalog.set_index("item_id")["price"])
    assert np.allclose(ratio, 1.0)  # organic purchases pay list price
    assert buys.loc[sensitivity > 0.6, "price"].mean() < buys.loc[sensitivity < 0.3, "price"].mean()
    # They browse cheaper too: relative to the category's median price, bargain hunters'
    # product views sit below it and convenience seekers' above it.
    views = events[(events["event_type"] == "product_view") & events["customer_id"].notna()]
    catalog = store.catalog.set_index("item_id")
    median = store.catalog.groupby("category")["price"].median()
    index = views["item_id"].map(catalog["price"]) / views["item_id"].map(catalog["category"]).map(
        median
    )
    by_type = index.groupby(views["customer_id"].map(store.truth["customer_type"])).mean()
    assert by_type["bargain_hunter"] < 0.95 < 1.05 < by_type["convenience_seeker"], by_type


def test_lapsing_customers_stop_browsing(store: SimulatedStore) -> None:
    events = _clean(store)
    lapse = pd.to_datetime(pd.Series(store.truth["lapse_ts"]), utc=True)
    assert len(lapse) > 50
    browse = events[events["event_type"].isin(["page_view", "product_view"])]
    ts = _parsed_ts(browse)
    after = ts > browse["customer_id"].map(lapse)
    assert not after.any()
    assert browse["customer_id"].isin(lapse.index).sum() > 100  # they did browse before


def test_no_cart_or_purchase_while_out_of_stock(store: SimulatedStore) -> None:
    events = _clean(store)
    changes = events[events["event_type"] == "stock_change"]
    assert (changes["anonymous_id"] == INVENTORY_ID).all() and changes["customer_id"].isna().all()
    assert set(changes["properties"]) == {'{"in_stock": false}', '{"in_stock": true}'}
    start = pd.Timestamp(store.truth["window"]["start"])
    end = pd.Timestamp(store.truth["window"]["end"])
    outages = pd.DataFrame(store.truth["stock_outages"])
    outages["out"] = pd.to_datetime(outages["out_ts"], utc=True).fillna(start)
    outages["back"] = pd.to_datetime(outages["back_ts"], utc=True).fillna(end)
    buys = events[events["event_type"].isin(["add_to_cart", "purchase"])]
    buys = buys.assign(t=_parsed_ts(buys)).merge(outages, on="item_id")
    assert len(buys) > 0
    assert not ((buys["t"] >= buys["out"]) & (buys["t"] < buys["back"])).any()
    in_stock = store.catalog.set_index("item_id")["in_stock"]
    initially_out = outages.loc[outages["out_ts"].isna(), "item_id"]
    assert not in_stock[initially_out].any() and len(initially_out) > 0


# ---------------------------------------------------------------- email and decisions
def test_logged_propensities_are_the_logging_policy(store: SimulatedStore) -> None:
    events = _clean(store)
    policy = store.truth["logging_policy"]
    customers = store.customers.set_index("customer_id")
    group_index = 2 * (customers["country"] != "US") + (~customers["consent_personalization"])
    groups = group_index.map(dict(enumerate(policy["groups"])))
    for slot in ("subject", "offer"):
        sends = _sends(events, slot)
        assert not sends.duplicated(["customer_id", "campaign_id"]).any()
        assert ((sends["propensity"] > 0) & (sends["propensity"] <= 1)).all()
        table = policy[slot]
        for cid, by_group in table.items():
            for probabilities in by_group.values():
                assert abs(sum(probabilities.values()) - 1.0) < 1e-12, cid
        expected = [
            table[c][groups[cust]][content]
            for cust, c, content in sends[["customer_id", "campaign_id", "content_id"]].itertuples(
                index=False
            )
        ]
        assert np.allclose(sends["propensity"], expected)
    # the policy is not uniform, and the draw frequencies match it
    subjects = _sends(events, "subject")
    first = subjects[subjects["campaign_id"] == "cmp_001"]
    first = first[first["customer_id"].map(groups) == "US/personalization"]
    freq = first["content_id"].value_counts(normalize=True)
    probs = pd.Series(policy["subject"]["cmp_001"]["US/personalization"])
    assert probs.max() > 2 * probs.min()
    assert (freq.reindex(probs.index).fillna(0) - probs).abs().max() < 0.03


def test_sends_respect_consent_and_unsubscribes(store: SimulatedStore) -> None:
    events = _clean(store)
    customers = store.customers.set_index("customer_id")
    sends = events[events["event_type"] == "email_sent"]
    recipients = customers.loc[sends["customer_id"].unique()]
    assert recipients["consent_email"].all() and recipients["email"].notna().all()
    personal = [c for c, t in store.truth["subject_traits"].items() if t["personalized"]]
    no_pers = ~sends["customer_id"].map(customers["consent_personalization"])
    assert not sends.loc[no_pers, "content_id"].isin(personal).any()
    inactive = store.content.loc[~store.content["active"], "content_id"]
    assert not sends["content_id"].isin(inactive).any()
    unsub = events[events["event_type"] == "unsubscribe"].set_index("customer_id")["ts"]
    assert len(unsub) > 10
    later = sends["customer_id"].map(pd.to_datetime(unsub, utc=True)) < _parsed_ts(sends)
    assert not later.any()


def test_best_subject_trait_has_the_higher_logged_open_rate(store: SimulatedStore) -> None:
    events = _clean(store)
    truth = store.truth
    best = truth["best_subject_trait"]
    assert best == max(truth["subject_trait_effects"], key=truth["subject_trait_effects"].get)
    sends = _sends(events, "subject").merge(
        _outcome(events, "email_open"), how="left", on=["customer_id", "campaign_id"]
    )
    opened = sends["email_open"].fillna(0)
    with_trait = sends["content_id"].map(lambda c: truth["subject_traits"][c][best])
    assert opened[with_trait].mean() > opened[~with_trait].mean() + 0.04
    assert 0.15 < opened.mean() < 0.45  # a realistic open rate


def test_best_offer_has_the_highest_logged_conversion_in_its_type(
    store: SimulatedStore,
) -> None:
    events = _clean(store)
    truth = store.truth
    sends = _sends(events, "offer").merge(
        _outcome(events, "purchase"), how="left", on=["customer_id", "campaign_id"]
    )
    sends["converted"] = sends["purchase"].fillna(0)
    sends["type"] = sends["customer_id"].map(truth["customer_type"])
    rate = sends.groupby(["type", "content_id"])["converted"].mean().unstack()
    for ctype in ("bargain_hunter", "convenience_seeker"):
        best = truth["best_offer"][ctype]
        assert rate.loc[ctype].idxmax() == best, rate.loc[ctype]
    assert truth["best_offer"]["bargain_hunter"] == "offer_pct20"
    assert truth["best_offer"]["convenience_seeker"] == "offer_freeship"
    # margin-aware: brand-loyal customers convert without a discount
    assert truth["best_offer_by_value"]["brand_loyal"] == "offer_none"
    assert set(truth["offer_conversion"]) == set(CUSTOMER_TYPES)


def test_email_outcomes_carry_campaign_and_decision(store: SimulatedStore) -> None:
    events = _clean(store)
    clicks = events[events["event_type"] == "email_click"]
    offers = events[(events["event_type"] == "email_sent") & (events["slot"] == "offer")]
    joined = clicks.merge(offers, on=["customer_id", "campaign_id"], suffixes=("", "_sent"))
    assert len(joined) == len(clicks) > 0
    assert (joined["decision_id"] == joined["decision_id_sent"]).all()
    assert (joined["content_id"] == joined["content_id_sent"]).all()
    decisions = events.loc[events["event_type"] == "email_sent", "decision_id"]
    assert decisions.is_unique and decisions.notna().all()
    buys = events[(events["event_type"] == "purchase") & events["campaign_id"].notna()]
    sent = buys.merge(offers, on=["customer_id", "campaign_id"], suffixes=("", "_sent"))
    lag = pd.to_datetime(sent["ts"], utc=True) - pd.to_datetime(sent["ts_sent"], utc=True)
    window = pd.Timedelta(hours=store.truth["attribution_hours"])
    assert len(sent) == len(buys) > 0
    assert ((lag > pd.Timedelta(0)) & (lag <= window)).all()


def test_subject_traits_are_read_from_the_text() -> None:
    traits = subject_traits("{first_name}, last chance: 20% off? \U0001f525")
    assert traits == {
        "personalized": True,
        "urgency": True,
        "question": True,
        "emoji": True,
        "number": True,
        "long": False,
    }
    assert not any(subject_traits("Your weekly picks are here").values())
