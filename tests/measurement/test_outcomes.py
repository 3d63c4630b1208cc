"""Decisions joined to their outcomes: each attribution rule on a hand-made log."""

from __future__ import annotations

import pandas as pd
import pytest

from features.data.contracts import EVENTS
from features.errors import InputError
from measurement.outcomes import DECISION_COLUMNS, decision_outcomes

T0 = pd.Timestamp("2026-05-01 09:00", tz="UTC")


def _decision(decision_id, customer, strategy, *, slot="offer", campaign="spring", **extra):
    context = {} if campaign is None else {"campaign_id": campaign}
    versions = (
        {"snapshot": "s1", "recommender": "4"}
        if slot == "recommend"
        else {
            "snapshot": "s1",
            "selector": "2",
        }
    )
    return {
        "decision_id": decision_id,
        "ts": T0.timestamp(),
        "endpoint": "recommend" if slot == "recommend" else "choose",
        "customer_id": customer,
        "slot": slot,
        "strategy": strategy,
        "chosen": ["i1", "i2"] if slot == "recommend" else "offer-10",
        "propensity": extra.get("propensity", 1.0),
        "candidates": [],
        "versions": versions,
        "context": context,
    }


def _event(kind, customer, hours, *, campaign=None, decision_id=None, price=None):
    return {
        "event_id": f"e-{kind}-{customer}-{hours}",
        "event_type": kind,
        "customer_id": customer,
        "ts": T0 + pd.Timedelta(hours=hours),
        "campaign_id": campaign,
        "decision_id": decision_id,
        "price": price,
        "quantity": 2.0 if price is not None else None,
    }


def test_each_attribution_rule():
    decisions = pd.DataFrame(
        [
            _decision("d1", "c1", "model", propensity=0.9),
            _decision("d2", "c2", "model", slot="recommend", campaign=None),
            _decision("d3", "c3", "holdout"),
            _decision("d4", "c4", "fallback:cold_start"),
            _decision("d5", "c5", "rule:winback"),
        ]
    )
    events = pd.DataFrame(
        [
            # By id: long after the window, still the decision's.
            _event("email_click", "c1", 100, decision_id="d1"),
            # By customer and campaign, within the window: revenue = 20 × 2.
            _event("purchase", "c1", 1, campaign="spring", price=20.0),
            # Outside a campaign only the id counts.
            _event("email_click", "c2", 1, decision_id="d2"),
            _event("purchase", "c2", 2, price=5.0),
            # By customer and campaign but after the 72 h window: not counted.
            _event("email_open", "c3", 80, campaign="spring"),
            # Before the decision: not counted.
            _event("email_click", "c4", -1, campaign="spring"),
            # Another campaign: not counted.
            _event("email_click", "c5", 1, campaign="autumn"),
        ]
    )
    out = decision_outcomes(decisions, events).set_index("decision_id")
    assert out.loc["d1", ["clicked", "converted", "opened"]].tolist() == [True, True, True]
    assert out.loc["d1", "revenue"] == 40.0
    assert out.loc["d1", "margin"] == pytest.approx(40.0 * 0.4)
    assert out.loc["d2", ["clicked", "converted"]].tolist() == [True, False]
    assert pd.isna(out.loc["d2", "campaign_id"])
    assert out.loc["d2", "model_version"] == "4"
    assert out.loc["d1", "model_version"] == "2"
    assert not out.loc[["d3", "d4", "d5"], ["opened", "clicked", "converted"]].to_numpy().any()
    assert out["policy"].tolist() == ["model", "model", "holdout", "fallback", "rule"]
    assert out.loc["d1", "content_id"] == "offer-10"
    assert out.loc["d1", "propensity"] == 0.9


def test_a_log_with_nothing_to_measure_fails_naming_why():
    with pytest.raises(InputError, match="no decision"):
        decision_outcomes(pd.DataFrame(columns=list(DECISION_COLUMNS)), pd.DataFrame())
    bad = pd.DataFrame([_decision("d1", "c1", "guess")])
    with pytest.raises(InputError, match="strategy"):
        decision_outcomes(bad, pd.DataFrame(columns=["event_type"]))


def test_a_rule_decision_has_no_model_version_not_nan():
    decisions = pd.DataFrame(
        [
            _decision("d1", "c1", "model"),
            _decision("d2", "c2", "rule:winback")
            | {"versions": {"snapshot": "s1", "selector": None}},
        ]
    )
    no_events = pd.DataFrame(columns=EVENTS.names)
    out = decision_outcomes(decisions, no_events).set_index("decision_id")
    assert out.loc["d1", "model_version"] == "2"
    assert out.loc["d2", "model_version"] is None


def test_the_decision_log_names_the_person_even_when_the_send_row_names_a_record():
    # The renderer's email_sent row carries the record id it mailed (c1-dup); the
    # decision log holds the resolved person (c1). The click carrying the decision id
    # belongs to the person's decision.
    decisions = pd.DataFrame([_decision("d1", "c1", "model")])
    events = pd.DataFrame(
        [
            _event("email_sent", "c1-dup", 0, campaign="spring", decision_id="d1"),
            _event("email_click", "c1-dup", 2, campaign="spring", decision_id="d1"),
        ]
    )
    out = decision_outcomes(decisions, events)
    assert out["clicked"].tolist() == [True]
