"""An experiment read from decisions and outcomes: planted rates recovered, the right
arm compared, the sequential test shown over the looks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import InputError
from measurement.experiment import analyse

START = pd.Timestamp("2026-05-01", tz="UTC")


def _table(rates: dict[str, float], n: int, *, seed: int = 0, days: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for arm, rate in rates.items():
        clicked = rng.random(n) < rate
        converted = clicked & (rng.random(n) < 0.3)
        parts.append(
            pd.DataFrame(
                {
                    "decision_id": [f"{arm}-{i}" for i in range(n)],
                    "ts": START + pd.to_timedelta(rng.uniform(0, days * 86400, n), unit="s"),
                    "customer_id": [f"c-{arm}-{i}" for i in range(n)],
                    "content_id": arm,
                    "policy": "model",
                    "opened": clicked | (rng.random(n) < 0.2),
                    "clicked": clicked,
                    "converted": converted,
                    "revenue": np.where(converted, rng.gamma(2.0, 25.0, n), 0.0),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_planted_rates_are_covered_and_a_real_lift_is_found():
    table = _table({"A": 0.05, "B": 0.07}, 20_000)
    experiment = analyse(table, by="variant", control="A")
    a, b = experiment.arm("A"), experiment.arm("B")
    assert (a.recipients, b.recipients) == (20_000, 20_000)
    for arm, truth in ((a, 0.05), (b, 0.07)):
        assert arm.rates["click"].ci_low <= truth <= arm.rates["click"].ci_high
        assert arm.successes["click"] == int(
            table.loc[table.content_id == arm.name, "clicked"].sum()
        )
    (compared,) = experiment.comparisons
    assert compared.arm == "B" and compared.control == "A"
    click = compared.rates["click"]
    assert click.ci_low <= 0.02 <= click.ci_high
    assert click.p_value < 1e-6
    assert compared.always_valid_p < 0.01
    # Revenue per recipient: B converts more, so earns more.
    assert compared.revenue.difference > 0
    # 20,000 a side detect well under the planted 2 points.
    assert compared.minimum_detectable_effect < 0.01
    assert experiment.chi_square["click"].p_value < 1e-6
    # The always-valid p-values never rise from one look to the next.
    p = experiment.looks.loc[experiment.looks.arm == "B", "always_valid_p"].to_numpy()
    assert len(p) == 10 and np.all(np.diff(p) <= 0)
    assert experiment.summary()["B.click_difference"] == pytest.approx(click.difference)


def test_an_a_a_experiment_is_rarely_significant_even_when_read_every_day():
    found = sum(
        analyse(_table({"A": 0.05, "B": 0.05}, 4_000, seed=seed), by="variant")
        .comparisons[0]
        .always_valid_p
        < 0.05
        for seed in range(60)
    )
    assert found <= 6  # 5 % of 60 is 3; 6 or more has probability under 8 %


def test_the_control_defaults_to_the_holdout_or_the_largest_arm():
    table = _table({"A": 0.05, "B": 0.05, "C": 0.05}, 500)
    table.loc[table.content_id == "C", "policy"] = "holdout"
    assert analyse(table, by="policy").control == "holdout"
    bigger = pd.concat(
        [table, table[table.content_id == "B"].assign(decision_id=lambda f: f.decision_id + "x")]
    )
    assert analyse(bigger, by="variant").control == "B"


def test_what_cannot_be_an_experiment_fails_naming_why():
    table = _table({"A": 0.05}, 100)
    with pytest.raises(InputError, match="at least two arms"):
        analyse(table, by="variant")
    with pytest.raises(InputError, match="control"):
        analyse(_table({"A": 0.05, "B": 0.05}, 100), by="variant", control="Z")
    with pytest.raises(InputError, match="look_every"):
        analyse(_table({"A": 0.05, "B": 0.05}, 100), by="variant", look_every="often")


def test_an_arm_of_one_recipient_is_shown_not_compared():
    table = _table({"A": 0.05, "B": 0.05}, 500)
    lone = table.iloc[[0]].assign(content_id="C", decision_id="lone")
    experiment = analyse(pd.concat([table, lone], ignore_index=True), by="variant", control="A")
    assert experiment.arm("C").recipients == 1
    assert [c.arm for c in experiment.comparisons] == ["B"]
    with pytest.raises(InputError, match="too few"):
        analyse(pd.concat([table, lone], ignore_index=True), by="variant", control="C")
