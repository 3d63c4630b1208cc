"""Selectors from one randomised campaign: decision-id joins, no opens, attributes,
customer folds, the served policy's exploration, comparable champions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.data.ingest import ingest_file
from features.data.store import EventStore
from features.segments import SegmentSet
from features.settings import FeatureConfig
from training.selector_job import build_selector_data, plan_split, store_features_at
from training.settings import SelectorConfig

REPO = Path(__file__).resolve().parents[2]
SEND = pd.Timestamp("2008-03-01T10:00:00Z")
ARMS = ("arm_a", "arm_b", "arm_c")
#: P(click) per customer segment and arm: a suits "m", b suits "w", c suits no one.
CLICK = {"m": (0.30, 0.10, 0.05), "w": (0.10, 0.30, 0.05)}


def _campaign(folder: Path, n: int = 3000, seed: int = 0, clicks: bool = True) -> dict[str, Path]:
    """A Hillstrom-like log: one send per customer (p = 1/3 per arm), clicks carrying
    the decision id 100-300 h after the send (past the 72 h window), no opens; the
    segment that decides the best arm is a customer attribute only."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"h{i}" for i in range(n)])
    segment = np.where(rng.random(n) < 0.5, "m", "w")
    arm = rng.integers(0, 3, n)
    rate = np.where(segment == "m", np.take(CLICK["m"], arm), np.take(CLICK["w"], arm))
    clicked = (rng.random(n) < rate) & clicks
    folder.mkdir(parents=True, exist_ok=True)
    attributes = [
        json.dumps({"segment": s, "spend": float(x), "zip": f"{z:05d}"})
        for s, x, z in zip(
            segment, rng.gamma(2, 50, n).round(2), rng.integers(0, 99999, n), strict=True
        )
    ]
    pd.DataFrame(
        {
            "customer_id": ids,
            "email": [f"{i}@example.org" for i in ids],
            "consent_email": True,
            "consent_personalization": True,
            "consent_updated_ts": "2006-01-01T00:00:00Z",
            "attributes": attributes,
        }
    ).to_csv(folder / "customers.csv", index=False)
    pd.DataFrame(
        {
            "content_id": list(ARMS),
            "slot": "offer",
            "text": list(ARMS),
            "attributes": [json.dumps({"offer_type": "none"})] * 3,
            "active": True,
        }
    ).to_csv(folder / "content.csv", index=False)
    sends = pd.DataFrame(
        {
            "event_id": [f"s{i}" for i in range(n)],
            "ts": SEND.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "event_type": "email_sent",
            "customer_id": ids,
            "campaign_id": "k1",
            "slot": "offer",
            "content_id": np.asarray(ARMS)[arm],
            "decision_id": [f"d{i}" for i in range(n)],
            "propensity": 1 / 3,
        }
    )
    hours = rng.integers(100, 300, n)
    click_rows = pd.DataFrame(
        {
            "event_id": [f"c{i}" for i in range(n)],
            "ts": [
                (SEND + pd.Timedelta(hours=int(h))).strftime("%Y-%m-%dT%H:%M:%SZ") for h in hours
            ],
            "event_type": "email_click",
            "customer_id": ids,
            "decision_id": [f"d{i}" for i in range(n)],
        }
    )[clicked]
    pd.concat([sends, click_rows], ignore_index=True).to_csv(folder / "events.csv", index=False)
    return {k: folder / f"{k}.csv" for k in ("customers", "content", "events")}


def _store(folder: Path, **kw: object) -> EventStore:
    paths = _campaign(folder / "data", **kw)  # type: ignore[arg-type]
    store = EventStore(folder / "home" / "store")
    for kind in ("customers", "content", "events"):
        ingest_file(paths[kind], kind=kind, store=store, now=datetime(2008, 4, 1, tzinfo=UTC))
    return store


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EventStore]:
    folder = tmp_path_factory.mktemp("campaign")
    return folder, _store(folder)


def test_one_campaign_without_opens_is_learned_from_every_send_by_decision_id(campaign):
    _, store = campaign
    data = build_selector_data(
        store.read("events"),
        store.read("content"),
        store.read("customers"),
        store_features_at(store, FeatureConfig(), SegmentSet(())),
        slot="offer",
    )
    assert data.population == "all" and len(data.table) == 3000
    assert any("every send" in note and "0 email_open" in note for note in data.notes)
    # Every click came 100-300 h after its send, past the 72 h window: the decision
    # id attributes them all. Few conversions (none): the auto reward is the click.
    events = store.read("events")
    assert data.rewards.sum() == (events["event_type"] == "email_click").sum()
    assert data.reward == "click"
    # The deciding attribute is a category of the design; the zip code (every value
    # rare) is left out, and the numeric one stays a number.
    assert dict(data.design.categories) == {"attr_segment": ("m", "w")}
    assert "attr_spend" in data.design.numeric and "attr_zip" not in data.design.columns()
    plan = plan_split(data.table, SelectorConfig())
    assert plan.kind == "customer" and "1 campaign(s)" in plan.reason
    again = plan_split(data.table, SelectorConfig())
    np.testing.assert_array_equal(plan.fold, again.fold)  # seeded
    assert data.table.assign(f=plan.fold).groupby("customer_id")["f"].nunique().max() == 1
    other = plan_split(data.table, SelectorConfig(seed=1))
    assert (other.fold != plan.fold).any()


def test_many_campaigns_hold_out_the_later_ones():
    ts = pd.Timestamp("2026-01-01", tz="UTC")
    table = pd.DataFrame(
        {
            "campaign_id": np.repeat([f"k{i}" for i in range(5)], 600),
            "ts": np.repeat([ts + pd.Timedelta(days=7 * i) for i in range(5)], 600),
            "customer_id": np.tile([f"c{i}" for i in range(600)], 5),
        }
    )
    plan = plan_split(table, SelectorConfig())
    assert plan.kind == "campaign"
    assert set(table.loc[plan.holdout, "campaign_id"]) == {"k3", "k4"}
    forced = plan_split(table, SelectorConfig(split="customer", folds=3))
    assert forced.kind == "customer" and set(forced.fold) == {0, 1, 2}
    small = plan_split(table, SelectorConfig(min_holdout_rows=5000))
    assert small.kind == "customer" and "auto" in small.reason


def test_the_learned_policy_is_gated_as_served_and_the_champion_is_re_estimated(campaign):
    from training.train_selector import train_selector

    folder, store = campaign
    settings = SelectorConfig(epsilon=0.06)
    first = train_selector(
        home=folder / "home", store=store, config=FeatureConfig(), slot="offer", selectors=settings
    )
    evaluation = first.evaluation
    # The planted effect is large: the learned policy (a for "m", b for "w": true value
    # 0.30, exploring 6 %) beats every constant policy (true value 0.20 at best).
    assert evaluation.promoted == "learned" and first.promoted, first.reason
    assert first.selector.policy.kind == "epsilon_greedy"
    assert first.selector.policy.epsilon == 0.06
    true_learned = 0.94 * 0.30 + 0.06 * np.mean([0.30, 0.10, 0.05])
    dr = evaluation.estimates["DR"]
    assert dr.ci_low <= true_learned <= dr.ci_high, (dr, true_learned)
    assert first.split.kind == "customer"
    # What serving will do: each segment gets its arm, with the exact propensities.
    rows = pd.DataFrame({"attr_segment": ["m", "w"], "attr_spend": [10.0, 10.0]})
    decided = first.selector.decide(
        pd.concat([rows] * 200, ignore_index=True), [f"x{i}" for i in range(400)]
    )
    top = decided.groupby(np.tile(["m", "w"], 200))["content_id"].agg(lambda s: s.mode()[0])
    assert top.to_dict() == {"m": "arm_a", "w": "arm_b"}
    assert set(np.round(decided["propensity"], 6)) <= {0.96, 0.02}
    # Trained again on the same log: the champion is loaded and scored on the same rows.
    second = train_selector(
        home=folder / "home", store=store, config=FeatureConfig(), slot="offer", selectors=settings
    )
    champion = second.evaluation.champion_estimate
    assert champion is not None
    assert champion.value == pytest.approx(second.evaluation.estimates["DR"].value, abs=0.02)
    assert "current champion" in second.evaluation.reason or second.promoted


def test_a_job_that_cannot_learn_exits_non_zero_saying_why(tmp_path):
    store = _store(tmp_path, n=400, clicks=False)
    env = {**os.environ, "TAILOR_HOME": str(tmp_path / "home"), "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "train", "selector", "--slot", "offer"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    assert "nothing to learn" in result.stderr and "--reward" in result.stderr, result.stderr
    assert "nan" not in result.stderr.lower()
    assert store.count("events") == 400


def test_the_gate_evaluates_exploration_and_the_consent_default_by_hand():
    from training.selector_job import SelectorData, evaluate_selector

    # Four logged rounds, two candidates shown with p = 1/2; the last customer has no
    # consent to personalisation, so serving gives them the default ("b").
    table = pd.DataFrame(
        {
            "content_id": ["a", "a", "b", "b"],
            "propensity": [0.5] * 4,
            "personalised": [True, True, True, False],
        }
    )
    data = SelectorData(
        slot="offer",
        reward="click",
        table=table,
        features=pd.DataFrame(index=table.index),
        rewards=np.array([1.0, 0.0, 1.0, 1.0]),
        content=pd.DataFrame(index=["a", "b"]),
        candidates=["a", "b"],
    )
    members = np.array([[[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.9, 0.1]]])  # model: a
    result = evaluate_selector(
        members, data, np.ones(4, dtype=bool), config=SelectorConfig(epsilon=0.2), default="b"
    )
    # Learned, as served: a with 0.9 and b with 0.1 (epsilon 0.2 over two), except
    # the last row: b with 1. IPS = mean(w r) = (1.8·1 + 1.8·0 + 0.2·1 + 2·1) / 4.
    assert result.estimates["IPS"].value == pytest.approx((1.8 + 0.2 + 2.0) / 4)
    # Constant b exploring 0.2 (a 0.1, b 0.9; the last row b 1), by DR with q = (0.9, 0.1):
    # direct 0.18, 0.18, 0.18, 0.1; residuals 0.2·0.1, 0.2·(-0.9), 1.8·0.9, 2·0.9.
    assert result.singles["b"].value == pytest.approx((0.2 + 0.0 + 1.8 + 1.9) / 4)
