"""Live consent, suppression and frequency caps: a consent change holds from the next
request, survives a reload, is audited; every answer says whether the customer may be
e-mailed and, if not, why — against a real ``bentoml serve`` on loopback and the
decision core on a real trained home."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from bench.server import Server
from cli.settings import Settings
from features.data.store import EventStore
from features.pii.contacts import normalised
from features.privacy.ledger import PrivacyLedger
from features.settings import FrequencyCap, PrivacyConfig
from features.snapshot import latest_snapshot, load_snapshot
from serving.core import DecisionCore
from serving.errors import ApiError
from serving.gateway import required_scope
from serving.schemas import ChooseRequest, ConsentRequest, RecommendBatchRequest, RecommendRequest
from tests.serving.conftest import settings_for

KEYS = {
    "test-admin-key": ["decide", "ingest", "admin"],
    "test-decide-key": ["decide"],
    "test-ingest-key": ["ingest"],
}
ADMIN = {"Authorization": "Bearer test-admin-key"}
DECIDE = {"Authorization": "Bearer test-decide-key"}
INGEST = {"Authorization": "Bearer test-ingest-key"}
INGEST_KEY_ID = f"settings-{sorted(KEYS).index('test-ingest-key')}"  # StaticKeys' ids
CAP = FrequencyCap(channel="email", max_sends=3, period_days=7)


# ---------------------------------------------------------------------- helpers
def _at(days_ago: float = 0.0) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()


def _event(
    event_id: str, customer: str, kind: str, days_ago: float = 0.0, **fields: object
) -> dict[str, object]:
    base = {"event_id": event_id, "ts": _at(days_ago), "event_type": kind, "customer_id": customer}
    return base | fields


def _consent(event_id: str, customer: str, **consent: bool) -> dict[str, object]:
    return _event(event_id, customer, "consent_change", properties=consent)


def _send(
    event_id: str, customer: str, campaign: str, days_ago: float, **fields: object
) -> dict[str, object]:
    """An ``email_sent`` row (the subject's decision unless ``slot`` says otherwise)."""
    return _event(
        event_id,
        customer,
        "email_sent",
        days_ago,
        **({"campaign_id": campaign, "slot": "subject", "content_id": "subj_01"} | fields),
    )


def _candidates(home: Path) -> dict[str, list[str]]:
    """Customers by kind: ``quiet`` (profiled, with history, no trigger or segment),
    ``refused`` (no consent to profiling), ``unmailed`` (sendable, no send in the last
    seven days: nothing of the store's own log counts towards a cap)."""
    snapshot = load_snapshot(latest_snapshot(home / "features"))
    customers = snapshot.customers
    busy = set(snapshot.triggers["customer_id"]) | set(snapshot.segments["customer_id"])
    personal = customers["personalised"].astype(bool)
    quiet = [
        str(c)
        for c in customers.loc[personal, "customer_id"]
        if c not in busy and c in set(snapshot.user_ids)
    ]
    events = EventStore(home / "store").read("events")
    sent = events[
        (events["event_type"] == "email_sent")
        & (events["ts"] >= pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=8))
    ]
    sendable = customers["sendable"].astype(bool)
    unmailed = [
        str(c) for c in customers.loc[sendable, "customer_id"] if c not in set(sent["customer_id"])
    ]
    return {
        "quiet": quiet,
        "refused": [str(c) for c in customers.loc[~personal, "customer_id"]],
        "unmailed": unmailed,
    }


def _core(home: Path, *, caps: tuple[FrequencyCap, ...] = (), **serving: object) -> DecisionCore:
    settings = settings_for(home, **serving)
    settings = settings.model_copy(update={"privacy": PrivacyConfig(frequency_caps=caps)})
    core = DecisionCore(settings)
    core.reload()
    return core


def _email(home: Path, customer: str) -> str:
    customers = EventStore(home / "store").read("customers").set_index("customer_id")
    value = normalised("email", pd.Series([customers.loc[customer, "email"]], dtype="string"))
    return str(value.iloc[0])


# ---------------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def server(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("consent") / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("online", "demo"))
    env = {
        "TAILOR_SERVING__BATCH_LIMIT": "50",
        "TAILOR_SERVING__FALLBACK_EPSILON": "0.2",  # fallbacks explore; consent never does
        "TAILOR_SERVING__REGISTRY_POLL_SECONDS": "1",
        "TAILOR_PRIVACY__FREQUENCY_CAPS": json.dumps([CAP.model_dump()]),
    }
    running = Server(home, keys=KEYS, env=env, ready_timeout=120)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def people(server: Server) -> dict[str, list[str]]:
    return _candidates(server.home)


def _post(server: Server, path: str, body: object, headers: dict[str, str] = ADMIN):
    return server.client.post(path, json=body, headers=headers)


def _put(server: Server, customer: str, body: object, headers: dict[str, str] = INGEST):
    return server.client.put(f"/customers/{customer}/consent", json=body, headers=headers)


def test_a_withdrawal_posted_as_an_event_holds_from_the_next_decision(server, people):
    customer = people["quiet"][0]
    before = _post(server, "/recommend", {"customer_id": customer, "n": 5}).json()
    assert before["strategy"] == "model"
    assert (
        _post(server, "/choose", {"customer_id": customer, "slot": "offer"}).json()["strategy"]
        == "model"
    )
    posted = _post(
        server, "/events", {"events": [_consent("w-1", customer, consent_personalization=False)]}
    )
    assert posted.status_code == 200 and posted.json()["accepted"] == 1

    after = _post(server, "/recommend", {"customer_id": customer, "n": 5}).json()
    assert after["strategy"] == "consent" and after["model_version"] is None
    assert after["scores"] == [None] * 5 and after["sendable"] is True
    choice = _post(server, "/choose", {"customer_id": customer, "slot": "offer"}).json()
    assert choice["strategy"] == "consent" and choice["propensity"] == 1.0
    assert sorted(c["probability"] for c in choice["candidates"])[-1] == 1.0
    assert sum(c["probability"] for c in choice["candidates"]) == 1.0
    view = server.client.get(f"/customers/{customer}", headers=DECIDE).json()
    assert view["personalised"] is False and view["features"] == {} and view["segments"] == []
    # Fallbacks do explore here: consent is what took the exploration away.
    stranger = _post(server, "/choose", {"customer_id": "nobody-known", "slot": "offer"}).json()
    assert stranger["strategy"] == "fallback:cold_start" and stranger["propensity"] < 1.0


def test_consent_by_put_is_in_effect_at_once_and_audited_with_the_key_id(server, people):
    customer = people["quiet"][1]
    assert _post(server, "/recommend", {"customer_id": customer}).json()["strategy"] == "model"
    answer = _put(server, customer, {"consent_personalization": False})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["canonical_id"] == customer and body["known"] is True
    assert body["consent_personalization"] is False and body["personalised"] is False
    assert body["sendable"] is True and body["not_sendable_reason"] is None
    assert _post(server, "/recommend", {"customer_id": customer}).json()["strategy"] == "consent"

    ledger = PrivacyLedger.for_settings(Settings(home=server.home))
    entry = ledger.audit_log()[-1]
    assert (entry.actor, entry.action) == (INGEST_KEY_ID, "consent_change")
    assert entry.target == ledger.key("id", customer)
    assert entry.details["consent_personalization"] is False
    assert entry.details["event_id"] == body["event_id"]
    row = json.dumps([entry.actor, entry.target, entry.details])
    assert customer not in row, "the audit log holds the keyed hash, never the id"

    # E-mail consent withdrawn: still personalised again once consent is given back.
    mail = _put(server, customer, {"consent_email": False, "consent_personalization": True})
    assert mail.json()["sendable"] is False
    assert mail.json()["not_sendable_reason"] == "no_email_consent"
    again = _post(server, "/recommend", {"customer_id": customer}).json()
    assert again["strategy"] == "model"
    assert (again["sendable"], again["not_sendable_reason"]) == (False, "no_email_consent")


def test_put_consent_refuses_what_it_cannot_act_on(server, people):
    customer = people["quiet"][2]
    assert _put(server, customer, {"consent_email": False}, DECIDE).status_code == 403
    assert _put(server, customer, {"consent_email": False}, {}).status_code == 401
    # Erasing a customer is an administrative act, refused before any route is reached.
    for key in (DECIDE, INGEST):
        refused = server.client.delete(f"/customers/{customer}", headers=key)
        assert refused.status_code == 403 and "'admin'" in refused.json()["error"]["message"]
    empty = _put(server, customer, {})
    assert empty.status_code == 400 and "consent_email" in empty.json()["error"]["message"]
    unknown = _put(server, customer, {"consent_email": False, "marketing": True})
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "marketing"
    text = _put(server, customer, {"consent_email": "no"})
    assert text.status_code == 400 and text.json()["error"]["field"] == "consent_email"
    naive = _put(server, customer, {"consent_email": False, "ts": "2026-01-01T00:00:00"})
    assert naive.status_code == 400 and naive.json()["error"]["field"] == "ts"
    future = _put(server, customer, {"consent_email": False, "ts": _at(-30)})
    assert future.status_code == 409 and future.json()["error"]["field"] == "ts"
    # Nothing refused took effect.
    view = server.client.get(f"/customers/{customer}", headers=DECIDE).json()
    assert view["sendable"] is True and view["personalised"] is True


def test_a_campaign_batch_marks_exactly_the_suppressed_and_the_capped(server, people):
    (
        by_id,
        by_email,
        capped,
        old_send,
        two_sends,
        app_sends,
        slot_rows,
        both,
        unsubscribed,
        plain,
    ) = [c for c in people["unmailed"] if c not in people["quiet"][:3]][:10]
    ledger = PrivacyLedger.for_settings(Settings(home=server.home))
    ledger.suppress([("id", by_id), ("id", both), ("id", unsubscribed)], reason="legal-hold")
    ledger.suppress([("email", _email(server.home, by_email))], reason="spam-trap")
    events = [
        *(_send(f"cap-{k}", capped, f"k{k}", k + 0.5) for k in range(3)),
        *(_send(f"old-{k}", old_send, f"k{k}", days) for k, days in enumerate((1, 4, 8))),
        *(_send(f"two-{k}", two_sends, f"k{k}", k + 0.5) for k in range(2)),
        *(_send(f"app-{k}", app_sends, f"k{k}", k + 0.5, channel="app") for k in range(3)),
        # Two sends logged one row per slot (one campaign, one time): two, not four.
        *(
            _send(f"slot-{k}-{slot}", slot_rows, f"k{k}", 0, slot=slot, ts=sent)
            for k, sent in enumerate((_at(1), _at(2)))
            for slot in ("subject", "offer")
        ),
        *(_send(f"both-{k}", both, f"k{k}", k + 0.5) for k in range(3)),
        _event("unsub-1", unsubscribed, "unsubscribe"),
    ]
    posted = _post(server, "/events", {"events": events})
    assert posted.json()["accepted"] == len(events), posted.text

    batch = [by_id, by_email, capped, old_send, two_sends, app_sends, slot_rows, both]
    batch += [unsubscribed, plain, "nobody-known"]
    answer = _post(server, "/recommend_batch", {"customer_ids": batch, "n": 3})
    assert answer.status_code == 200, answer.text
    got = {
        r["customer_id"]: (r["sendable"], r["not_sendable_reason"])
        for r in answer.json()["results"]
    }
    assert got == {
        by_id: (False, "suppressed:legal-hold"),
        by_email: (False, "suppressed:spam-trap"),
        capped: (False, "frequency_cap:email:3/7d"),
        old_send: (True, None),
        two_sends: (True, None),
        app_sends: (True, None),
        slot_rows: (True, None),
        both: (False, "suppressed:legal-hold"),  # the first reason wins
        unsubscribed: (False, "unsubscribed"),
        plain: (True, None),
        "nobody-known": (False, "unknown_customer"),
    }
    choice = _post(server, "/choose", {"customer_id": capped, "slot": "subject"}).json()
    assert (choice["sendable"], choice["not_sendable_reason"]) == (
        False,
        "frequency_cap:email:3/7d",
    )
    # One more send reaches the cap; lifting a suppression takes effect at once.
    _post(server, "/events", {"events": [_send("two-9", two_sends, "k9", 0.1)]})
    ledger.unsuppress([("id", by_id)])
    again = _post(server, "/recommend_batch", {"customer_ids": [two_sends, by_id], "n": 3})
    reasons = [r["not_sendable_reason"] for r in again.json()["results"]]
    assert reasons == ["frequency_cap:email:3/7d", None]


def test_writes_about_customers_need_their_own_scopes():
    assert required_scope("/customers/c1/consent", "PUT") == "ingest"
    assert required_scope("/customers/c1", "DELETE") == "admin"
    assert required_scope("/customers/c1/consent", "DELETE") == "admin"
    assert required_scope("/customers/c1", "GET") == "decide"
    assert required_scope("/customers/c1/consent", "GET") == "decide"
    assert required_scope("/events", "POST") == "ingest"
    assert required_scope("/recommend", "PUT") == "decide"


# ---------------------------------------------------------------------- the core
def _reasons(core: DecisionCore, customers: list[str]) -> list[tuple[bool, str | None]]:
    batch = core.recommend_batch(RecommendBatchRequest(customer_ids=customers, n=2))
    return [(r.sendable, r.not_sendable_reason) for r in batch.results]


def test_unsubscribes_bounces_and_complaints_make_a_customer_unsendable_with_the_reason(home):
    core = _core(home)
    unsub, resub, complaint, hard, soft, typed, mail_off, regained = _candidates(home)["unmailed"][
        :8
    ]
    personalised = core.customer(hard).personalised
    answer = core.ingest_events(
        [
            _event("u1", unsub, "unsubscribe"),
            _event("r1", resub, "unsubscribe", 2),
            _event("r2", resub, "resubscribe", 1),
            _event("c1", complaint, "complaint"),
            _event("b1", hard, "bounce"),  # hard when no type is given
            _event("b2", soft, "bounce", properties={"bounce_type": "soft"}),
            _event("b3", typed, "bounce", properties={"bounce_type": "hard"}),
            _consent("m1", mail_off, consent_email=False),
            _event("g1", regained, "bounce", 2),
            _consent("g2", regained, consent_email=True),  # consent given after the bounce
        ]
    )
    assert answer.accepted == 10 and answer.rejected == []
    assert _reasons(core, [unsub, resub, complaint, hard, soft, typed, mail_off, regained]) == [
        (False, "unsubscribed"),
        (True, None),
        (False, "complaint"),
        (False, "hard_bounce"),
        (True, None),
        (False, "hard_bounce"),
        (False, "no_email_consent"),
        (True, None),
    ]
    choice = core.choose(ChooseRequest(customer_id=complaint, slot="subject"))
    assert (choice.sendable, choice.not_sendable_reason) == (False, "complaint")
    view = core.customer(hard)
    assert (view.sendable, view.not_sendable_reason) == (False, "hard_bounce")
    # Deliverability is not consent to profiling: it changes no personalisation.
    assert view.personalised is personalised


def test_a_reload_and_a_restart_keep_a_posted_withdrawal(home):
    core = _core(home)
    customer, mailer = _candidates(home)["quiet"][:2]
    core.ingest_events([_event("view-1", customer, "product_view", item_id="i000001")])
    assert core.online.profiles([customer])[customer].recent
    core.ingest_events(
        [
            _consent("w-1", customer, consent_personalization=False),
            _event("view-2", customer, "product_view", item_id="i000002"),  # after it: dropped
            _event("u-1", mailer, "unsubscribe"),
        ]
    )
    assert _recent_rows(core, customer) == 0, "a withdrawal deletes what was kept of them"

    def check(decisions: DecisionCore) -> None:
        assert decisions.recommend(RecommendRequest(customer_id=customer)).strategy == "consent"
        assert decisions.choose(ChooseRequest(customer_id=customer, slot="offer")).propensity == 1
        assert _recent_rows(decisions, customer) == 0
        assert _reasons(decisions, [mailer]) == [(False, "unsubscribed")]

    check(core)
    before = core.online.path
    core.reload(force=True)  # a new online store, built from the store and the log
    assert core.online.path != before
    check(core)
    core.close()
    restarted = _core(home)
    check(restarted)


def _recent_rows(core: DecisionCore, customer: str) -> int:
    with sqlite3.connect(core.online.path) as con:
        return int(
            con.execute(
                "SELECT count(*) FROM recent WHERE customer_id = ?", (customer,)
            ).fetchone()[0]
        )


def test_consent_given_again_personalises_from_the_snapshot_or_waits_for_the_next(home):
    core = _core(home)
    candidates = _candidates(home)
    customer, refused = candidates["quiet"][0], candidates["refused"][0]
    core.ingest_events([_consent("w", customer, consent_personalization=False)])
    assert core.recommend(RecommendRequest(customer_id=customer)).strategy == "consent"
    core.ingest_events([_consent("g", customer, consent_personalization=True)])
    assert core.recommend(RecommendRequest(customer_id=customer)).strategy == "model"
    assert "engagement_score" in core.customer(customer).features
    # The snapshot never profiled this one: consent now, a profile from the next snapshot.
    view = core.set_consent(refused, ConsentRequest(consent_personalization=True), actor="t")
    assert view.consent_personalization is True and view.personalised is False
    assert core.recommend(RecommendRequest(customer_id=refused)).strategy == "consent"


def test_an_unknown_visitor_who_withdraws_is_answered_consent_not_cold_start(home):
    core = _core(home, fallback_epsilon=0.3)
    core.ingest_events([_consent("w", "visitor-7", consent_personalization=False)])
    choice = core.choose(ChooseRequest(customer_id="visitor-7", slot="offer"))
    assert choice.strategy == "consent" and choice.propensity == 1.0
    assert (choice.sendable, choice.not_sendable_reason) == (False, "unknown_customer")
    other = core.choose(ChooseRequest(customer_id="visitor-8", slot="offer"))
    assert other.strategy == "fallback:cold_start" and other.propensity < 1.0


def test_set_consent_refuses_a_time_in_the_future_naming_it(home):
    core = _core(home)
    customer = _candidates(home)["quiet"][0]
    future = datetime.now(UTC) + timedelta(days=30)
    with pytest.raises(ApiError) as refused:
        core.set_consent(customer, ConsentRequest(consent_email=False, ts=future), actor="t")
    assert (refused.value.status, refused.value.field) == (409, "ts")
    assert "in the future" in refused.value.message
    assert core.recommend(RecommendRequest(customer_id=customer)).sendable is True


def test_frequency_caps_count_sends_back_past_the_recent_window(home):
    core = _core(home, caps=(FrequencyCap(channel="app", max_sends=2, period_days=30),))
    customer = _candidates(home)["unmailed"][0]
    assert _reasons(core, [customer]) == [(True, None)]
    # 20 and 25 days ago: beyond the 14 days of recent events kept for triggers.
    core.ingest_events(
        [
            _send("s1", customer, "k1", 20, channel="app"),
            _send("s2", customer, "k2", 25, channel="app"),
        ]
    )
    assert _reasons(core, [customer]) == [(False, "frequency_cap:app:2/30d")]
    core.reload(force=True)
    assert _reasons(core, [customer]) == [(False, "frequency_cap:app:2/30d")]


def test_erase_deletes_every_row_of_a_person(home):
    core = _core(home)
    customer = _candidates(home)["quiet"][0]
    core.ingest_events(
        [
            _event("v", customer, "product_view", item_id="i000001"),
            _send("s", customer, "k1", 1),
            _event("u", customer, "unsubscribe"),
        ]
    )
    store = core.online
    counts = store.erase([customer])
    assert counts["profiles"] == 1 and counts["consent"] == 1 and counts["recent"] >= 1
    assert counts["sends"] >= 1 and counts["contacts"] >= 1
    with sqlite3.connect(store.path) as con:
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            columns = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
            for column in {"customer_id", "source_id"} & columns:
                left = con.execute(
                    f"SELECT count(*) FROM {table} WHERE {column} = ?", (customer,)
                ).fetchone()[0]
                assert left == 0, (table, column)
    assert store.erase([customer]) == dict.fromkeys(counts, 0)
    profile = store.profiles([customer])[customer]
    assert not profile.known and profile.not_sendable_reason == "unknown_customer"
