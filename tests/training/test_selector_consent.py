"""Selector training learns only from decisions of customers who had consented to
profiling when they were decided — a consent withdrawn or given again by a
``consent_change`` event counts from the event on, as a record's consent does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.data.ingest import ingest_file
from features.data.store import EventStore
from features.segments import SegmentSet
from features.settings import FeatureConfig
from training.selector_job import build_selector_data, store_features_at

NOW = datetime(2026, 11, 28, tzinfo=UTC)
FIRST = pd.Timestamp("2026-11-10T09:00:00Z")  # the first campaign's sends
SECOND = pd.Timestamp("2026-11-20T09:00:00Z")  # the second's
PEOPLE = [f"c{i:02d}" for i in range(40)]
WITHDRAWN = PEOPLE[:10]  # withdraw consent to profiling before the first campaign
REGRANTED = PEOPLE[:5]  # … and give it again before the second


def _store(folder: Path) -> EventStore:
    customers = pd.DataFrame(
        {
            "customer_id": PEOPLE,
            "email": [f"{c}@example.com" for c in PEOPLE],
            "country": "US",
            "signup_ts": "2025-01-01T00:00:00Z",
            "consent_email": True,
            "consent_personalization": True,
            "consent_updated_ts": "2025-01-01T00:00:00Z",
        }
    )
    content = pd.DataFrame(
        {
            "content_id": ["s1", "s2", "offer_none"],
            "slot": ["subject", "subject", "offer"],
            "text": ["Spring is here", "Your picks, {first_name}", "No offer"],
            "attributes": [None, None, json.dumps({"offer_type": "none"})],
            "active": True,
        }
    )
    rows: list[dict[str, object]] = []
    for i, customer in enumerate(PEOPLE):
        rows.append(
            {
                "ts": (FIRST - timedelta(days=3, hours=i)).isoformat(),
                "event_type": "product_view",
                "customer_id": customer,
                "item_id": f"i{i % 3}",
            }
        )
        for campaign, sent in (("k1", FIRST), ("k2", SECOND)):
            variant = "s1" if i % 2 else "s2"
            rows.append(
                {
                    "ts": sent.isoformat(),
                    "event_type": "email_sent",
                    "customer_id": customer,
                    "campaign_id": campaign,
                    "slot": "subject",
                    "content_id": variant,
                    "decision_id": f"{campaign}-{customer}",
                    "propensity": 0.5,
                }
            )
            if i % 3 == 0:
                rows.append(
                    {
                        "ts": (sent + timedelta(hours=2)).isoformat(),
                        "event_type": "email_click",
                        "customer_id": customer,
                        "campaign_id": campaign,
                        "decision_id": f"{campaign}-{customer}",
                    }
                )
    for customer in WITHDRAWN:
        rows.append(_consent(customer, FIRST - timedelta(days=5), False))
    for customer in REGRANTED:
        rows.append(_consent(customer, SECOND - timedelta(days=5), True))
    events = pd.DataFrame(rows)
    events.insert(0, "event_id", [f"e{k}" for k in range(len(events))])
    store = EventStore(folder / "store")
    for kind, frame in (("customers", customers), ("content", content), ("events", events)):
        path = folder / f"{kind}.jsonl"
        frame.to_json(path, orient="records", lines=True)
        ingest_file(path, kind=kind, store=store, now=NOW)
    return store


def _consent(customer: str, at: pd.Timestamp, personalised: bool) -> dict[str, object]:
    return {
        "ts": at.isoformat(),
        "event_type": "consent_change",
        "customer_id": customer,
        "properties": json.dumps({"consent_personalization": personalised}),
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    store = _store(tmp_path_factory.mktemp("selector-consent"))
    return build_selector_data(
        store.read("events"),
        store.read("content"),
        store.read("customers"),
        store_features_at(store, FeatureConfig(), SegmentSet(())),
        slot="subject",
        reward="click",
    )


def test_decisions_of_customers_without_consent_at_the_send_are_not_learned_from(data):
    table = data.table.assign(learnable=data.learnable)
    learnable = table.set_index(["campaign_id", "customer_id"])["learnable"]
    for customer in PEOPLE:
        withdrawn = customer in WITHDRAWN
        regranted = customer in REGRANTED
        assert learnable[("k1", customer)] == (not withdrawn), customer
        assert learnable[("k2", customer)] == (not withdrawn or regranted), customer
    assert int(data.learnable.sum()) == len(PEOPLE) * 2 - len(WITHDRAWN) * 2 + len(REGRANTED)


def test_no_profile_of_a_customer_without_consent_reaches_the_design(data):
    refused = ~data.learnable
    assert refused.any()
    behavioural = [c for c in ("product_view_7d", "product_view_30d") if c in data.table]
    assert behavioural, "the table carries the customers' view counts"
    # Profiled rows carry the counts; refused rows carry nothing to learn from.
    assert data.table.loc[data.learnable, behavioural].notna().all().all()
    assert data.table.loc[refused, behavioural].isna().all().all()
    assert set(data.table.loc[refused, "customer_id"]) == set(WITHDRAWN)
