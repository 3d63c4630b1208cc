"""The decision core without HTTP: rules, consent, fallbacks, filters, exploration,
events and reloads, on a real trained home (store, snapshot, MLflow registry)."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.data.online_log import OnlineEventLog, compact
from features.data.store import EventStore
from features.errors import InputError
from features.snapshot import latest_snapshot, load_snapshot
from models.policy import Policy
from models.selector import OutcomeModel
from serving.core import DecisionCore
from serving.errors import BatchTooLarge, NotReady, UnknownCandidates
from serving.rules import compile_rules, load_rules
from serving.schemas import (
    ChooseRequest,
    Filters,
    RecommendBatchRequest,
    RecommendRequest,
    SimilarItemsRequest,
)
from tests.serving.conftest import posted_event, settings_for

OFFERS = ["offer_freeship", "offer_none", "offer_pct10", "offer_pct20"]


def _core(home: Path, **serving: object) -> DecisionCore:
    core = DecisionCore(settings_for(home, **serving))
    core.reload()
    return core


def _snapshot(home: Path):
    return load_snapshot(latest_snapshot(home / "features"))


def _quiet_customer(home: Path) -> str:
    """A personalised customer with no active trigger and no segment default."""
    snapshot = _snapshot(home)
    people = snapshot.customers[snapshot.customers["personalised"].astype(bool)]
    busy = set(snapshot.triggers["customer_id"]) | set(
        snapshot.segments.loc[snapshot.segments["segment"] == "new_subscriber", "customer_id"]
    )
    ids = [c for c in people["customer_id"] if c not in busy and c in set(snapshot.user_ids)]
    return str(ids[0])


def _iso(seconds_ago: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds_ago, UTC).isoformat()


def _cart(customer: str, item: str, hours_ago: float, event_id: str) -> dict:
    at = datetime.now(UTC) - timedelta(hours=hours_ago)
    return posted_event(event_id, customer, kind="add_to_cart", item=item, at=at)


# ---------------------------------------------------------------------- loading / status
def test_loads_champions_and_snapshot_and_says_ready(home):
    core = _core(home)
    status = core.status()
    assert status.state == "ready", status.reasons
    assert status.models == {
        "tailor-recommender": "1",
        "tailor-selector-subject": "1",
        "tailor-selector-offer": "1",
    }
    assert status.snapshot is not None and status.snapshot.startswith("as_of=")
    assert core.ready()


def test_no_registered_model_serves_fallbacks_and_is_degraded(home):
    (home / "mlflow" / "mlflow.db").unlink()  # an empty registry
    core = _core(home)
    status = core.status()
    assert status.state == "degraded"
    assert any("no tailor-recommender champion" in r for r in status.reasons)
    assert core.ready()  # popular items and default content can still be served
    customer = _quiet_customer(home)
    result = core.recommend(RecommendRequest(customer_id=customer, n=5))
    assert result.strategy == "fallback:popular" and len(result.items) == 5
    assert result.fallback_reason == "no recommender loaded"
    choice = core.choose(ChooseRequest(customer_id=customer, slot="offer"))
    assert choice.strategy == "fallback:default" and choice.content_id == "offer_none"


def test_registry_unreachable_after_start_keeps_serving(home):
    core = _core(home)
    customer = _quiet_customer(home)
    before = core.recommend(RecommendRequest(customer_id=customer, n=5, decision_id="d1"))
    core.tracking = "postgresql://nobody@127.0.0.1:1/none"
    status = core.reload()
    assert any("registry unreachable" in r for r in status.reasons)
    assert status.models["tailor-recommender"] == "1"
    after = core.recommend(RecommendRequest(customer_id=customer, n=5, decision_id="d1"))
    assert after.strategy == "model" and after.items == before.items


# ---------------------------------------------------------------------- recommend
def test_model_recommendation_respects_every_filter(home):
    core = _core(home)
    snapshot = _snapshot(home)
    customer = _quiet_customer(home)
    result = core.recommend(RecommendRequest(customer_id=customer, n=20))
    assert result.strategy == "model" and result.model_version == "1"
    assert len(result.items) == len(set(result.items)) == 20
    assert result.scores == sorted(result.scores, reverse=True)
    items = snapshot.items.set_index("item_id")
    assert all(bool(items.loc[i, "in_stock"]) for i in result.items)

    category = str(items.loc[result.items[0], "category"])
    only = core.recommend(
        RecommendRequest(customer_id=customer, n=5, filters=Filters(categories=[category]))
    )
    assert {items.loc[i, "category"] for i in only.items} == {category}

    banned = result.items[:3]
    without = core.recommend(
        RecommendRequest(customer_id=customer, n=20, filters=Filters(exclude_items=banned))
    )
    assert not set(banned) & set(without.items)

    # Out-of-stock items only come back when the filter is off.
    out_of_stock = set(items.index[~items["in_stock"].astype(bool)])
    allowed_all = core.recommend(
        RecommendRequest(customer_id=customer, n=500, filters=Filters(in_stock_only=False))
    )
    assert out_of_stock & set(allowed_all.items)
    assert not out_of_stock & set(result.items)


def test_purchased_items_are_excluded_unless_asked(home):
    core = _core(home)
    customer = _quiet_customer(home)
    full = core.recommend(
        RecommendRequest(customer_id=customer, n=5, filters=Filters(exclude_purchased=False))
    )
    bought = full.items[0]
    response = core.ingest_events(
        [
            {
                "event_id": "buy-1",
                "ts": _iso(60),
                "event_type": "purchase",
                "customer_id": customer,
                "item_id": bought,
                "price": 10.0,
                "quantity": 1,
            }
        ]
    )
    assert response.accepted == 1
    after = core.recommend(RecommendRequest(customer_id=customer, n=5))
    assert bought not in set(after.items)
    kept = core.recommend(
        RecommendRequest(customer_id=customer, n=50, filters=Filters(exclude_purchased=False))
    )
    assert bought in set(kept.items)


def test_unknown_customer_gets_the_cold_start_fallback(home):
    core = _core(home)
    result = core.recommend(RecommendRequest(customer_id="never-seen", n=4))
    assert result.strategy == "fallback:cold_start"
    assert result.fallback_reason == "customer not in the snapshot"
    assert len(result.items) == 4
    popular = core.bundle.catalog.item_ids[core.bundle.catalog.popularity_order]
    in_stock = [i for i in popular if i in set(result.items)]
    assert result.items == in_stock[:4]


def test_a_customer_without_product_history_gets_a_fallback_not_a_model_answer(home):
    """Customers whose only events are e-mails: a model would score every item the same
    for them, so the answer is popular items with the reason, never ``strategy: model``."""
    core = _core(home)
    snapshot = _snapshot(home)
    customers = snapshot.customers
    with_history = set(snapshot.user_ids.astype(str))
    quiet = customers.loc[
        customers["personalised"].astype(bool)
        & ~customers["customer_id"].astype(str).isin(with_history),
        "customer_id",
    ]
    assert len(quiet), "the demo store has personalised customers with no product events"
    result = core.recommend(RecommendRequest(customer_id=str(quiet.iloc[0]), n=5))
    assert result.strategy == "fallback:popular"
    assert result.fallback_reason == "no product history to personalise from"
    assert result.model_version is None and len(result.items) == 5
    batch = core.recommend_batch(RecommendBatchRequest(customer_ids=list(quiet.astype(str)), n=3))
    strategies = {r.strategy for r in batch.results}
    assert "fallback:popular" in strategies and "model" not in strategies, strategies


def test_no_consent_means_no_personalisation(home):
    core = _core(home)
    snapshot = _snapshot(home)
    refused = snapshot.customers.loc[
        ~snapshot.customers["personalised"].astype(bool), "customer_id"
    ].iloc[0]
    result = core.recommend(RecommendRequest(customer_id=refused, n=5))
    assert result.strategy == "consent" and result.model_version is None
    choice = core.choose(ChooseRequest(customer_id=refused, slot="offer"))
    assert choice.strategy == "consent" and choice.content_id == "offer_none"
    view = core.customer(refused)
    assert view.personalised is False and view.features == {} and view.segments == []
    # Events of a customer without consent build no profile.
    core.ingest_events([_cart(refused, "i000001", 30, "refused-cart")])
    assert core.customer(refused).triggers == []


def test_batch_limit_and_strategy_mix(home):
    core = _core(home, batch_limit=50)
    snapshot = _snapshot(home)
    ids = list(snapshot.customers["customer_id"][:49]) + ["nobody"]
    response = core.recommend_batch(RecommendBatchRequest(customer_ids=ids, n=3))
    assert len(response.results) == 50
    assert sum(response.strategies.values()) == 50
    assert response.strategies["fallback:cold_start"] == 1
    assert "consent" in response.strategies and "model" in response.strategies
    with pytest.raises(BatchTooLarge, match="at most 50 recipients"):
        core.recommend_batch(RecommendBatchRequest(customer_ids=ids + ["x"], n=3))
    # Every answer is in the decision log.
    logged = core.decisions.read()
    assert set(response_ids := [r.decision_id for r in response.results]) <= set(
        logged["decision_id"]
    )
    assert len(response_ids) == 50


def test_a_filtered_batch_equals_filtering_each_cached_ranking_by_hand(home):
    core = _core(home)
    snapshot = _snapshot(home)
    catalog = core.bundle.catalog
    people = [str(c) for c in snapshot.customers["customer_id"]]
    categories = sorted(set(catalog.categories.tolist()) - {""})
    keep = set(categories[: len(categories) // 2])
    # Ban the items ranked first most often, so that exclusions bite into the cut.
    firsts = Counter(
        catalog.item_list[int(core.bundle.ranked.ids[row, 0])]
        for row in core.bundle.ranked.rows.values()
    )
    banned = [item for item, _ in firsts.most_common(5)]
    filters = Filters(categories=sorted(keep), exclude_items=banned)
    response = core.recommend_batch(
        RecommendBatchRequest(customer_ids=people, n=10, filters=filters)
    )
    purchased = core.online.purchased(people)
    checked = 0
    for result in response.results:
        cached = core.bundle.ranked.get(result.customer_id)
        if result.strategy != "model" or cached is None:
            continue
        expected = []
        for position in cached[0].tolist():
            if position < 0:
                break
            item = catalog.item_list[position]
            if (
                catalog.categories[position] in keep
                and catalog.in_stock[position]
                and item not in banned
                and item not in purchased.get(result.customer_id, [])
            ):
                expected.append(item)
        expected = expected[:10]
        # Anything after the ranking's own items is the popular top-up.
        assert result.items[: len(expected)] == expected
        assert len(result.items) == 10
        checked += 1
    assert checked > 50


def test_similar_items(home):
    core = _core(home)
    item = str(core.bundle.catalog.item_ids[core.bundle.catalog.popularity_order[0]])
    result = core.similar_items(SimilarItemsRequest(item_id=item, n=5))
    assert result.strategy == "model" and len(result.items) == 5
    assert item not in set(result.items)
    with pytest.raises(Exception, match="not in the catalog"):
        core.similar_items(SimilarItemsRequest(item_id="no-such-item"))


# ---------------------------------------------------------------------- rules
def _rules(tmp_path: Path, rules: list[dict], **extra: object) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"offer": "offer_none"}, **extra, "rules": rules}))
    return path


def test_highest_priority_rule_wins_and_names_itself(home, tmp_path):
    rules = [
        {
            "name": "low",
            "slot": "offer",
            "when": "known",
            "priority": 1,
            "content_id": "offer_pct10",
        },
        {
            "name": "high",
            "slot": "offer",
            "when": "known",
            "priority": 50,
            "content_id": "offer_pct20",
        },
        {
            "name": "never",
            "slot": "offer",
            "when": "!known",
            "priority": 99,
            "content_id": "offer_none",
        },
    ]
    core = _core(home, rules_file=_rules(tmp_path, rules))
    customer = _quiet_customer(home)
    choice = core.choose(ChooseRequest(customer_id=customer, slot="offer"))
    assert (choice.strategy, choice.content_id, choice.propensity) == (
        "rule:high",
        "offer_pct20",
        1.0,
    )
    # The forced content is not a candidate: its fallback content, then the next rule.
    rules[1]["fallback_content_id"] = "offer_freeship"
    core = _core(home, rules_file=_rules(tmp_path, rules))
    only = ["offer_freeship", "offer_pct10"]
    choice = core.choose(ChooseRequest(customer_id=customer, slot="offer", candidates=only))
    assert (choice.strategy, choice.content_id) == ("rule:high", "offer_freeship")
    choice = core.choose(
        ChooseRequest(customer_id=customer, slot="offer", candidates=["offer_pct10", "offer_none"])
    )
    assert (choice.strategy, choice.content_id) == ("rule:low", "offer_pct10")


def test_rules_see_the_request_context(home, tmp_path):
    rules = [
        {
            "name": "vip_campaign",
            "slot": "offer",
            "when": 'has(context.campaign) && context.campaign == "vip"',
            "priority": 10,
            "content_id": "offer_pct20",
        }
    ]
    core = _core(home, rules_file=_rules(tmp_path, rules))
    customer = _quiet_customer(home)
    vip = core.choose(
        ChooseRequest(customer_id=customer, slot="offer", context={"campaign": "vip"})
    )
    plain = core.choose(ChooseRequest(customer_id=customer, slot="offer"))
    assert vip.strategy == "rule:vip_campaign"
    assert plain.strategy == "model"


def test_a_rule_naming_an_unknown_feature_fails_at_load(tmp_path):
    path = _rules(
        tmp_path,
        [{"name": "typo", "slot": "offer", "when": "engagment_score > 1", "content_id": "x"}],
    )
    with pytest.raises(InputError, match=r"rules\.typo\.when.*unknown name engagment_score"):
        load_rules(path, {"engagement_score"})
    bad = _rules(tmp_path, [{"name": "s", "slot": "offer", "when": "true", "strategy": "popular"}])
    with pytest.raises(InputError, match="strategies apply to slot 'recommend'"):
        load_rules(bad, set())


def test_rules_naming_unknown_content_are_described_rule_by_rule():
    rules = compile_rules(
        {
            "defaults": {"offer": "offer_nope", "subject": "subj_01"},
            "segment_defaults": {"lapsed": {"offer": "offer_pct20", "recommend": "popular"}},
            "rules": [
                {
                    "name": "cart_items_first",
                    "slot": "recommend",
                    "when": "known",
                    "strategy": "trigger_items",
                },
                {"name": "ok", "slot": "offer", "when": "known", "content_id": "offer_none"},
                {
                    "name": "cart_abandoned_free_shipping",
                    "slot": "offer",
                    "when": "known",
                    "content_id": "offer_freeship",
                    "fallback_content_id": "offer_pct10",
                },
            ],
        },
        set(),
    )
    problems = rules.unknown_content(
        {"offer": ["offer_pct10", "offer_none"], "subject": ["subj_01"]}
    )
    assert problems == [
        "rules[2] cart_abandoned_free_shipping: content_id 'offer_freeship' is not active "
        "content of slot 'offer' (known: offer_none, offer_pct10)",
        "defaults.offer: content_id 'offer_nope' is not active content of slot 'offer' "
        "(known: offer_none, offer_pct10)",
        "segment_defaults.lapsed.offer: content_id 'offer_pct20' is not active content of "
        "slot 'offer' (known: offer_none, offer_pct10)",
    ]
    assert rules.unknown_content({"offer": OFFERS, "subject": ["subj_01"]}) == [
        "defaults.offer: content_id 'offer_nope' is not active content of slot 'offer' "
        "(known: offer_freeship, offer_none, offer_pct10, offer_pct20)"
    ]


def test_a_rule_naming_unknown_content_refuses_decisions_naming_the_rule(home, tmp_path):
    rules = [{"name": "typo", "slot": "offer", "when": "known", "content_id": "offer_frees"}]
    core = _core(home, rules_file=_rules(tmp_path, rules))
    status = core.status()
    assert not core.ready() and status.state == "degraded"
    assert any(
        "rules not loaded, decisions refused" in r
        and "rules[0] typo: content_id 'offer_frees' is not active content of slot 'offer' "
        "(known: offer_freeship, offer_none, offer_pct10, offer_pct20)"
        in r
        for r in status.reasons
    ), status.reasons
    customer = _quiet_customer(home)
    with pytest.raises(NotReady, match=r"rules\[0\] typo"):
        core.choose(ChooseRequest(customer_id=customer, slot="offer"))
    with pytest.raises(NotReady):
        core.recommend(RecommendRequest(customer_id=customer, n=3))
    # Fixed and reloaded: ready, and the rule decides.
    rules[0]["content_id"] = "offer_freeship"
    _rules(tmp_path, rules)
    core.reload()
    assert core.ready()
    choice = core.choose(ChooseRequest(customer_id=customer, slot="offer"))
    assert (choice.strategy, choice.content_id) == ("rule:typo", "offer_freeship")


def test_a_reload_with_bad_rules_keeps_the_old_ones_and_says_why(home, tmp_path):
    rules = [{"name": "all_pct20", "slot": "offer", "when": "known", "content_id": "offer_pct20"}]
    path = _rules(tmp_path, rules)
    core = _core(home, rules_file=path)
    customer = _quiet_customer(home)
    assert core.ready()
    rules[0]["content_id"] = "offer_gone"
    _rules(tmp_path, rules)
    status = core.reload()
    assert status.state == "degraded" and core.ready()
    assert any(
        "rules not reloaded, the previous rules stay" in r
        and "rules[0] all_pct20: content_id 'offer_gone'" in r
        for r in status.reasons
    ), status.reasons
    choice = core.choose(ChooseRequest(customer_id=customer, slot="offer"))
    assert (choice.strategy, choice.content_id) == ("rule:all_pct20", "offer_pct20")


def test_without_a_default_the_fallback_is_the_first_id_in_sort_order_and_says_so(home, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules: []\n")
    (home / "mlflow" / "mlflow.db").unlink()  # no selector: the fallbacks decide
    core = _core(home, rules_file=path)
    customer = _quiet_customer(home)
    for candidates in (None, ["offer_pct20", "offer_none", "offer_pct10"]):
        choice = core.choose(
            ChooseRequest(customer_id=customer, slot="offer", candidates=candidates)
        )
        expected = "offer_freeship" if candidates is None else "offer_none"
        assert (choice.strategy, choice.content_id) == ("fallback:default", expected)
        assert choice.fallback_reason == (
            f"no selector loaded; no default content for slot 'offer': {expected!r}, "
            "the first candidate id in sort order"
        )
    # A configured default that is not among the candidates says so too.
    path.write_text("defaults: {offer: offer_none}\nrules: []\n")
    core.reload()
    choice = core.choose(
        ChooseRequest(customer_id=customer, slot="offer", candidates=["offer_pct20", "offer_pct10"])
    )
    assert choice.content_id == "offer_pct10"
    assert "default 'offer_none' of slot 'offer' is not a candidate" in choice.fallback_reason


def test_segment_default_comes_before_the_slot_default(home, tmp_path):
    snapshot = _snapshot(home)
    segment = snapshot.segments["segment"].value_counts().index[0]
    member = str(
        snapshot.segments.loc[snapshot.segments["segment"] == segment, "customer_id"].iloc[0]
    )
    path = _rules(tmp_path, [], segment_defaults={segment: {"offer": "offer_pct10"}})
    (home / "mlflow" / "mlflow.db").unlink()  # no selector: the fallbacks decide
    core = _core(home, rules_file=path)
    choice = core.choose(ChooseRequest(customer_id=member, slot="offer"))
    assert (choice.strategy, choice.content_id) == (f"fallback:segment:{segment}", "offer_pct10")
    other = _quiet_customer(home)
    if segment not in core.online.profiles([other])[other].segments:
        choice = core.choose(ChooseRequest(customer_id=other, slot="offer"))
        assert (choice.strategy, choice.content_id) == ("fallback:default", "offer_none")


# ---------------------------------------------------------------------- choose
def test_unknown_candidates_are_refused_naming_them(home):
    core = _core(home)
    with pytest.raises(UnknownCandidates, match=r"\['nope', 'subj_01'\]"):
        core.choose(
            ChooseRequest(
                customer_id="c1", slot="offer", candidates=["offer_none", "nope", "subj_01"]
            )
        )


def test_exploration_propensities_match_the_draws_and_are_logged(home):
    (home / "mlflow" / "mlflow.db").unlink()
    core = _core(home, fallback_epsilon=0.2)
    customer = _quiet_customer(home)
    counts: Counter[str] = Counter()
    draws = 2000
    for i in range(draws):
        choice = core.choose(ChooseRequest(customer_id=customer, slot="offer", decision_id=f"d{i}"))
        probabilities = {c.content_id: c.probability for c in choice.candidates}
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert choice.propensity == pytest.approx(probabilities[choice.content_id])
        counts[choice.content_id] += 1
    expected = {c: 0.05 for c in OFFERS} | {"offer_none": 0.85}
    for content, p in expected.items():
        share = counts[content] / draws
        assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / draws), (content, share, p)
    # Replays give the same choice; every decision is logged with its propensity.
    again = core.choose(ChooseRequest(customer_id=customer, slot="offer", decision_id="d7"))
    first = core.decisions.read().set_index("decision_id").loc["d7"]
    first = first.iloc[0] if isinstance(first, pd.DataFrame) else first
    assert again.content_id == first["chosen"]
    assert again.propensity == pytest.approx(first["propensity"])
    assert first["strategy"] == "fallback:default"
    assert [c[0] for c in first["candidates"]] == OFFERS


def test_selector_scores_every_candidate_and_logs_versions(home):
    core = _core(home)
    customer = _quiet_customer(home)
    choice = core.choose(ChooseRequest(customer_id=customer, slot="subject"))
    assert choice.strategy == "model" and choice.model_version == "1"
    assert all(c.score is not None and 0 <= c.score <= 1 for c in choice.candidates)
    assert sum(c.probability for c in choice.candidates) == pytest.approx(1.0)
    logged = core.decisions.read().iloc[-1]
    assert logged["versions"]["selector"] == "1" and logged["slot"] == "subject"


# ---------------------------------------------------------------------- events
def test_an_abandoned_cart_changes_the_next_offer_and_recommendation(home):
    core = _core(home)
    customer = _quiet_customer(home)
    item = str(core.bundle.catalog.item_ids[core.bundle.catalog.popularity_order[3]])
    assert core.choose(ChooseRequest(customer_id=customer, slot="offer")).strategy == "model"

    # A cart one hour ago has not fired yet; the trigger waits for 24 hours.
    assert core.ingest_events([_cart(customer, item, 1, "cart-recent")]).accepted == 1
    assert core.customer(customer).triggers == []
    later = DecisionCore(settings_for(home), clock=lambda: time.time() + 24 * 3600)
    later.reload()
    assert [t.trigger for t in later.customer(customer).triggers] == ["cart_abandoned"]

    # A cart of another item 25 hours ago is abandoned now: the rule forces free shipping.
    item = str(core.bundle.catalog.item_ids[core.bundle.catalog.popularity_order[4]])
    core.ingest_events([_cart(customer, item, 25, "cart-old")])
    choice = core.choose(ChooseRequest(customer_id=customer, slot="offer"))
    assert (choice.strategy, choice.content_id) == (
        "rule:cart_abandoned_free_shipping",
        "offer_freeship",
    )
    recommended = core.recommend(RecommendRequest(customer_id=customer, n=5))
    assert recommended.strategy == "rule:cart_items_first"
    assert recommended.items[0] == item

    # Buying it answers the trigger.
    core.ingest_events(
        [
            {
                "event_id": "bought",
                "ts": _iso(60),
                "event_type": "purchase",
                "customer_id": customer,
                "item_id": item,
            }
        ]
    )
    assert core.choose(ChooseRequest(customer_id=customer, slot="offer")).strategy == "model"


def test_events_are_validated_like_ingest_and_durable_before_the_answer(home):
    core = _core(home)
    customer = _quiet_customer(home)
    good = _cart(customer, "i000002", 2, "ok-1")
    response = core.ingest_events(
        [good, good, {"event_id": "bad", "ts": "yesterday", "event_type": "add_to_cart"}]
    )
    assert (response.accepted, response.duplicates) == (1, 1)
    assert len(response.rejected) == 1 and response.rejected[0].index == 2
    assert "ts: 'yesterday' is not a timestamp" in response.rejected[0].reason
    # On disk already, read through a fresh connection: the event and the quarantined row.
    with sqlite3.connect(home / "online" / "events.db") as con:
        assert con.execute("SELECT event_id FROM events").fetchall() == [("ok-1",)]
        assert con.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 1
    # The next ingest compacts them into the event store, once.
    store = EventStore(home / "store")
    before = store.count("events")
    log = OnlineEventLog(home / "online" / "events.db")
    assert compact(log, store, now=datetime.now(UTC)) == 1
    assert compact(log, store, now=datetime.now(UTC)) == 0
    assert store.count("events") == before + 1


def test_too_many_events_in_one_call(home):
    core = _core(home, max_events_per_call=2)
    with pytest.raises(BatchTooLarge, match="at most 2 events"):
        core.ingest_events([{}, {}, {}])


def test_customer_view(home):
    core = _core(home)
    customer = _quiet_customer(home)
    view = core.customer(customer)
    assert view.known and view.personalised and view.canonical_id == customer
    assert "engagement_score" in view.features and view.holdout is False
    with pytest.raises(Exception, match="not known"):
        core.customer("nobody-at-all")


def test_holdout_gets_the_default_by_a_stable_hash(home):
    core = _core(home, holdout_share=0.5)
    snapshot = _snapshot(home)
    ids = list(snapshot.customers["customer_id"])
    held = [c for c in ids if core._in_holdout(c)]
    assert 0.4 < len(held) / len(ids) < 0.6
    result = core.recommend(RecommendRequest(customer_id=held[0], n=3))
    assert result.strategy == "holdout"
    assert core.choose(ChooseRequest(customer_id=held[0], slot="offer")).content_id == "offer_none"
    assert core._in_holdout(held[0])  # stable


def test_reload_picks_up_a_new_champion(home):
    from training.tracking import configure

    core = _core(home)
    client = configure(home)
    # Point the alias at a second version of the same model.
    source = client.get_model_version("tailor-recommender", "1")
    second = client.create_model_version("tailor-recommender", source.source, run_id=source.run_id)
    client.set_registered_model_alias("tailor-recommender", "champion", second.version)
    status = core.reload()
    assert status.models["tailor-recommender"] == str(second.version)
    customer = _quiet_customer(home)
    assert core.recommend(RecommendRequest(customer_id=customer)).model_version == str(
        second.version
    )


def test_the_serving_layout_scores_exactly_like_the_training_design(home):
    from models.selector import candidate_scores

    core = _core(home)
    snapshot = _snapshot(home)
    people = list(snapshot.customers["customer_id"][:25])
    profiles = core.online.profiles(people)
    for slot in ("subject", "offer"):
        selector = core.bundle.selectors[slot]
        layout = core.bundle.layouts[slot]
        assert selector.design is not None  # the artifact holds its customer design
        candidates = list(layout.content_ids)
        candidates = [
            c
            for c in candidates
            if c in set(core.bundle.content.loc[core.bundle.content["slot"] == slot, "content_id"])
        ]
        content = core.bundle.content_features.reindex(
            columns=selector.content.columns, fill_value=0.0
        )
        for person in people:
            profile = profiles[person]
            row = dict(profile.features)
            for name in selector.model.feature_names_:
                for prefix, which in (("prior_sends_", 0), ("prior_clicks_", 1)):
                    if name.startswith(prefix):
                        row[name] = float(
                            profile.responses.get(name.removeprefix(prefix), (0, 0))[which]
                        )
            frame = pd.DataFrame([row])
            # The design serving builds is the one training builds, column for column.
            customer = selector.design.frame(frame)
            training = pd.concat(
                [
                    customer.loc[[0] * len(candidates)].reset_index(drop=True),
                    content.loc[candidates].reset_index(drop=True),
                ],
                axis=1,
            )[selector.model.feature_names_]
            np.testing.assert_array_equal(
                layout.design(profile, candidates), training.to_numpy(dtype=float)
            )
            expected = candidate_scores(selector.model, frame, content, candidates, selector.design)
            np.testing.assert_allclose(layout.scores(profile, candidates), expected, rtol=1e-9)


def test_the_serving_layout_reads_attribute_categories_with_the_stored_levels():
    from models.selector import CustomerDesign, Selector
    from serving.choices import SelectorLayout
    from serving.profiles import Profile

    content = pd.DataFrame({"offer_id_a": [1.0, 0.0], "offer_id_b": [0.0, 1.0]}, index=["a", "b"])
    design = CustomerDesign(
        numeric=("attr_history",), categories=(("attr_channel", ("Phone", "Web")),)
    )
    rows = pd.DataFrame({"attr_history": np.arange(200.0), "attr_channel": ["Web", "Phone"] * 100})
    shown = np.tile([0, 1], 100)
    features = pd.concat([design.frame(rows), content.iloc[shown].reset_index(drop=True)], axis=1)
    model = OutcomeModel(n_estimators=5, min_child_samples=5).fit(features, shown % 2)
    selector = Selector("offer", "click", model, Policy("greedy"), ["a", "b"], content, design)
    layout = SelectorLayout.build(selector, content)
    profile = Profile(
        "c1", True, True, True, raw_features='{"attr_history": 12, "attr_channel": "Phone"}'
    )
    expected = pd.concat(
        [
            design.frame(pd.DataFrame([{"attr_history": 12, "attr_channel": "Phone"}]))
            .loc[[0, 0]]
            .reset_index(drop=True),
            content.reset_index(drop=True),
        ],
        axis=1,
    )[model.feature_names_]
    np.testing.assert_array_equal(layout.design(profile, ["a", "b"]), expected.to_numpy())
    unknown = Profile("c2", True, True, True, raw_features='{"attr_history": null}')
    assert np.isnan(layout.design(unknown, ["a"])[0, model.feature_names_.index("attr_channel#0")])


def test_an_unsubscribe_makes_the_customer_not_sendable_at_once(home):
    core = _core(home)
    customer = _quiet_customer(home)
    assert core.recommend(RecommendRequest(customer_id=customer)).sendable is True
    core.ingest_events(
        [
            {
                "event_id": "unsub",
                "ts": _iso(10),
                "event_type": "unsubscribe",
                "customer_id": customer,
            }
        ]
    )
    assert core.recommend(RecommendRequest(customer_id=customer)).sendable is False
    assert core.choose(ChooseRequest(customer_id=customer, slot="offer")).sendable is False
    assert core.customer(customer).sendable is False
    status = core.status()
    assert set(status.model_age_hours) == set(status.models)
    assert all(0 <= age < 24 * 365 for age in status.model_age_hours.values())


def test_known_customers_get_the_two_stage_ranking_of_the_champion(home):
    from models.candidates import interaction_log_from_store, interaction_matrix, recent_history
    from models.pipeline import RecommenderPipeline

    core = _core(home)
    pipeline = core.bundle.pipeline
    assert isinstance(pipeline, RecommenderPipeline) and pipeline.reranker is not None
    assert core.bundle.ranked, "the reranker's order is computed at load"
    snapshot = _snapshot(home)
    customer = _quiet_customer(home)
    # Independently: the pipeline's own ranking of this one customer as of the snapshot.
    log, _ = interaction_log_from_store(EventStore(home / "store"), snapshot)
    as_of = pd.Timestamp(snapshot.as_of)
    history = interaction_matrix(log, pipeline.index, as_of=as_of, half_life_days=14.0)
    recent = recent_history(log, pipeline.index, as_of=as_of)
    user = int(np.searchsorted(pipeline.index.user_ids, customer))
    assert pipeline.index.user_ids[user] == customer
    ids, scores = pipeline.rank(np.array([user]), history, recent, log, as_of=as_of, n=10)
    expected = [str(pipeline.index.item_ids[i]) for i in ids[0] if i >= 0]
    unfiltered = Filters(in_stock_only=False, exclude_purchased=False)
    served = core.recommend(RecommendRequest(customer_id=customer, n=10, filters=unfiltered))
    assert served.strategy == "model"
    assert served.items == expected[:10]
    np.testing.assert_allclose(served.scores, scores[0][: len(served.items)], rtol=1e-6)
    # The ALS stage alone ranks differently: the reranker is what is served.
    als = pipeline.generators["als"]
    als_ids, _ = als.recommend(np.array([user]), history[[user]], n=10, exclude=None)
    assert [str(pipeline.index.item_ids[i]) for i in als_ids[0]] != served.items
