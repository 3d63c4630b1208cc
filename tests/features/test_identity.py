"""Identity resolution: unit cases and the simulator's planted duplicates."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.identity import normalise_email, normalise_phone, resolve_identities
from features.ingest import ingest_file
from features.segments import load_segments
from features.settings import FeatureConfig
from features.simulator import SimulationConfig, simulate, write_store
from features.snapshot import behaviour_feature_names, build_snapshot
from features.store import EventStore

REPO = Path(__file__).resolve().parents[2]


def test_normalisation():
    emails = pd.Series([" Jane.Doe@Example.COM ", "jane.doe@example.com", "not-an-email", None])
    normal_emails = normalise_email(emails)
    assert normal_emails.iloc[:2].tolist() == ["jane.doe@example.com"] * 2
    assert normal_emails.iloc[2:].isna().all()
    phones = pd.Series(["(415) 555-2671", "+1 415.555.2671", "415 555 2671", "12", None])
    normal = normalise_phone(phones, "US")
    assert normal.iloc[:3].tolist() == ["+14155552671"] * 3
    assert normal.iloc[3:].isna().all()
    assert normalise_phone(pd.Series(["020 7946 0958"]), "GB").iloc[0] == "+442079460958"


def test_transitive_merge_through_email_then_phone():
    people = pd.DataFrame(
        {
            "customer_id": ["c3", "c1", "c2", "c4"],
            "email": ["a@x.com", " A@X.com", "b@x.com", "d@x.com"],
            "phone": [None, "415-555-2671", "(415) 555 2671", None],
        }
    )
    identity = resolve_identities(people, pd.DataFrame(columns=["customer_id", "anonymous_id"]))
    canonical = identity.canonical("customer")
    assert canonical.to_dict() == {"c1": "c1", "c2": "c1", "c3": "c1", "c4": "c4"}


@pytest.fixture(scope="module")
def simulated_snapshot(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    config = SimulationConfig(customers=1500, days=20, seed=11)
    sim = simulate(config)
    paths = write_store(sim, folder / "data")
    store = EventStore(folder / "store")
    now = datetime(2026, 11, 28, tzinfo=UTC)
    for kind in ("customers", "catalog", "content", "events"):
        ingest_file(paths[kind], kind=kind, store=store, now=now)
    features = FeatureConfig()
    segments = load_segments(None, behaviour_feature_names(features))
    end = config.start + timedelta(days=config.days)
    snapshot = build_snapshot(store, as_of=end, config=features, segments=segments)
    return sim, snapshot


def _pairs(groups: pd.Series) -> set[frozenset[str]]:
    pairs: set[frozenset[str]] = set()
    for members in groups:
        pairs.update(frozenset(p) for p in itertools.combinations(sorted(members), 2))
    return pairs


def test_planted_duplicates_are_found_without_false_merges(simulated_snapshot):
    sim, snapshot = simulated_snapshot
    canonical = snapshot.identity.canonical("customer")
    truth_links = {frozenset(pair) for pair in sim.truth["identity_links"]}
    assert truth_links, "the simulator planted no duplicates"
    found = _pairs(canonical.groupby(canonical.to_numpy()).apply(lambda s: list(s.index)))
    true_positive = len(found & truth_links)
    precision = true_positive / len(found)
    recall = true_positive / len(truth_links)
    print(
        f"identity: {len(truth_links)} planted links, precision {precision:.3f}, "
        f"recall {recall:.3f}"
    )
    assert recall == 1.0
    assert precision == 1.0


def test_anonymous_links_and_shared_devices(simulated_snapshot):
    sim, snapshot = simulated_snapshot
    person = snapshot.identity.canonical("customer")
    anonymous = snapshot.identity.canonical("anonymous")
    shared = {d["anonymous_id"] for d in sim.truth["shared_devices"]}
    for anonymous_id, customer_id in sim.truth["anonymous_links"].items():
        if anonymous_id in shared:
            continue
        assert anonymous[anonymous_id] == person[customer_id], anonymous_id
    conflicts = snapshot.identity.conflicts
    assert set(conflicts["anonymous_id"]) == shared
    assert not shared & set(anonymous.index)
