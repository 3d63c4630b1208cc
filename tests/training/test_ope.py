"""Off-policy estimators against hand-computed values and a simulator with a known truth."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.errors import InputError
from models.policy import Policy
from training.ope import (
    Estimate,
    beats,
    deterministic_policy,
    estimate_dm,
    estimate_dr,
    estimate_ips,
    estimate_snips,
    evaluate_policy,
    uniform_policy,
)

# ------------------------------------------------------------------ hand-computed example

# Four rounds, three actions.
A = np.array([0, 1, 2, 0])
R = np.array([1.0, 0.0, 1.0, 0.0])
P = np.array([0.5, 0.25, 0.5, 0.4])
PI = np.array([[0.5, 0.5, 0.0], [0.2, 0.6, 0.2], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
Q = np.array([[0.6, 0.2, 0.1], [0.1, 0.3, 0.5], [0.2, 0.2, 0.8], [0.3, 0.1, 0.0]])
# w = π(a_i|x_i) / p_i = [0.5/0.5, 0.6/0.25, 1/0.5, 1/0.4] = [1, 2.4, 2, 2.5]


def test_four_rounds_by_hand():
    out = evaluate_policy(A, R, P, PI, Q, n_bootstrap=200)
    assert set(out) == {"IPS", "SNIPS", "DM", "DR"}
    # IPS = (1·1 + 2.4·0 + 2·1 + 2.5·0) / 4
    assert out["IPS"].value == pytest.approx(3 / 4)
    # SNIPS = 3 / (1 + 2.4 + 2 + 2.5)
    assert out["SNIPS"].value == pytest.approx(3 / 7.9)
    # DM rows: 0.5·0.6 + 0.5·0.2 = 0.4; 0.2·0.1 + 0.6·0.3 + 0.2·0.5 = 0.3; 0.8; 0.3
    assert out["DM"].value == pytest.approx((0.4 + 0.3 + 0.8 + 0.3) / 4)
    # DR rows: 0.4 + 1(1 − 0.6); 0.3 + 2.4(0 − 0.3); 0.8 + 2(1 − 0.8); 0.3 + 2.5(0 − 0.3)
    assert out["DR"].value == pytest.approx((0.8 - 0.42 + 1.2 - 0.45) / 4)
    ess = 7.9**2 / (1 + 2.4**2 + 2**2 + 2.5**2)
    for name in ("IPS", "SNIPS", "DR"):
        assert out[name].effective_sample_size == pytest.approx(ess)
        assert out[name].n == 4
    assert out["DM"].effective_sample_size == 4.0
    for estimate in out.values():
        assert estimate.ci_low <= estimate.value <= estimate.ci_high


def test_weight_clipping_by_hand():
    # max_weight=2: w = [1, 2, 2, 2]
    ips = estimate_ips(A, R, P, PI, max_weight=2.0, n_bootstrap=50)
    assert ips.value == pytest.approx((1 + 2) / 4)
    dr = estimate_dr(A, R, P, PI, Q, max_weight=2.0, n_bootstrap=50)
    assert dr.value == pytest.approx((0.8 + (0.3 - 0.6) + 1.2 + (0.3 - 0.6)) / 4)
    assert dr.effective_sample_size == pytest.approx(49 / 13)
    # SNIPS normalises instead of clipping, so it has no max_weight.
    assert estimate_snips(A, R, P, PI, n_bootstrap=50).value == pytest.approx(3 / 7.9)


def test_bootstrap_is_seeded_and_levels_nest():
    first = estimate_ips(A, R, P, PI, random_state=7)
    again = estimate_ips(A, R, P, PI, random_state=np.random.default_rng(7))
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    narrow = estimate_dr(A, R, P, PI, Q, level=0.5, n_bootstrap=500)
    wide = estimate_dr(A, R, P, PI, Q, level=0.99, n_bootstrap=500)
    assert wide.ci_low <= narrow.ci_low <= narrow.ci_high <= wide.ci_high


def test_snips_undefined_when_target_never_agrees_with_the_log():
    never = np.array([[0.0, 1.0, 0.0]] * 4)  # the log never shows action 1 … except row 1
    never[1] = [1.0, 0.0, 0.0]
    snips = estimate_snips(A, R, P, never, n_bootstrap=20)
    assert math.isnan(snips.value) and math.isnan(snips.ci_low)
    assert snips.effective_sample_size == 0.0
    assert estimate_ips(A, R, P, never, n_bootstrap=20).value == 0.0


# ------------------------------------------------------------- simulated contextual bandit


@dataclass
class Bandit:
    """Discrete contexts with known probabilities and click rates ``theta[x, a]``."""

    context_probs: np.ndarray  # (n_contexts,)
    theta: np.ndarray  # (n_contexts, n_actions)
    logging: np.ndarray  # (n_contexts, n_actions), the logging policy
    target: np.ndarray  # (n_contexts, n_actions), the policy evaluated

    @property
    def true_value(self) -> float:
        """Exact value of the target: Σ_x P(x) Σ_a π(a|x) θ(x, a)."""
        return float(self.context_probs @ (self.target * self.theta).sum(axis=1))

    def log(self, n: int, seed: int, noise: float | None = None) -> dict[str, np.ndarray]:
        """``n`` logged rounds: clicks (Bernoulli θ) or, with ``noise``, a continuous
        reward ``θ + N(0, noise²)`` (a margin, say)."""
        rng = np.random.default_rng(seed)
        x = rng.choice(len(self.context_probs), size=n, p=self.context_probs)
        cdf = self.logging[x].cumsum(axis=1)
        a = (rng.random((n, 1)) > cdf).sum(axis=1)
        if noise is None:
            r = (rng.random(n) < self.theta[x, a]).astype(float)
        else:
            r = self.theta[x, a] + rng.normal(0.0, noise, n)
        return {
            "x": x,
            "actions": a,
            "rewards": r,
            "propensities": self.logging[x, a],
            "action_dist": self.target[x],
        }


@pytest.fixture(scope="module")
def bandit() -> Bandit:
    rng = np.random.default_rng(3)
    n_contexts, n_actions = 6, 5
    theta = rng.uniform(0.02, 0.4, size=(n_contexts, n_actions))
    context_probs = rng.dirichlet(np.full(n_contexts, 3.0))
    # Logging: softmax of unrelated scores mixed with 20 % uniform, so non-uniform
    # propensities of at least 0.04.
    softmax = Policy("softmax", temperature=0.7).probabilities(
        rng.normal(size=(1, n_contexts, n_actions))
    )
    logging = 0.8 * softmax + 0.2 * uniform_policy(n_contexts, n_actions)
    # Target: mostly greedy on noisy estimates of theta.
    target = Policy("epsilon_greedy", epsilon=0.2).probabilities(
        (theta + rng.normal(0, 0.05, theta.shape))[None]
    )
    assert logging.min() >= 0.04 and logging.max() > 5 * logging.min()
    return Bandit(context_probs, theta, logging, target)


@pytest.mark.parametrize("noise", [None, 0.05])
def test_estimators_cover_the_true_value(bandit, noise):
    log = bandit.log(40_000, seed=11, noise=noise)
    truth = bandit.true_value
    perfect = bandit.theta[log["x"]]
    out = evaluate_policy(
        log["actions"],
        log["rewards"],
        log["propensities"],
        log["action_dist"],
        perfect,
        n_bootstrap=400,
    )
    for name in ("IPS", "SNIPS", "DR", "DM"):
        assert out[name].ci_low <= truth <= out[name].ci_high, (name, truth, out[name])
    # The logged (logging-policy) mean is clearly off: the target is a different policy.
    ips_width = out["IPS"].ci_high - out["IPS"].ci_low
    assert abs(log["rewards"].mean() - truth) > 3 * ips_width
    assert out["IPS"].effective_sample_size < 0.9 * out["IPS"].n
    # A perfect reward model leaves DR only the reward noise, weighted: with clicks that
    # noise is most of IPS's variance too; with a low-noise reward DR is far narrower.
    dr_width = out["DR"].ci_high - out["DR"].ci_low
    assert dr_width < (1.0 if noise is None else 0.25) * ips_width


def test_bootstrap_interval_matches_the_normal_approximation(bandit):
    log = bandit.log(40_000, seed=12)
    ips = estimate_ips(
        log["actions"], log["rewards"], log["propensities"], log["action_dist"], n_bootstrap=1000
    )
    w = log["action_dist"][np.arange(40_000), log["actions"]] / log["propensities"]
    se = (w * log["rewards"]).std(ddof=1) / math.sqrt(40_000)
    assert ips.ci_high - ips.ci_low == pytest.approx(2 * 1.959964 * se, rel=0.1)


def test_unbiased_over_replications_and_dr_is_doubly_robust(bandit):
    truth = bandit.true_value
    wrong_model_value = 0.1  # a constant reward model: wrong everywhere
    values: dict[str, list[float]] = {"IPS": [], "DR": [], "DM": []}
    covered = 0
    replications, n = 150, 1500
    for seed in range(replications):
        log = bandit.log(n, seed=100 + seed)
        args = (log["actions"], log["rewards"], log["propensities"], log["action_dist"])
        wrong = np.full(log["action_dist"].shape, wrong_model_value)
        ips = estimate_ips(*args, n_bootstrap=200, random_state=seed)
        covered += ips.ci_low <= truth <= ips.ci_high
        values["IPS"].append(ips.value)
        values["DR"].append(estimate_dr(*args, wrong, n_bootstrap=1).value)
        values["DM"].append(estimate_dm(log["action_dist"], wrong, n_bootstrap=1).value)
    for name in ("IPS", "DR"):
        sample = np.array(values[name])
        se = sample.std(ddof=1) / math.sqrt(replications)
        assert abs(sample.mean() - truth) < 4 * se, name
    # DM with the wrong model is exactly that model's constant, whatever the truth.
    assert np.allclose(values["DM"], wrong_model_value)
    assert abs(wrong_model_value - truth) > 0.05
    # The 95 % intervals cover about 95 % of the time.
    assert 0.88 <= covered / replications <= 0.99


def test_target_equal_to_logging_policy_gives_the_logged_mean(bandit):
    # A deterministic logging policy (p = 1) evaluated by itself: exactly the logged mean.
    rng = np.random.default_rng(5)
    x = rng.integers(0, len(bandit.context_probs), 5000)
    greedy = bandit.theta.argmax(axis=1)[x]
    rewards = (rng.random(5000) < bandit.theta[x, greedy]).astype(float)
    same = deterministic_policy(greedy, bandit.theta.shape[1])
    out = evaluate_policy(greedy, rewards, np.ones(5000), same, bandit.theta[x], n_bootstrap=200)
    for name in ("IPS", "SNIPS", "DR"):
        assert out[name].value == pytest.approx(rewards.mean())
        assert out[name].effective_sample_size == pytest.approx(5000)
    # A stochastic logging policy evaluated by itself: every weight is 1.
    log = bandit.log(5000, seed=6)
    own = bandit.logging[log["x"]]
    ips = estimate_ips(log["actions"], log["rewards"], log["propensities"], own, n_bootstrap=200)
    assert ips.value == pytest.approx(log["rewards"].mean())
    assert ips.effective_sample_size == pytest.approx(5000)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 30),
    n_actions=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_snips_stays_within_the_observed_rewards(n, n_actions, seed):
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, n_actions, n)
    rewards = rng.normal(size=n)
    propensities = rng.uniform(0.01, 1.0, n)
    dist = rng.dirichlet(np.ones(n_actions), size=n)
    snips = estimate_snips(actions, rewards, propensities, dist, n_bootstrap=30)
    low, high = rewards.min() - 1e-12, rewards.max() + 1e-12
    assert low <= snips.value <= high
    assert low <= snips.ci_low <= snips.ci_high <= high


# ------------------------------------------------------------------------ target policies


def test_policy_helpers():
    assert deterministic_policy([2, 0], 3).tolist() == [[0, 0, 1], [1, 0, 0]]
    assert np.allclose(uniform_policy(2, 4), 0.25) and uniform_policy(2, 4).shape == (2, 4)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: deterministic_policy([0, 3], 3), "chosen"),
        (lambda: uniform_policy(2, 0), "n_actions"),
    ],
)
def test_policy_helpers_reject_bad_input(call, field):
    with pytest.raises(InputError) as info:
        call()
    assert info.value.field == field


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"propensities": np.array([0.5, 0.0, 1.2, 0.4])}, "propensities", "2 of 4"),
        ({"propensities": np.array([0.5, np.nan, 0.5, 0.4])}, "propensities", "1 of 4"),
        ({"propensities": np.array([0.5, 0.5])}, "propensities", "shape"),
        ({"rewards": np.array([1.0, np.inf, 0.0, 0.0])}, "rewards", "not finite"),
        ({"rewards": np.ones((4, 1))}, "rewards", "shape"),
        ({"actions": np.array([0, 1, 3, 0])}, "actions", "1 outside [0, 3)"),
        ({"actions": np.array([0.0, 1.0, 2.0, 0.0])}, "actions", "integer"),
        ({"actions": np.array([0, 1, 2])}, "actions", "shape"),
        ({"action_dist": PI * 0.9}, "action_dist", "4 of 4 rows do not sum to 1"),
        ({"action_dist": PI[:, :2]}, "action_dist", "do not sum to 1"),
        ({"action_dist": np.array([[1.5, -0.5, 0.0]] * 4)}, "action_dist", "negative"),
        ({"action_dist": PI[0]}, "action_dist", "shape"),
        ({"reward_model": Q[:, :2]}, "reward_model", "shape"),
        ({"reward_model": np.where(Q > 0.7, np.nan, Q)}, "reward_model", "not finite"),
        ({"max_weight": 0.0}, "max_weight", "> 0"),
        ({"n_bootstrap": 0}, "n_bootstrap", ">= 1"),
        ({"level": 1.0}, "level", "(0, 1)"),
    ],
)
def test_bad_input_names_the_field(change, field, says):
    kwargs = {
        "actions": A,
        "rewards": R,
        "propensities": P,
        "action_dist": PI,
        "reward_model": Q,
        "max_weight": None,
        "n_bootstrap": 10,
        "level": 0.95,
    } | change
    with pytest.raises(InputError) as info:
        evaluate_policy(**kwargs)
    assert info.value.field == field
    assert says in str(info.value)


def test_dm_validates_its_own_inputs():
    with pytest.raises(InputError, match="reward_model"):
        estimate_dm(PI, Q.T)
    with pytest.raises(InputError, match="action_dist"):
        estimate_dm(PI + 0.1, Q)


# -------------------------------------------------------------------------- promotion gate


def est(value: float, low: float, high: float, name: str = "DR") -> Estimate:
    return Estimate(name, value, low, high, 1000, 500.0)


def test_beats_needs_the_lower_bound_above_every_comparator():
    candidate = est(0.060, 0.052, 0.068)
    ok, reason = beats(candidate, {"champion": est(0.050, 0.045, 0.055), "offer_a": 0.051})
    assert ok
    assert "0.052" in reason and "champion (0.05)" in reason and "offer_a (0.051)" in reason


def test_beats_blocked_names_the_comparator_and_numbers():
    candidate = est(0.060, 0.048, 0.072)
    # The champion's interval overlaps, but only its point estimate counts.
    ok, reason = beats(candidate, {"champion": est(0.047, 0.030, 0.065), "offer_b": 0.049})
    assert not ok
    assert "offer_b (0.049)" in reason and "champion" not in reason.split("exceed")[1]
    assert "0.048" in reason and "1 of 2" in reason


def test_beats_is_strict_and_refuses_undefined_values():
    assert not beats(est(0.06, 0.05, 0.07), {"champion": 0.05})[0]
    assert not beats(est(0.06, math.nan, math.nan), {"champion": 0.01})[0]
    ok, reason = beats(est(0.06, 0.05, 0.07), {"champion": math.nan})
    assert not ok and "champion (nan)" in reason
    with pytest.raises(InputError) as info:
        beats(est(0.06, 0.05, 0.07), {})
    assert info.value.field == "comparators"
