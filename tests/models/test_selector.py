"""Selector policies and the outcome model: propensities, replay, planted effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import InputError
from models.content_features import content_features, subject_features
from models.policy import Policy, choose
from models.selector import OutcomeModel

SCORES = np.array([[[0.10, 0.30, 0.20], [0.5, 0.1, 0.1]]])  # (1 member, 2 rows, 3 candidates)


@pytest.mark.parametrize(
    "policy",
    [Policy("greedy"), Policy("epsilon_greedy", epsilon=0.3), Policy("softmax", temperature=0.1)],
)
def test_probabilities_are_a_distribution_favouring_the_best(policy):
    p = policy.probabilities(SCORES)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert (p >= 0).all()
    assert p[0].argmax() == 1 and p[1].argmax() == 0


def test_epsilon_greedy_by_hand():
    p = Policy("epsilon_greedy", epsilon=0.3).probabilities(SCORES)
    np.testing.assert_allclose(p[0], [0.1, 0.8, 0.1])


def test_ties_share_the_greedy_share_and_minus_infinity_is_never_shown():
    scores = np.array([[[1.0, 3.0, 3.0, -np.inf], [0.0, 0.0, 0.0, 5.0]]])
    eg = Policy("epsilon_greedy", epsilon=0.3).probabilities(scores)
    # -inf is ineligible, and left out of exploration too.
    np.testing.assert_allclose(eg[0], [0.1, 0.35 + 0.1, 0.35 + 0.1, 0.0])
    np.testing.assert_allclose(eg[1], [0.075, 0.075, 0.075, 0.7 + 0.075])
    sm = Policy("softmax", temperature=2.0).probabilities(scores)
    assert sm[0, 3] == 0.0
    assert sm[0, 1] / sm[0, 0] == pytest.approx(np.exp((3 - 1) / 2))
    np.testing.assert_allclose(
        Policy("softmax", temperature=1e-3).probabilities(np.array([[[1000.0, 0.0]]])), [[1, 0]]
    )
    np.testing.assert_allclose(
        Policy("softmax", temperature=1e6).probabilities(np.array([[[1.0, 2.0, 3.0]]])),
        np.full((1, 3), 1 / 3),
        atol=1e-5,
    )
    for dist in (eg, sm):
        np.testing.assert_allclose(dist.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: Policy("epsilon_greedy", epsilon=1.5), "epsilon"),
        (lambda: Policy("softmax", temperature=0.0), "temperature"),
        (lambda: Policy().probabilities(np.array([[[-np.inf, -np.inf]]])), "eligible"),
        (lambda: Policy("softmax").probabilities(np.array([[[np.nan, 1.0]]])), "scores"),
        (lambda: Policy().probabilities(np.array([[1.0, 2.0]])), "scores"),
    ],
)
def test_policies_refuse_bad_input_naming_the_field(call, field):
    with pytest.raises(InputError) as info:
        call()
    assert info.value.field == field


def test_thompson_probability_is_the_share_of_members_that_pick_it():
    members = np.array(
        [[[0.1, 0.2]], [[0.3, 0.2]], [[0.1, 0.9]], [[0.0, 0.5]]]
    )  # 4 members, 1 row, 2 candidates: candidate 1 wins in 3 of 4
    np.testing.assert_allclose(Policy("thompson").probabilities(members), [[0.25, 0.75]])


def test_constant_policy_and_its_fallback():
    p = Policy("constant", content_id="b").probabilities(SCORES, ["a", "b", "c"])
    np.testing.assert_allclose(p, [[0, 1, 0], [0, 1, 0]])
    uniform = Policy("constant", content_id="z").probabilities(SCORES, ["a", "b", "c"])
    np.testing.assert_allclose(uniform, np.full((2, 3), 1 / 3))


def test_choices_follow_the_propensities_and_replay_identically():
    p = Policy("epsilon_greedy", epsilon=0.3).probabilities(SCORES[:, :1, :])
    ids = [f"d-{i}" for i in range(20_000)]
    chosen = choose(np.repeat(p, len(ids), axis=0), ids)
    frequencies = np.bincount(chosen, minlength=3) / len(ids)
    np.testing.assert_allclose(frequencies, p[0], atol=0.01)
    again = choose(np.repeat(p, len(ids), axis=0), ids)
    np.testing.assert_array_equal(chosen, again)
    with pytest.raises(InputError, match="decision_ids"):
        choose(p, ["a", "b"])


def test_outcome_model_learns_a_planted_interaction(tmp_path):
    rng = np.random.default_rng(0)
    n = 20_000
    segment = rng.integers(0, 2, n)  # customer trait
    offer = rng.integers(0, 2, n)  # which variant was shown
    p = np.where(segment == offer, 0.3, 0.05)  # each segment has its own best variant
    rewards = (rng.random(n) < p).astype(float)
    features = pd.DataFrame({"segment": segment, "offer": offer, "noise": rng.normal(size=n)})
    single = OutcomeModel(n_estimators=200, learning_rate=0.1).fit(features, rewards)
    cells = pd.Series(single.predict(features)).groupby([segment, offer]).mean()
    # Calibrated per cell: mean prediction close to the true rate, best variant on top.
    np.testing.assert_allclose(cells.to_numpy(), [0.3, 0.05, 0.05, 0.3], atol=0.02)
    model = OutcomeModel(ensemble=3).fit(features, rewards)
    grid = pd.DataFrame({"segment": [0, 0, 1, 1], "offer": [0, 1, 0, 1], "noise": 0.0})
    predicted = model.predict(grid)
    assert predicted[0] > predicted[1] and predicted[3] > predicted[2]
    assert model.predict_members(grid).shape == (3, 4)
    loaded = OutcomeModel.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(grid), predicted)
    with pytest.raises(InputError, match="segment"):
        model.predict(grid.drop(columns="segment"))
    with pytest.raises(InputError, match="both outcomes"):
        OutcomeModel().fit(features, np.zeros(n))


def test_subject_features_describe_a_line_never_sent():
    lines = ["{first_name}, last chance: 20% off ends tonight!", "Have you seen what's new? 🎉"]
    f = subject_features(lines)
    assert f.loc[0, "subject_personalised"] == 1 and f.loc[1, "subject_personalised"] == 0
    assert f.loc[0, "subject_urgency"] == 1 and f.loc[0, "subject_percent"] == 1
    assert f.loc[1, "subject_question"] == 1 and f.loc[1, "subject_emoji"] == 1
    assert f.loc[0, "subject_words"] == 7
    content = pd.DataFrame(
        {
            "content_id": ["s1", "o1"],
            "slot": ["subject", "offer"],
            "text": [lines[0], "Free shipping"],
            "attributes": [None, '{"offer_type": "free_shipping", "cost": 6.0}'],
        }
    )
    table = content_features(content)
    assert table.loc["o1", "offer_free_shipping"] == 1 and table.loc["o1", "offer_cost"] == 6.0
    assert table.loc["o1", "subject_length"] == 0 and table.loc["s1", "offer_cost"] == 0


def test_selector_decides_with_exact_propensities_and_round_trips(tmp_path):
    from models.selector import Selector

    rng = np.random.default_rng(1)
    content = pd.DataFrame(
        {"offer_x": [1.0, 0.0, 0.0], "offer_y": [0.0, 1.0, 0.0]}, index=["a", "b", "c"]
    )
    n = 3000
    shown = rng.integers(0, 3, n)
    customers = pd.DataFrame({"engagement_score": rng.normal(size=n)})
    design = pd.concat(
        [customers.reset_index(drop=True), content.iloc[shown].reset_index(drop=True)], axis=1
    )
    rewards = (rng.random(n) < np.where(shown == 1, 0.4, 0.1)).astype(float)
    model = OutcomeModel(n_estimators=50).fit(design, rewards)
    selector = Selector(
        "offer",
        "conversion",
        model,
        Policy("epsilon_greedy", epsilon=0.3),
        ["a", "b", "c"],
        content,
    )
    ids = [f"d{i}" for i in range(200)]
    rows = customers.iloc[:200]
    decided = selector.decide(rows, ids)
    chosen_best = decided["content_id"] == "b"
    assert np.allclose(decided.loc[chosen_best, "propensity"], 0.8)
    assert np.allclose(decided.loc[~chosen_best, "propensity"], 0.1)
    pd.testing.assert_frame_equal(decided, selector.decide(rows, ids))  # replay
    eligible = np.tile([True, False, True], (200, 1))
    limited = selector.decide(rows, ids, eligible=eligible)
    assert "b" not in set(limited["content_id"])
    # Greedy among the eligible, exploration uniform over them: 0.7 + 0.3/2 and 0.3/2,
    # or 0.5 each where a and c score alike (ties share the greedy share).
    assert set(np.round(limited["propensity"], 9)) <= {0.15, 0.5, 0.85}
    assert (limited["propensity"] == 0.85).any()
    loaded = Selector.load(selector.save(tmp_path / "sel"))
    pd.testing.assert_frame_equal(decided, loaded.decide(rows, ids))
    with pytest.raises(InputError, match="eligible"):
        selector.decide(rows, ids, eligible=np.zeros((200, 3), dtype=bool))


def test_continuous_rewards_get_a_regression_model(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 2, 4000)
    margin = np.where(rng.random(4000) < 0.1, np.where(x == 1, 30.0, 10.0), 0.0)
    features = pd.DataFrame({"x": x})
    model = OutcomeModel(n_estimators=50).fit(features, margin)
    assert model.objective_ == "regression"
    predicted = model.predict(pd.DataFrame({"x": [0, 1]}))
    np.testing.assert_allclose(predicted, [1.0, 3.0], atol=0.6)
    loaded = OutcomeModel.load(model.save(tmp_path / "m"))
    assert loaded.objective_ == "regression"
    np.testing.assert_array_equal(loaded.predict(features), model.predict(features))


def test_a_constant_policy_explores_epsilon_uniformly_by_hand():
    p = Policy("constant", content_id="b", epsilon=0.06).probabilities(SCORES, ["a", "b", "c"])
    np.testing.assert_allclose(p, [[0.02, 0.96, 0.02], [0.02, 0.96, 0.02]])
    # Exploration covers the eligible candidates only.
    eligible = np.array([[True, True, False], [True, True, True]])
    q = Policy("constant", content_id="b", epsilon=0.06).probabilities(
        SCORES, ["a", "b", "c"], eligible
    )
    np.testing.assert_allclose(q[0], [0.03, 0.97, 0.0])


def test_forced_rows_get_their_content_whatever_the_policy():
    forced = np.array([2, -1])  # row 0: no consent, the default (c); row 1: the model
    for policy in (Policy("epsilon_greedy", epsilon=0.3), Policy("constant", content_id="a")):
        p = policy.probabilities(SCORES, ["a", "b", "c"], forced=forced)
        np.testing.assert_allclose(p[0], [0, 0, 1])
        np.testing.assert_allclose(p[1], policy.probabilities(SCORES, ["a", "b", "c"])[1])
    with pytest.raises(InputError, match="forced"):
        Policy().probabilities(SCORES, forced=np.array([3, -1]))


def test_a_format_1_constant_artifact_does_not_start_exploring(tmp_path):
    import json

    from models.selector import Selector

    content = pd.DataFrame({"offer_x": [1.0, 0.0]}, index=["a", "b"])
    design = pd.DataFrame({"engagement_score": [0.0, 1.0] * 50, "offer_x": [1.0, 0.0] * 50})
    model = OutcomeModel(n_estimators=5, min_child_samples=5).fit(design, np.tile([0, 1], 50))
    path = Selector(
        "offer", "click", model, Policy("constant", content_id="b"), ["a", "b"], content
    ).save(tmp_path / "sel")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(format=1, policy={**manifest["policy"], "epsilon": 0.1})
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert Selector.load(path).policy.epsilon == 0.0


def test_customer_design_types_attributes_and_keeps_its_levels():
    from models.selector import CustomerDesign

    n = 400
    table = pd.DataFrame(
        {
            "engagement_score": np.linspace(0, 1, n),
            "attr_history": np.arange(n, dtype=float),
            "attr_channel": np.where(np.arange(n) % 4 == 0, "Phone", "Web"),
            "attr_zip": [f"{i:05d}" for i in range(n)],  # every value once
            "attr_segment": ["a"] * 395 + ["rare"] * 5,
        }
    )
    design, dropped = CustomerDesign.learn(table, ["engagement_score"])
    assert design.numeric == ("engagement_score", "attr_history")
    assert dict(design.categories) == {"attr_channel": ("Phone", "Web"), "attr_segment": ("a",)}
    assert "attr_zip" in dropped and "400 distinct values" in dropped["attr_zip"]
    rows = pd.DataFrame(
        {"attr_channel": ["Web", "Phone", None, "Fax"], "attr_history": [1.0, None, 3.0, 4.0]}
    )
    frame = design.frame(rows)
    np.testing.assert_allclose(frame["attr_channel#0"], [0, 1, np.nan, 0])  # Phone
    np.testing.assert_allclose(frame["attr_channel#1"], [1, 0, np.nan, 0])  # Web
    np.testing.assert_allclose(frame["attr_history"], [1, np.nan, 3, 4])
    assert frame["engagement_score"].isna().all()  # unknown: NaN, never made up
    assert list(frame.columns) == design.columns()
    assert CustomerDesign.from_dict(design.to_dict()) == design
