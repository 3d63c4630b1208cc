"""The simulated store's response to a send the service chose: planted rates, events.

A :class:`~simulation.responses.Responder` must draw with the historical campaigns' own
models (its empirical rates cover :meth:`expected`, which agrees with ``truth``), keep
the planted ranking of subject lines and offers, answer events the events contract
takes and the training attribution rule attributes, and leave the simulator's output
as it was.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.data.contracts import EVENTS
from features.data.record_validation import type_records
from features.errors import InputError
from simulation import SimulatedStore, SimulationConfig, simulate
from simulation.responses import Expectation, Responder

CONFIG = SimulationConfig(customers=3000, days=20, seed=3)
SUBJECTS = ("subj_01", "subj_02", "subj_03", "subj_04", "subj_05", "subj_06", "subj_07")
OFFERS = ("offer_none", "offer_pct10", "offer_pct20", "offer_freeship")
Z = 4.0  # tolerance of the binomial checks, standard errors


@pytest.fixture(scope="module")
def store() -> SimulatedStore:
    return simulate(CONFIG)


@pytest.fixture(scope="module")
def responder(store: SimulatedStore) -> Responder:
    return Responder(store, seed=5)


def _mailable(store: SimulatedStore) -> list[str]:
    """Records with a real address (placeholders reach nobody)."""
    placeholder = set(store.truth["placeholder_email_records"])
    rows = store.customers[store.customers["email"].notna()]
    return [c for c in rows["customer_id"] if c not in placeholder]


def _at(store: SimulatedStore, day: float) -> datetime:
    return datetime.fromisoformat(store.truth["window"]["start"]) + timedelta(days=day)


@pytest.fixture(scope="module")
def sends(store: SimulatedStore, responder: Responder) -> pd.DataFrame:
    """About 11,000 sends over four occasions, two of them after the window (everyone
    who lapses has lapsed), each with a subject line and an offer drawn at random."""
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for c, day in enumerate((3.6, 9.6, 22.6, 25.6)):
        for customer in _mailable(store):
            sent_at = _at(store, day) + timedelta(seconds=int(rng.integers(0, 3600)))
            subject = SUBJECTS[int(rng.integers(0, len(SUBJECTS)))]
            offer = OFFERS[int(rng.integers(0, len(OFFERS)))]
            decisions = {"subject": f"d{len(rows)}s", "offer": f"d{len(rows)}o"}
            events = responder.respond(
                customer, f"cmp_live_{c}", sent_at, subject, offer, decisions
            )
            truth = responder.expected(customer, sent_at, subject, offer)
            kinds = {e["event_type"] for e in events}
            paid = sum(e["price"] * e["quantity"] for e in events if e["event_type"] == "purchase")
            rows.append(
                {
                    "customer_id": customer,
                    "campaign_id": f"cmp_live_{c}",
                    "sent_at": sent_at,
                    "subject": subject,
                    "offer": offer,
                    **{f"d_{k}": v for k, v in decisions.items()},
                    "events": events,
                    "opened": "email_open" in kinds,
                    "clicked": "email_click" in kinds,
                    "converted": "purchase" in kinds,
                    "unsubscribed": "unsubscribe" in kinds,
                    "revenue": paid,
                    "p_open": truth.open,
                    "p_click": truth.click,
                    "p_conversion": truth.conversion,
                    "p_unsubscribe": truth.unsubscribe,
                    "p_revenue": truth.revenue,
                }
            )
    return pd.DataFrame(rows)


def _z(hits: pd.Series, p: pd.Series) -> float:
    """Standardised difference of a count of Bernoulli(p_i) outcomes from its mean."""
    return float((hits.sum() - p.sum()) / math.sqrt((p * (1 - p)).sum()))


@pytest.mark.parametrize("outcome", ["open", "click", "conversion", "unsubscribe"])
def test_empirical_rates_cover_the_expected_ones(sends: pd.DataFrame, outcome: str) -> None:
    hit = {"open": "opened", "click": "clicked", "conversion": "converted"}.get(
        outcome, "unsubscribed"
    )
    assert abs(_z(sends[hit], sends[f"p_{outcome}"])) < Z, (
        f"{outcome}: {sends[hit].mean():.4f} drawn, {sends[f'p_{outcome}'].mean():.4f} expected"
    )


def test_empirical_rates_cover_the_expected_ones_per_offer(sends: pd.DataFrame) -> None:
    for offer, rows in sends.groupby("offer"):
        assert abs(_z(rows["converted"], rows["p_conversion"])) < Z, offer
        assert abs(_z(rows["clicked"], rows["p_click"])) < Z, offer


def test_revenue_covers_the_expected_revenue(sends: pd.DataFrame) -> None:
    se = sends["revenue"].std() / math.sqrt(len(sends))
    assert abs(sends["revenue"].mean() - sends["p_revenue"].mean()) < Z * se


def test_lapsed_persons_open_less(store: SimulatedStore, sends: pd.DataFrame) -> None:
    lapsing = sends["customer_id"].isin(store.truth["lapsing_customers"])
    after = sends["sent_at"] > _at(store, CONFIG.days)
    before = ~after & lapsing & (sends["sent_at"] < _at(store, 6))
    assert sends.loc[after & lapsing, "p_open"].mean() < sends.loc[before, "p_open"].mean() / 2
    assert abs(_z(sends.loc[after & lapsing, "opened"], sends.loc[after & lapsing, "p_open"])) < Z


def test_expected_agrees_with_the_truth(store: SimulatedStore, responder: Responder) -> None:
    truth = store.truth
    model = truth["open_model"]
    at = _at(store, 2)  # before anyone lapses
    for customer in _mailable(store)[:200]:
        kind = truth["customer_type"][customer]
        for subject in SUBJECTS:
            traits = truth["subject_traits"][subject]
            effect = sum(truth["subject_trait_effects"][t] for t, on in traits.items() if on)
            logit = model["base_logit"] + truth["email_engagement"][customer] + effect
            p_open = 1 / (1 + math.exp(-logit))
            for offer in OFFERS:
                got = responder.expected(customer, at, subject, offer)
                assert got.open == pytest.approx(p_open, abs=1e-6)
                click = truth["offer_click"][kind][offer]
                assert got.click == pytest.approx(p_open * click, abs=1e-6)
                conversion = truth["offer_conversion"][kind][offer]
                assert got.conversion == pytest.approx(p_open * conversion, abs=1e-6)
    lapsed = truth["lapsing_customers"][0]
    after = datetime.fromisoformat(truth["lapse_ts"][lapsed]) + timedelta(seconds=1)
    got = responder.expected(lapsed, after, "subj_01", "offer_none")
    logit = model["base_logit"] + truth["email_engagement"][lapsed] - model["lapsed_penalty"]
    assert got.open == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-6)


def test_the_planted_ranking_is_recovered(store: SimulatedStore, responder: Responder) -> None:
    truth = store.truth
    customers = _mailable(store)
    at = _at(store, 2)
    mean_open = {
        s: np.mean([responder.expected(c, at, s, "offer_none").open for c in customers])
        for s in SUBJECTS
    }
    assert max(mean_open, key=lambda s: mean_open[s]) == truth["best_subject"]
    ranked = sorted(SUBJECTS, key=lambda s: mean_open[s])
    assert ranked == sorted(SUBJECTS, key=lambda s: truth["subject_open"][s])
    for kind, best in truth["best_offer"].items():
        of_kind = [c for c in customers if truth["customer_type"][c] == kind][:50]
        conversion = {
            o: np.mean([responder.expected(c, at, "subj_01", o).conversion for c in of_kind])
            for o in OFFERS
        }
        assert max(conversion, key=lambda o: conversion[o]) == best, kind


def test_a_better_subject_opens_every_email_a_worse_one_opens(
    store: SimulatedStore, responder: Responder
) -> None:
    opens = store.truth["subject_open"]
    best, worst = store.truth["best_subject"], min(opens, key=lambda s: opens[s])
    at = _at(store, 2)
    opened = {best: 0, worst: 0}
    for customer in _mailable(store)[:1500]:
        got = {
            s: bool(responder.respond(customer, "cmp_ab", at, s, "offer_none", {"subject": "d"}))
            for s in (best, worst)
        }
        assert got[best] or not got[worst], customer
        opened = {s: opened[s] + got[s] for s in opened}
    assert opened[best] > 1.5 * opened[worst]


def test_events_pass_the_events_contract(sends: pd.DataFrame) -> None:
    records = [e for events in sends["events"] for e in events]
    now = max(datetime.fromisoformat(e["ts"]) for e in records)
    typed = type_records(records, EVENTS, now=now)
    assert typed.rejected.empty, typed.rejected.head()
    assert len(typed.rows) == len(records)
    ids = [e["event_id"] for e in records]
    assert len(set(ids)) == len(ids)
    kinds = {e["event_type"] for e in records}
    assert kinds == {"email_open", "email_click", "checkout", "purchase", "unsubscribe"}


def test_events_follow_the_send_and_name_their_slot(sends: pd.DataFrame) -> None:
    window = timedelta(hours=CONFIG.attribution_hours)
    slot = {
        "email_open": "subject",
        "unsubscribe": "subject",
        "email_click": "offer",
        "purchase": "offer",
    }
    for send in sends.itertuples():
        times = [datetime.fromisoformat(e["ts"]) for e in send.events]
        assert times == sorted(times)
        for event, ts in zip(send.events, times, strict=True):
            assert event["customer_id"] == send.customer_id
            assert event["campaign_id"] == send.campaign_id
            assert ts > send.sent_at
            if event["event_type"] in ("checkout", "purchase"):
                assert ts <= send.sent_at + window
            if event["event_type"] in slot:
                s = slot[event["event_type"]]
                assert event["slot"] == s
                assert event["content_id"] == (send.subject if s == "subject" else send.offer)
                assert event["decision_id"] == getattr(send, f"d_{s}")


def test_attach_outcomes_attributes_every_outcome_to_its_send(sends: pd.DataFrame) -> None:
    # training's attribution rule, the one measurement joins decisions to outcomes by
    from training.selector_data import attach_outcomes

    sample = sends.iloc[:4000]
    records = [e for events in sample["events"] for e in events]
    now = max(datetime.fromisoformat(e["ts"]) for e in records)
    events = type_records(records, EVENTS, now=now).frame()
    decisions = pd.DataFrame(
        {
            "decision_id": sample["d_subject"],
            "customer_id": sample["customer_id"],
            "campaign_id": sample["campaign_id"],
            "ts": pd.to_datetime(sample["sent_at"], utc=True),
            "content_id": sample["subject"],
        }
    )
    offers = decisions.assign(decision_id=sample["d_offer"], content_id=sample["offer"])
    mapping = pd.concat([decisions, offers])[["decision_id", "customer_id", "campaign_id"]]
    joined = attach_outcomes(decisions, events, sends_by_decision=mapping)
    for column in ("opened", "clicked", "converted"):
        assert joined[column].tolist() == sample[column].tolist(), column
    assert joined["revenue"].to_numpy() == pytest.approx(sample["revenue"].to_numpy())


def test_same_seed_same_events_in_any_order(store: SimulatedStore, responder: Responder) -> None:
    customers = _mailable(store)[:300]
    at = _at(store, 5)

    def answer(r: Responder, order: list[str]) -> dict[str, list[dict[str, Any]]]:
        decisions = {"subject": "ds", "offer": "do"}
        return {c: r.respond(c, "cmp_x", at, "subj_03", "offer_pct20", decisions) for c in order}

    first = answer(responder, customers)
    again = answer(Responder(store, seed=5), customers[::-1])
    assert first == again
    other = answer(Responder(store, seed=6), customers)
    assert other != first
    ids = {e["event_id"] for events in other.values() for e in events}
    assert not ids & {e["event_id"] for events in first.values() for e in events}


def test_a_record_without_a_real_address_answers_nothing(
    store: SimulatedStore, responder: Responder
) -> None:
    customer = store.truth["placeholder_email_records"][0]
    at = _at(store, 5)
    assert responder.respond(customer, "cmp_x", at, "subj_02", "offer_pct20", {}) == []
    assert responder.expected(customer, at, "subj_02", "offer_pct20") == Expectation(
        0.0, 0.0, 0.0, 0.0, 0.0
    )


def test_with_propensities_the_send_is_logged_too(
    store: SimulatedStore, responder: Responder
) -> None:
    customer, at = _mailable(store)[0], _at(store, 5)
    args = (customer, "cmp_x", at, "subj_02", "offer_pct20", {"subject": "ds"})
    events = responder.respond(*args, propensities={"subject": 0.25})
    sent = [e for e in events if e["event_type"] == "email_sent"]
    assert events[:2] == sent
    assert [(e["slot"], e["content_id"], e["decision_id"], e.get("propensity")) for e in sent] == [
        ("subject", "subj_02", "ds", 0.25),
        ("offer", "offer_pct20", "ds", None),  # a slot without a decision borrows the other's
    ]
    assert all(e["ts"] == at.strftime("%Y-%m-%dT%H:%M:%SZ") for e in sent)
    assert events[2:] == responder.respond(*args)  # the same outcomes
    assert type_records(sent, EVENTS, now=at).rejected.empty


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject_id": None}, "subject_id"),
        ({"offer_id": None}, "offer_id"),
        ({"subject_id": "subj_09"}, "subject_id"),  # planted, but inactive
        ({"offer_id": "offer_default"}, "offer_id"),
        ({"customer_id": "c9999999"}, "customer_id"),
        ({"sent_at": datetime(2026, 10, 5)}, "sent_at"),
        ({"decision_ids": {"products": "d"}}, "decision_ids"),
        ({"propensities": {"products": 0.5}}, "propensities"),
    ],
)
def test_bad_input_raises_naming_the_field(
    store: SimulatedStore, responder: Responder, change: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {
        "customer_id": _mailable(store)[0],
        "campaign_id": "cmp_x",
        "sent_at": _at(store, 5),
        "subject_id": "subj_01",
        "offer_id": "offer_none",
        "decision_ids": {"subject": "d"},
        **change,
    }
    with pytest.raises(InputError) as raised:
        responder.respond(**args)
    assert raised.value.field == field
    if isinstance(change[field], str):
        assert change[field] in str(raised.value)


def test_a_store_that_its_config_does_not_make_is_refused(store: SimulatedStore) -> None:
    truth = copy.deepcopy(store.truth)
    truth["config"]["seed"] = 4
    with pytest.raises(InputError, match="store"):
        Responder(dataclasses.replace(store, truth=truth), seed=0)


def _digest(config: SimulationConfig) -> str:
    store = simulate(config)
    digest = hashlib.sha256()
    for name in ("customers", "catalog", "content", "events"):
        digest.update(getattr(store, name).to_csv(index=False).encode())
    digest.update(json.dumps(store.truth, sort_keys=True).encode())
    return digest.hexdigest()


# Computed with the simulator as it was before its outcome draws were factored out of
# simulation/campaigns.py for the Responder (same digest, same pandas): the factoring
# must leave every table and the truth byte for byte as they were.
BEFORE = {
    CONFIG: "fc5a8af4afeaa78cdb7824d409f1dcda15e24eed0138d90f6dfb1805db05459d",
    SimulationConfig(customers=300, days=14, seed=7): (
        "7e486c8b30c14a7003d944c60af591339ab4600976895ed4a07f86d41bce92f1"
    ),
}


@pytest.mark.parametrize("config", list(BEFORE), ids=["3000x20", "300x14"])
def test_the_simulator_output_is_unchanged(config: SimulationConfig) -> None:
    assert _digest(config) == BEFORE[config]
