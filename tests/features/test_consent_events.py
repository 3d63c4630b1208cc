"""Consent events in the snapshot: a person's consent at as_of is their record's,
overridden by later ``consent_change``, ``unsubscribe`` and ``resubscribe`` events;
hard bounces and complaints make them unsendable until consent is given again; and
without consent to profiling at as_of nothing behavioural is computed for them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.snapshot import CONSENT_COLUMNS, behaviour_feature_names
from tests.features.test_snapshot import CONFIG, customers, events, hours_before, row, snap

DAY = 24.0


def activity(customer: str) -> list[dict]:
    """Views in the last two days and a cart 30 hours ago (a segment and a trigger)."""
    return [
        {"ts": hours_before(h), "event_type": "product_view", "customer_id": customer, "item_id": i}
        for h, i in ((40, "i1"), (20, "i2"), (6, "i1"))
    ] + [
        {
            "ts": hours_before(30),
            "event_type": "add_to_cart",
            "customer_id": customer,
            "item_id": "i3",
        },
        {
            "ts": hours_before(20 * DAY),
            "event_type": "purchase",
            "customer_id": customer,
            "item_id": "i2",
            "price": 20.0,
            "order_id": f"o-{customer}",
        },
    ]


def change(customer: str, hours: float, **consent: bool) -> dict:
    return {
        "ts": hours_before(hours),
        "event_type": "consent_change",
        "customer_id": customer,
        "properties": json.dumps(consent),
    }


def event(kind: str, customer: str, hours: float, **properties: str) -> dict:
    extra = {"properties": json.dumps(properties)} if properties else {}
    return {"ts": hours_before(hours), "event_type": kind, "customer_id": customer, **extra}


def profiled(snapshot, customer: str) -> dict[str, bool]:
    """Where ``customer`` appears among the snapshot's behavioural tables."""
    behavioural = [c for c in behaviour_feature_names(CONFIG) if c in snapshot.customers.columns]
    return {
        "personalised": bool(row(snapshot, customer)["personalised"]),
        "features": bool(row(snapshot, customer)[behavioural].notna().any()),
        "interactions": customer in set(snapshot.user_ids),
        "segments": customer in set(snapshot.segments["customer_id"]),
        "triggers": customer in set(snapshot.triggers["customer_id"]),
        "affinity": customer in set(snapshot.category_affinity["customer_id"]),
    }


EVERYWHERE = dict.fromkeys(
    ("personalised", "features", "interactions", "segments", "triggers", "affinity"), True
)
NOWHERE = dict.fromkeys(EVERYWHERE, False)


# ----------------------------------------------------------------- consent to profiling
def test_a_withdrawal_before_as_of_removes_the_person_from_every_profile():
    baseline = snap(events(*activity("c1"), *activity("c2")))
    assert profiled(baseline, "c1") == EVERYWHERE

    withdrawn = snap(
        events(
            *activity("c1"), *activity("c2"), change("c1", 10 * DAY, consent_personalization=False)
        )
    )
    assert profiled(withdrawn, "c1") == NOWHERE
    assert profiled(withdrawn, "c2") == EVERYWHERE  # nobody else is touched
    c1 = row(withdrawn, "c1")
    assert c1["sendable"] and not c1["consent_personalization"]
    assert c1["consent_personalization_ts"] == hours_before(10 * DAY)
    # Item popularity is aggregate, not a profile: c1's views still count.
    views = [int(s.items.set_index("item_id").loc["i1", "views_7d"]) for s in (withdrawn, baseline)]
    assert views[0] == views[1] == 4  # c1's two views of i1 and c2's two
    # c2's own row of the interaction matrix is unchanged.
    keep = list(baseline.user_ids).index("c2")
    assert (withdrawn.interactions[0] != baseline.interactions[keep]).nnz == 0


def test_a_grant_after_the_withdrawal_restores_the_profile_whole():
    baseline = snap(events(*activity("c1")))
    regranted = snap(
        events(
            *activity("c1"),
            change("c1", 10 * DAY, consent_personalization=False),
            change("c1", 3 * DAY, consent_personalization=True),
        )
    )
    assert profiled(regranted, "c1") == EVERYWHERE
    # The same profile as never withdrawn: consent at as_of is what counts. (The
    # consent events are events of the person: they count in the event counts.)
    same = [
        "product_view_7d",
        "add_to_cart_7d",
        "purchase_90d",
        "orders",
        "monetary",
        "top_category",
        "lifecycle",
        "engagement_score",
    ]
    pd.testing.assert_series_equal(row(regranted, "c1")[same], row(baseline, "c1")[same])
    assert (regranted.interactions != baseline.interactions).nnz == 0
    pd.testing.assert_frame_equal(regranted.segments, baseline.segments)
    pd.testing.assert_frame_equal(regranted.triggers, baseline.triggers)


def test_an_event_grant_profiles_a_record_without_consent_and_after_as_of_changes_nothing():
    people = pd.concat([customers("c1", personalised=False), customers("c2")], ignore_index=True)
    granted = snap(
        events(*activity("c1"), change("c1", 2 * DAY, consent_personalization=True)), people
    )
    assert profiled(granted, "c1") == EVERYWHERE
    # A withdrawal at or after as_of is the next snapshot's business.
    late = snap(events(*activity("c2"), change("c2", 0, consent_personalization=False)), people)
    assert profiled(late, "c2") == EVERYWHERE


def test_a_later_record_update_wins_over_an_earlier_event_and_ties_withdraw():
    people = customers("c1", "c2", consent_updated_ts=hours_before(2 * DAY))
    log = events(
        *activity("c1"),
        *activity("c2"),
        change("c1", 10 * DAY, consent_personalization=False),  # before the record's update
        change("c2", 2 * DAY, consent_personalization=False),  # at the same time: withdraws
    )
    s = snap(log, people)
    assert profiled(s, "c1") == EVERYWHERE
    assert profiled(s, "c2") == NOWHERE


# ----------------------------------------------------------------- e-mail and deliverability
@pytest.mark.parametrize(
    ("log", "state"),
    [
        ([event("unsubscribe", "c1", 5 * DAY)], (False, True, False, False)),
        (
            [event("unsubscribe", "c1", 5 * DAY), event("resubscribe", "c1", 2 * DAY)],
            (True, False, False, False),
        ),
        ([change("c1", 5 * DAY, consent_email=False)], (False, False, False, False)),
        ([event("bounce", "c1", 5 * DAY)], (True, False, True, False)),
        ([event("bounce", "c1", 5 * DAY, bounce_type="hard")], (True, False, True, False)),
        ([event("bounce", "c1", 5 * DAY, bounce_type="soft")], (True, False, False, False)),
        ([event("complaint", "c1", 5 * DAY)], (True, False, False, True)),
        # A consent given after a bounce or a complaint makes the address mailable again.
        (
            [event("bounce", "c1", 5 * DAY), change("c1", 2 * DAY, consent_email=True)],
            (True, False, False, False),
        ),
        (
            [event("complaint", "c1", 5 * DAY), event("resubscribe", "c1", 2 * DAY)],
            (True, False, False, False),
        ),
        # … but not one given before it.
        (
            [change("c1", 5 * DAY, consent_email=True), event("complaint", "c1", 2 * DAY)],
            (True, False, False, True),
        ),
    ],
)
def test_email_consent_and_deliverability(log, state):
    consent_email, unsubscribed, bounced, complained = state
    c1 = row(snap(events(*log)), "c1")
    assert (
        bool(c1["consent_email"]),
        bool(c1["unsubscribed"]),
        bool(c1["hard_bounced"]),
        bool(c1["complained"]),
    ) == state
    assert bool(c1["sendable"]) == (
        consent_email and not unsubscribed and not bounced and not complained
    )
    assert c1["personalised"]  # e-mail consent is not consent to profiling


def test_a_record_without_email_consent_is_given_it_by_an_event():
    people = customers("c1", "c2", consent_email=False)
    s = snap(events(change("c1", 5 * DAY, consent_email=True), event("page_view", "c2", 1)), people)
    assert row(s, "c1")["sendable"] and row(s, "c1")["consent_email_ts"] == hours_before(5 * DAY)
    assert not row(s, "c2")["sendable"]
    assert pd.isna(row(s, "c2")["consent_email_ts"])  # the record's, without a time


def test_consent_columns_are_never_null_but_their_times():
    s = snap(
        events(
            *activity("c1"),
            change("c1", 3 * DAY, consent_personalization=False, consent_email=False),
            event("bounce", "c2", 1),
        )
    )
    flags = [c for c in CONSENT_COLUMNS if not c.endswith("_ts")]
    assert s.customers[flags].notna().all().all()
    assert s.customers["hard_bounced"].dtype == np.bool_
