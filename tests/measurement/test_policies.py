"""Served policies read back from a log whose truth is planted: the off-policy estimate
of a policy that was rarely served covers its true rate; the holdout gives the lift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import InputError
from measurement.policies import incrementality, off_policy, served_rates

TRUE = {"offer-a": 0.05, "offer-b": 0.10}


def _log(n: int = 40_000, epsilon: float = 0.3, seed: int = 1) -> pd.DataFrame:
    """An epsilon-greedy logger whose model wrongly prefers offer-a."""
    rng = np.random.default_rng(seed)
    explore = rng.random(n) < epsilon
    pick_b = np.where(explore, rng.random(n) < 0.5, False)
    chosen = np.where(pick_b, "offer-b", "offer-a")
    p_a, p_b = 1 - epsilon / 2, epsilon / 2
    propensity = np.where(pick_b, p_b, p_a)
    clicked = rng.random(n) < np.vectorize(TRUE.get)(chosen)
    return pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(n)],
            "slot": "offer",
            "policy": "model",
            "model_version": "3",
            "content_id": chosen,
            "propensity": propensity,
            "candidates": [[["offer-a", 0.9, p_a], ["offer-b", 0.1, p_b]]] * n,
            "opened": clicked,
            "clicked": clicked,
            "converted": False,
        }
    )


def test_off_policy_estimates_cover_the_planted_rates():
    estimates = off_policy(_log()).set_index(["policy", "estimator"])
    for policy, truth in (("always offer-b", 0.10), ("greedy champion", 0.05)):
        for estimator in ("IPS", "SNIPS"):
            row = estimates.loc[(policy, estimator)]
            assert row.ci_low <= truth <= row.ci_high, (policy, estimator, row.to_dict())
    # Uniform: half of each.
    uniform = estimates.loc[("uniform", "SNIPS")]
    assert uniform.ci_low <= 0.075 <= uniform.ci_high
    # The rarely served offer rests on fewer effective decisions than the usual one.
    assert (
        estimates.loc[("always offer-b", "IPS"), "effective_sample_size"]
        < estimates.loc[("always offer-a", "IPS"), "effective_sample_size"]
    )


def test_the_holdout_gives_the_lift_of_personalisation_with_its_interval():
    rng = np.random.default_rng(3)
    n = 30_000
    held = rng.random(n) < 0.1
    clicked = rng.random(n) < np.where(held, 0.04, 0.06)
    table = pd.DataFrame(
        {
            "policy": np.where(held, "holdout", "model"),
            "model_version": np.where(held, None, "3"),
            "opened": clicked,
            "clicked": clicked,
            "converted": False,
        }
    )
    lift = incrementality(table)
    assert lift.ci_low <= 0.02 <= lift.ci_high
    assert lift.p_value < 0.001
    rates = served_rates(table, level=0.999).set_index("policy")
    assert rates.loc["holdout", "decisions"] == int(held.sum())
    assert rates.loc["model", "ci_low"] <= 0.06 <= rates.loc["model", "ci_high"]
    with pytest.raises(InputError, match="holdout_share"):
        incrementality(table[~held])
