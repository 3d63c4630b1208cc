"""Simulated identity data: who is who in the customer records, and the planted truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.pii.contacts import normalise_email, normalise_phone
from simulation import SimulatedStore, SimulationConfig, simulate
from simulation.contact_details import _FIRST_NAMES, _LAST_NAMES, _distinct_birth_dates, _one_edit

CONFIG = SimulationConfig(customers=6000, days=2, seed=0)
# The placeholders a CRM export is known to hold, as the brief lists them.
PLACEHOLDERS = {"noemail@example.com", "test@test.com", "none@none.com", "na@na.com"}
ATTRIBUTES = {
    "first_name",
    "last_name",
    "date_of_birth",
    "address",
    "postcode",
    "city",
    "timezone",
}
POSTCODE = {
    "US": r"\d{5}",
    "CA": r"[A-Z]\d[A-Z] \d[A-Z]\d",
    "GB": r"[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}",
    "DE": r"\d{5}",
    "AU": r"\d{4}",
}


@pytest.fixture(scope="module")
def store() -> SimulatedStore:
    return simulate(CONFIG)


@pytest.fixture(scope="module")
def customers(store: SimulatedStore) -> pd.DataFrame:
    """The customers table by id, with the attributes as columns and normalised keys."""
    frame = store.customers.set_index("customer_id")
    attributes = pd.DataFrame(
        frame["attributes"].map(json.loads).tolist(), index=frame.index
    ).astype(str)
    return frame.join(attributes).assign(
        norm_email=normalise_email(frame["email"]),
        norm_phone=normalise_phone(frame["phone"]),
        person=_persons(store),
    )


def _persons(store: SimulatedStore) -> pd.Series:
    """Each record's person, named by its first record's id (from ``identity_links``)."""
    ids = store.customers["customer_id"]
    person = pd.Series(ids.to_numpy(), index=ids.to_numpy())
    for first, second in store.truth["identity_links"]:
        person[second] = first
    return person


def _within_one_edit(a: str, b: str) -> bool:
    """Equal, or one substitution, insertion, deletion or swap of neighbours apart."""
    if a == b:
        return True
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        i = diff[0]
        return diff == [i, i + 1] and a[i] == b[i + 1] and a[i + 1] == b[i]
    if abs(len(a) - len(b)) != 1:
        return False
    long, short = (a, b) if len(a) > len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def test_the_edit_distance_helper() -> None:
    assert _within_one_edit("Smith", "Smith")
    assert _within_one_edit("Smith", "Smoth")
    assert _within_one_edit("Smith", "Smth")
    assert _within_one_edit("Smith", "Smtih")
    assert not _within_one_edit("Smith", "Smiht ")
    assert not _within_one_edit("Smith", "Stimh")
    assert not _within_one_edit("Smith", "Sm")


def test_a_typo_is_one_edit_after_the_first_letter() -> None:
    names = np.array((_FIRST_NAMES + _LAST_NAMES) * 50, dtype=object)
    edited = _one_edit(np.random.default_rng(0), names)
    assert (edited != names).all()
    assert all(_within_one_edit(a, b) for a, b in zip(names, edited, strict=True))
    assert all(a[0] == b[0] for a, b in zip(names, edited, strict=True))
    lengths = pd.Series(edited).str.len() - pd.Series(names).str.len()
    assert set(lengths) == {0, -1}  # substitutions and swaps, deletions


def test_birth_dates_move_until_no_key_repeats() -> None:
    birth = np.array(["1980-01-02"] * 4 + ["1990-05-05"], dtype="datetime64[D]")
    names = np.array([7, 7, 7, 8, 7])
    homes = np.array([0, 1, 2, 3, 0])
    moved = _distinct_birth_dates(birth, [names, homes])
    assert len(set(zip(names, moved, strict=True))) == len(birth)
    assert moved[0] == birth[0] and moved[3] == birth[3] and moved[4] == birth[4]
    assert (moved <= birth).all() and (birth - moved).max() <= np.timedelta64(2, "D")


# ---------------------------------------------------------------- attributes
def test_records_carry_name_birth_date_and_address(
    store: SimulatedStore, customers: pd.DataFrame
) -> None:
    attributes = store.customers["attributes"].map(json.loads)
    assert (attributes.map(set) == ATTRIBUTES).all()
    born = pd.to_datetime(customers["date_of_birth"], format="%Y-%m-%d")
    start = pd.Timestamp(store.truth["window"]["start"]).tz_localize(None)
    assert (born <= start - pd.DateOffset(years=18)).all()
    assert (born > start - pd.DateOffset(years=86)).all()
    assert born.dt.year.nunique() > 50
    for country, pattern in POSTCODE.items():
        codes = customers.loc[customers["country"] == country, "postcode"]
        assert len(codes) and codes.str.fullmatch(pattern).all(), country
        assert codes.nunique() > len(codes) / 4, country
    assert customers["address"].str.fullmatch(r"\d+ [A-Z]\w+ [A-Z]\w+|[A-Z]\w+ \d+").all()
    assert customers.loc[customers["country"] == "GB", "city"].eq("London").all()
    assert customers.loc[customers["country"] == "US", "city"].nunique() >= 15


def test_persons_are_told_apart_by_name_birth_date_and_postcode(
    customers: pd.DataFrame,
) -> None:
    first_records = customers[customers.index == customers["person"]]
    key = ["first_name", "last_name", "date_of_birth", "postcode"]
    assert not first_records.duplicated(key).any()
    # the name lists are short: names alone do not tell persons apart
    assert first_records.duplicated(["first_name", "last_name"]).any()


def test_both_records_of_a_person_have_one_birth_date(
    store: SimulatedStore, customers: pd.DataFrame
) -> None:
    pairs = pd.DataFrame(store.truth["identity_links"], columns=["a", "b"])
    a, b = customers.loc[pairs["a"]], customers.loc[pairs["b"]]
    assert (a["date_of_birth"].to_numpy() == b["date_of_birth"].to_numpy()).all()
    assert (a["timezone"].to_numpy() == b["timezone"].to_numpy()).all()


# ---------------------------------------------------------------- placeholder emails
def test_placeholder_emails_are_planted_in_their_share(
    store: SimulatedStore, customers: pd.DataFrame
) -> None:
    truth = store.truth
    records = truth["placeholder_email_records"]
    assert records == sorted(records)
    assert len(records) == round(CONFIG.placeholder_email_share * CONFIG.customers)
    # exactly these records hold one, and only the listed values occur
    is_placeholder = customers["norm_email"].isin(PLACEHOLDERS)
    assert set(customers.index[is_placeholder]) == set(records)
    values = customers.loc[records, "norm_email"]
    assert set(values) == set(truth["placeholder_emails"]) == PLACEHOLDERS
    assert truth["placeholder_emails"] == sorted(truth["placeholder_emails"])
    # written with a little noise, each on the only record of a different person
    raw = customers.loc[records, "email"]
    assert (raw != values).any() and (raw == values).any()
    assert customers.loc[records, "person"].is_unique
    assert not set(records) & {cid for link in truth["identity_links"] for cid in link}


def test_placeholder_records_receive_no_campaign_email(store: SimulatedStore) -> None:
    sends = store.events.loc[store.events["event_type"] == "email_sent", "customer_id"]
    assert len(sends) > 0
    assert not sends.isin(store.truth["placeholder_email_records"]).any()


# ---------------------------------------------------------------- shared phones
def test_each_shared_phone_is_one_number_of_different_persons(
    store: SimulatedStore, customers: pd.DataFrame
) -> None:
    shared = store.truth["shared_phones"]
    assert {s["kind"] for s in shared} == {"household", "store"}
    assert shared == sorted(shared, key=lambda s: (s["kind"], s["phone"]))
    for entry in shared:
        ids = entry["customer_ids"]
        assert ids == sorted(ids)
        assert (customers.loc[ids, "norm_phone"] == entry["phone"]).all(), entry
        # every record holding the number is listed
        holders = customers.index[customers["norm_phone"] == entry["phone"]]
        assert set(holders) == set(ids), entry
        assert customers.loc[ids, "person"].nunique() >= 2, entry
    # and no other number is shared by two persons
    persons = customers.dropna(subset=["norm_phone"]).groupby("norm_phone")["person"].nunique()
    assert set(persons.index[persons > 1]) == {s["phone"] for s in shared}


def test_the_store_phone_is_a_fictional_number_on_its_share_of_records(
    store: SimulatedStore, customers: pd.DataFrame
) -> None:
    (entry,) = [s for s in store.truth["shared_phones"] if s["kind"] == "store"]
    assert entry["phone"].startswith("+1212555") and entry["phone"][-4:-2] == "01"
    ids = entry["customer_ids"]
    assert len(ids) == round(CONFIG.store_phone_share * CONFIG.customers)
    assert customers.loc[ids, "person"].is_unique
    assert customers.loc[ids, "phone"].nunique() > 1  # typed in several formats


# ---------------------------------------------------------------- households
def test_households_share_last_name_address_and_landline(
    store: SimulatedStore, customers: pd.DataFrame
) -> None:
    households = store.truth["households"]
    assert households == sorted(households)
    members = [cid for house in households for cid in house]
    assert len(members) == len(set(members))
    n_persons = store.truth["counts"]["persons"]
    assert abs(len(members) - CONFIG.household_share * n_persons) <= 0.01 * n_persons
    landlines = {
        frozenset(s["customer_ids"]): s["phone"]
        for s in store.truth["shared_phones"]
        if s["kind"] == "household"
    }
    assert len(landlines) == len(households)
    by_phone = {phone: set(ids) for ids, phone in landlines.items()}
    for house in households:
        assert house == sorted(house) and 2 <= len(house) <= 3
        rows = customers.loc[house]
        assert (rows.index == rows["person"]).all()  # first records of different persons
        for column in ("last_name", "address", "postcode", "city", "norm_phone", "timezone"):
            assert rows[column].nunique() == 1, (house, column)
        for column in ("first_name", "date_of_birth", "norm_email"):
            assert rows[column].is_unique, (house, column)
        assert set(house) <= by_phone[rows["norm_phone"].iloc[0]]
    assert any(customers.loc[house, "phone"].nunique() > 1 for house in households)


# ---------------------------------------------------------------- second records
def _pairs(store: SimulatedStore, customers: pd.DataFrame) -> pd.DataFrame:
    links = pd.DataFrame(store.truth["identity_links"], columns=["a", "b"])
    a = customers.loc[links["a"]].reset_index(drop=True)
    b = customers.loc[links["b"]].reset_index(drop=True)
    return a.join(b.add_suffix("_b")).assign(via=store.truth["identity_link_via"])


def test_fuzzy_duplicates_share_no_email_or_phone_with_their_first_record(
    store: SimulatedStore, customers: pd.DataFrame
) -> None:
    pairs = _pairs(store, customers)
    assert set(pairs["via"]) == {"email", "phone", "email+phone", "fuzzy"}
    fuzzy = pairs[pairs["via"] == "fuzzy"]
    assert len(fuzzy) == round(CONFIG.fuzzy_duplicate_share * len(pairs))
    assert fuzzy["norm_email_b"].notna().all()
    assert (fuzzy["norm_email"] != fuzzy["norm_email_b"]).all()
    assert fuzzy["phone_b"].isna().all()
    # never a re-casing: the other address is nobody else's
    counts = customers["norm_email"].value_counts()
    assert (fuzzy["norm_email_b"].map(counts) == 1).all()
    # and a real address is at most on one person's two records
    assert counts.drop(list(PLACEHOLDERS)).max() <= 2
    for column in ("date_of_birth", "address", "postcode", "city"):
        assert (fuzzy[column] == fuzzy[f"{column}_b"]).all(), column
    for a, b in zip(
        fuzzy["first_name"] + " " + fuzzy["last_name"],
        fuzzy["first_name_b"] + " " + fuzzy["last_name_b"],
        strict=True,
    ):
        assert _within_one_edit(a, b), (a, b)


def test_second_records_carry_typos_and_moves_in_their_shares(
    store: SimulatedStore, customers: pd.DataFrame
) -> None:
    pairs = _pairs(store, customers)
    name_a = pairs["first_name"] + " " + pairs["last_name"]
    name_b = pairs["first_name_b"] + " " + pairs["last_name_b"]
    typo = name_a != name_b
    assert typo.sum() == round(CONFIG.name_typo_share * len(pairs))
    assert all(_within_one_edit(a, b) for a, b in zip(name_a, name_b, strict=True))
    # one name changes, and never its first letter
    first_changed = pairs["first_name"] != pairs["first_name_b"]
    last_changed = pairs["last_name"] != pairs["last_name_b"]
    assert not (first_changed & last_changed).any()
    assert first_changed.any() and last_changed.any()
    assert (name_a.str[0] == name_b.str[0]).all()
    moved = pairs["address"] != pairs["address_b"]
    assert moved.sum() == round(CONFIG.moved_share * len(pairs))
    assert (pairs.loc[moved, "postcode"] != pairs.loc[moved, "postcode_b"]).all()
    assert (pairs.loc[~moved, "postcode"] == pairs.loc[~moved, "postcode_b"]).all()
    assert (pairs.loc[moved, "city"] != pairs.loc[moved, "city_b"]).any()
    assert (pairs.loc[moved, "country"] == pairs.loc[moved, "country_b"]).all()
    assert not (moved & (pairs["via"] == "fuzzy")).any()
    # a moved person still shares an email or a phone with the first record
    keys = (pairs["norm_email"] == pairs["norm_email_b"]) | (
        pairs["norm_phone"] == pairs["norm_phone_b"]
    )
    assert keys[moved].all()


# ---------------------------------------------------------------- determinism and off
def test_same_seed_same_customers_and_identity_truth(store: SimulatedStore) -> None:
    again = simulate(CONFIG)
    pd.testing.assert_frame_equal(store.customers, again.customers)
    keys = ("placeholder_email_records", "shared_phones", "households", "identity_link_via")
    for key in keys:
        assert json.dumps(store.truth[key]) == json.dumps(again.truth[key]), key
    other = simulate(CONFIG.model_copy(update={"seed": 1}))
    assert not other.customers["attributes"].equals(store.customers["attributes"])
    assert other.truth["households"] != store.truth["households"]


def test_identity_noise_switched_off_plants_none() -> None:
    shares = (
        "placeholder_email_share",
        "household_share",
        "store_phone_share",
        "name_typo_share",
        "moved_share",
        "fuzzy_duplicate_share",
    )
    config = SimulationConfig(customers=800, days=1, seed=2, **dict.fromkeys(shares, 0.0))
    sim = simulate(config)
    truth = sim.truth
    assert truth["placeholder_emails"] == truth["placeholder_email_records"] == []
    assert truth["shared_phones"] == truth["households"] == []
    assert set(truth["identity_link_via"]) == {"email", "phone", "email+phone"}
    attributes = sim.customers.set_index("customer_id")["attributes"].map(json.loads)
    for a, b in truth["identity_links"]:
        assert attributes[a] == attributes[b]
    phones = normalise_phone(sim.customers["phone"]).dropna()
    persons = _persons(sim).to_numpy()
    assert (pd.Series(persons[phones.index]).groupby(phones.to_numpy()).nunique() == 1).all()


def test_identity_shares_are_validated_naming_the_field() -> None:
    for name in ("placeholder_email_share", "household_share", "fuzzy_duplicate_share"):
        with pytest.raises(ValidationError, match=name):
            SimulationConfig(**{name: 1.5})
