"""A/B statistics against published examples, hand computations and seeded simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from features.errors import InputError
from measurement.planning import minimum_detectable_effect, power_rates
from measurement.sequential import always_valid_p_values
from measurement.stats import compare_means, compare_rates, rate_interval, rates_chi_square

# -------------------------------------------------------------- published worked examples

# The Physicians' Health Study (aspirin and myocardial infarction), as tabulated in
# Agresti's Categorical Data Analysis: 189 heart attacks among 11,034 on placebo, 104
# among 11,037 on aspirin. Published: p1 − p2 = 0.0171 − 0.0094 = 0.0077, Pearson
# X² = 25.01 (G² = 25.37), df = 1. Arm a is aspirin, b placebo, so b − a = +0.0077.
ASPIRIN = (104, 11037, 189, 11034)


def test_two_proportion_z_test_worked_example():
    # By hand:
    #   p_a = 104 / 11037 = 0.0094229,  p_b = 189 / 11034 = 0.0171289
    #   d   = p_b − p_a                 = 0.0077060
    #   pooled p̄ = (104 + 189) / (11037 + 11034) = 293 / 22071 = 0.0132753
    #   SE  = sqrt(p̄ (1 − p̄) (1/11037 + 1/11034))
    #       = sqrt(0.0130991 × 1.812333e-4) = sqrt(2.373998e-6) = 0.0015408
    #   z   = d / SE = 0.0077060 / 0.0015408 = 5.0014
    #   p   = 2 (1 − Φ(5.0014)) = 5.69e-7
    # and z² = 25.014, Agresti's published X² = 25.01.
    out = compare_rates(*ASPIRIN)
    assert out.rate_a == pytest.approx(0.0094229, abs=5e-8)
    assert out.rate_b == pytest.approx(0.0171289, abs=5e-8)
    assert round(out.difference, 4) == 0.0077
    assert out.z == pytest.approx(5.0014, abs=5e-5)
    assert out.p_value == pytest.approx(5.69e-7, rel=1e-3)
    assert round(out.z**2, 2) == 25.01
    assert out.relative_lift == pytest.approx(0.0077060 / 0.0094229, rel=1e-4)
    # Newcombe's interval of the difference brackets it and excludes 0.
    assert 0 < out.ci_low < out.difference < out.ci_high


def test_chi_square_of_the_two_arms_is_z_squared_and_matches_agresti():
    k_a, n_a, k_b, n_b = ASPIRIN
    chi = rates_chi_square([k_a, k_b], [n_a, n_b])
    z = compare_rates(*ASPIRIN).z
    assert round(chi.statistic, 2) == 25.01
    assert chi.dof == 1
    assert chi.statistic == pytest.approx(z**2, rel=1e-12)
    assert chi.p_value == pytest.approx(compare_rates(*ASPIRIN).p_value, rel=1e-9)


def test_chi_square_test_of_independence_openintro_search_algorithms():
    # OpenIntro Statistics, "Testing for independence in two-way tables": three search
    # algorithms, and whether the user ran a new search. current 1489 / 5000,
    # test 1 751 / 2500, test 2 682 / 2500. Expected counts under independence: 1461,
    # 730.5, 730.5 new searches. Published: X² = 6.12, df = 2, p-value = 0.047.
    out = rates_chi_square([1489, 751, 682], [5000, 2500, 2500])
    assert round(out.statistic, 2) == 6.12
    assert out.dof == 2
    assert round(out.p_value, 3) == 0.047


@pytest.mark.parametrize(
    ("b", "a", "published"),
    [
        # Newcombe (1998), Statistics in Medicine 17:873, Table II, method 10 (score
        # interval, no continuity correction): θ = p1 − p2 for (p1, p2) = (b, a).
        ((56, 70), (48, 80), (0.0524, 0.3339)),
        ((9, 10), (3, 10), (0.1705, 0.8090)),
        ((5, 56), (0, 29), (-0.0381, 0.1926)),
        ((0, 10), (0, 20), (-0.1611, 0.2775)),
        ((0, 10), (0, 10), (-0.2775, 0.2775)),
        ((10, 10), (0, 20), (0.6791, 1.0000)),
    ],
)
def test_difference_interval_is_newcombes_published_one(b, a, published):
    out = compare_rates(a[0], a[1], b[0], b[1])
    assert (round(out.ci_low, 4), round(out.ci_high, 4)) == published


def test_wilson_interval_by_hand():
    # Wilson: centre (k + z²/2) / (n + z²), half-width z / (n + z²) · sqrt(k(n−k)/n + z²/4)
    # with z = 1.959964. For 3 / 10: centre 0.355557, half-width 0.247715 →
    # [0.107791, 0.603222]. For 0 / 10 the upper end is 0.2775 (Newcombe 1998).
    out = rate_interval(3, 10)
    assert out.rate == 0.3
    assert (out.ci_low, out.ci_high) == pytest.approx((0.107791, 0.603222), abs=1e-6)
    zero = rate_interval(0, 10)
    assert zero.ci_low == 0.0
    assert round(zero.ci_high, 4) == 0.2775
    narrow = rate_interval(3, 10, level=0.5)
    assert out.ci_low < narrow.ci_low < narrow.ci_high < out.ci_high


def test_welch_by_hand():
    # a = [1, 2, 3]: mean 2, s² = 1;  b = [4, 5, 7]: mean 16/3, s² = 7/3.
    # SE² = 1/3 + (7/3)/3 = 10/9;  t = (16/3 − 2) / sqrt(10/9) = (10/3) / (√10 / 3) = √10.
    # Welch–Satterthwaite: df = (10/9)² / ((1/3)²/2 + (7/9)²/2) = (100/81) / (58/162)
    #                         = 100/29 = 3.4483.
    # 95 % interval: 10/3 ∓ t_{0.975, 100/29} · sqrt(10/9) = 10/3 ∓ 2.960730 × 1.054093
    #              = [0.212449, 6.454217];  p = 2 · P(T_{100/29} > √10) = 0.041915.
    out = compare_means([1, 2, 3], [4, 5, 7])
    assert out.method == "welch"
    assert out.difference == pytest.approx(10 / 3)
    assert out.statistic == pytest.approx(math.sqrt(10), rel=1e-12)
    assert out.df == pytest.approx(100 / 29, rel=1e-12)
    assert (out.ci_low, out.ci_high) == pytest.approx((0.212449, 6.454217), abs=1e-6)
    assert out.p_value == pytest.approx(0.041915, abs=1e-6)
    assert out.n_resamples is None


# ------------------------------------------------------------------------- A/A behaviour


def test_a_a_z_test_rejects_at_the_nominal_rate():
    # 1,000 A/A experiments (2,000 recipients per arm, rate 5 %). Under the null the
    # number of rejections at α = 0.05 is Binomial(1000, 0.05), whose central 99.9 %
    # range is [29, 74]: the rejection rate must fall in [2.9 %, 7.4 %].
    rng = np.random.default_rng(20261206)
    successes = rng.binomial(2000, 0.05, size=(1000, 2))
    p_values = np.array([compare_rates(int(a), 2000, int(b), 2000).p_value for a, b in successes])
    rate = float(np.mean(p_values < 0.05))
    low, high = scipy_stats.binom.interval(0.999, 1000, 0.05)
    assert low / 1000 <= rate <= high / 1000, rate
    # And the p-values are about uniform: a tenth of them under 0.1.
    assert 0.07 <= float(np.mean(p_values < 0.1)) <= 0.13


def _naive_p_values(k_a, n_a, k_b, n_b):
    """The fixed-horizon pooled z-test's p-values, vectorised over any shape of looks."""
    pooled = (k_a + k_b) / (n_a + n_b)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (k_b / n_b - k_a / n_a) / se
    return 2 * scipy_stats.norm.sf(np.abs(z))


def test_peeking_inflates_the_naive_test_but_not_the_always_valid_one():
    # 1,000 A/A experiments, each looked at 20 times, 500 more recipients per arm per
    # look (10,000 per arm at the end), rate 5 %. Stopping at the first look with
    # p < 0.05: the fixed-horizon z-test rejects far more often than 5 % (about a
    # quarter of the time with 20 looks), the always-valid p-values at most 5 % plus the
    # binomial tolerance (Binomial(1000, 0.05) 99.9 % upper end: 7.4 %).
    rng = np.random.default_rng(7)
    n_sims, n_looks, per_look = 1000, 20, 500
    increments = rng.binomial(per_look, 0.05, size=(n_sims, n_looks, 2))
    k = np.cumsum(increments, axis=1)
    n = per_look * np.arange(1, n_looks + 1)
    naive = _naive_p_values(k[..., 0], n, k[..., 1], n)
    # The vectorised naive p-values are compare_rates' own.
    for sim, look in [(0, 0), (3, 7), (999, 19)]:
        one = compare_rates(int(k[sim, look, 0]), int(n[look]), int(k[sim, look, 1]), int(n[look]))
        assert naive[sim, look] == pytest.approx(one.p_value, rel=1e-9)
    naive_rate = float(np.mean((naive < 0.05).any(axis=1)))
    valid = np.array([always_valid_p_values(k[i, :, 0], n, k[i, :, 1], n) for i in range(n_sims)])
    valid_rate = float(np.mean((valid < 0.05).any(axis=1)))
    assert naive_rate > 0.15, naive_rate
    assert valid_rate <= 0.074, valid_rate
    assert valid_rate < naive_rate / 3
    # Always-valid p-values never claim more than the naive peeker: at every look they
    # are at least the smallest fixed-horizon p-value seen so far.
    assert np.all(valid >= np.minimum.accumulate(naive, axis=1) - 1e-12)


def test_always_valid_p_values_are_running_and_find_a_real_effect():
    rng = np.random.default_rng(11)
    n = 1000 * np.arange(1, 31)
    k_a = np.cumsum(rng.binomial(1000, 0.05, size=30))
    k_b = np.cumsum(rng.binomial(1000, 0.06, size=30))
    p = always_valid_p_values(k_a, n, k_b, n)
    assert p.shape == (30,)
    assert p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(np.diff(p) <= 0)
    assert p[-1] < 0.05  # a 1-point lift on 30,000 per arm is found
    # The same data with arms swapped: the same p-values (two-sided).
    assert always_valid_p_values(k_b, n, k_a, n) == pytest.approx(p)
    # A wider mixture changes the power, not the validity: still in [0, 1], running.
    wide = always_valid_p_values(k_a, n, k_b, n, mixture_variance=1e-2)
    assert np.all(np.diff(wide) <= 0) and np.all((wide >= 0) & (wide <= 1))


def test_always_valid_p_values_without_information_stay_at_one():
    # No success yet in either arm: the pooled rate is 0, no evidence, p = 1.
    p = always_valid_p_values([0, 0, 3], [100, 200, 300], [0, 0, 2], [100, 200, 300])
    assert p[0] == 1.0 and p[1] == 1.0
    assert 0 < p[2] <= 1


# -------------------------------------------------------------------------- power, MDE


def test_minimum_detectable_effect_gives_back_the_power():
    for base, n in [(0.05, 5000), (0.02, 20000), (0.3, 800)]:
        mde = minimum_detectable_effect(base, n)
        assert 0 < mde < 1 - base
        assert power_rates(base, mde, n) == pytest.approx(0.8, abs=1e-3)
        strict = minimum_detectable_effect(base, n, alpha=0.01, power=0.9)
        assert strict > mde
        assert power_rates(base, strict, n, alpha=0.01) == pytest.approx(0.9, abs=1e-3)


def test_power_grows_with_trials_and_is_alpha_without_an_effect():
    powers = [power_rates(0.05, 0.01, n) for n in (500, 1000, 2000, 5000, 10000, 20000)]
    assert np.all(np.diff(powers) > 0)
    assert powers[0] < 0.2 and powers[-1] > 0.99
    assert power_rates(0.05, 0.0, 5000) == pytest.approx(0.05)
    # Two-sided: a drop counts too, and is found more often than a rise of the same
    # size, since a rate's variance shrinks towards 0 (Cohen's h is larger).
    assert power_rates(0.05, 0.01, 5000) < power_rates(0.05, -0.01, 5000) < 1


def test_empirical_power_at_the_minimum_detectable_effect_is_the_planned_power():
    # 2,000 experiments of 5,000 recipients per arm at base 5 % and base + MDE: the
    # z-test of compare_rates should reject about 80 % of them. Binomial(2000, 0.8) has
    # its central 99.9 % range at [77.0 %, 82.9 %]; the arcsine power approximation adds
    # a little, so the test allows ±3.5 points.
    base, n = 0.05, 5000
    mde = minimum_detectable_effect(base, n)
    rng = np.random.default_rng(5)
    k_a = rng.binomial(n, base, size=2000)
    k_b = rng.binomial(n, base + mde, size=2000)
    rejected = [
        compare_rates(int(a), n, int(b), n).p_value < 0.05 for a, b in zip(k_a, k_b, strict=True)
    ]
    rate = float(np.mean(rejected))
    assert abs(rate - 0.8) <= 0.035, rate


# ------------------------------------------------------------------------- means


def test_bootstrap_agrees_with_welch_on_large_samples_and_is_seeded():
    rng = np.random.default_rng(3)
    a = rng.exponential(10.0, size=4000)
    b = rng.exponential(11.0, size=4000)
    welch = compare_means(a, b)
    boot = compare_means(a, b, method="bootstrap", n_resamples=2000, seed=1)
    assert boot.method == "bootstrap" and boot.statistic is None and boot.df is None
    assert boot.n_resamples == 2000
    assert boot.difference == welch.difference
    assert boot.ci_low == pytest.approx(welch.ci_low, abs=0.1)
    assert boot.ci_high == pytest.approx(welch.ci_high, abs=0.1)
    assert boot.p_value < 0.05 and welch.p_value < 0.05
    again = compare_means(a, b, method="bootstrap", n_resamples=2000, seed=1)
    assert again == boot


def test_bootstrap_p_value_is_the_dual_of_its_interval():
    rng = np.random.default_rng(4)
    for shift in (0.0, 0.05, 0.1, 0.2, 0.4):
        a = rng.normal(0.0, 1.0, size=300)
        b = rng.normal(shift, 1.0, size=300)
        out = compare_means(a, b, method="bootstrap", n_resamples=1999, seed=0)
        excludes_zero = out.ci_low > 0 or out.ci_high < 0
        if abs(out.p_value - 0.05) > 0.005:  # away from the interpolation at the edge
            assert excludes_zero == (out.p_value < 0.05), out


def test_a_a_means_reject_at_about_the_nominal_rate():
    # 400 A/A experiments of revenue-like data (exponential, 400 recipients per arm):
    # Welch and the bootstrap each reject at about 5 %; Binomial(400, 0.05) has its
    # central 99.9 % range at [7, 36], i.e. [1.75 %, 9 %].
    rng = np.random.default_rng(12)
    welch, boot = [], []
    for _ in range(400):
        a = rng.exponential(5.0, size=400)
        b = rng.exponential(5.0, size=400)
        welch.append(compare_means(a, b).p_value < 0.05)
        boot.append(compare_means(a, b, method="bootstrap", n_resamples=499, seed=0).p_value < 0.05)
    low, high = scipy_stats.binom.interval(0.999, 400, 0.05)
    assert low / 400 <= float(np.mean(welch)) <= high / 400
    assert low / 400 <= float(np.mean(boot)) <= high / 400


# ------------------------------------------------------------------- degenerate cases


def test_both_rates_zero_is_defined():
    out = compare_rates(0, 500, 0, 400)
    assert (out.rate_a, out.rate_b, out.difference) == (0.0, 0.0, 0.0)
    assert (out.z, out.p_value) == (0.0, 1.0)
    assert out.relative_lift is None
    assert -1 < out.ci_low < 0 < out.ci_high < 1
    all_one = compare_rates(300, 300, 200, 200)
    assert (all_one.z, all_one.p_value, all_one.relative_lift) == (0.0, 1.0, 0.0)
    chi = rates_chi_square([0, 0, 0], [10, 20, 30])
    assert (chi.statistic, chi.dof, chi.p_value) == (0.0, 2, 1.0)
    assert compare_rates(0, 100, 5, 100).relative_lift is None


def test_constant_samples_are_defined():
    same = compare_means([2.0, 2.0, 2.0], [2.0, 2.0])
    assert (same.statistic, same.p_value, same.ci_low, same.ci_high) == (0.0, 1.0, 0.0, 0.0)
    assert same.df is None
    apart = compare_means([0.0, 0.0], [3.0, 3.0, 3.0])
    assert apart.statistic == math.inf and apart.p_value == 0.0
    assert (apart.ci_low, apart.ci_high) == (3.0, 3.0)
    boot = compare_means([0.0, 0.0], [3.0, 3.0], method="bootstrap", n_resamples=99)
    assert (boot.ci_low, boot.ci_high, boot.p_value) == (3.0, 3.0, 0.02)
    boot_same = compare_means([1.0, 1.0], [1.0, 1.0], method="bootstrap", n_resamples=99)
    assert boot_same.p_value == 1.0


def test_results_never_hold_nan():
    cases = [
        compare_rates(0, 1, 1, 1),
        compare_rates(1, 1, 1, 1),
        compare_rates(0, 3, 0, 7, level=0.5),
        compare_means([0.0, 1.0], [0.0, 0.0]),
        compare_means([0.0, 1.0], [5.0, 5.0], method="bootstrap", n_resamples=50),
    ]
    for out in cases:
        for value in vars(out).values():
            if isinstance(value, float):
                assert not math.isnan(value), out


# ------------------------------------------------------------------------ input errors


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: rate_interval(-1, 10), "successes"),
        (lambda: rate_interval(11, 10), "successes"),
        (lambda: rate_interval(0, 0), "trials"),
        (lambda: rate_interval(1.5, 10), "successes"),
        (lambda: rate_interval(1, 10, level=1.0), "level"),
        (lambda: rate_interval(1, 10, level=0.0), "level"),
        (lambda: rate_interval(1, 10, level=float("nan")), "level"),
        (lambda: compare_rates(1, 0, 1, 10), "trials_a"),
        (lambda: compare_rates(1, 10, 12, 10), "successes_b"),
        (lambda: compare_rates(1, 10, 1, -10), "trials_b"),
        (lambda: compare_rates(-1, 10, 1, 10), "successes_a"),
        (lambda: compare_rates(1, 10, 1, 10, level=95), "level"),
        (lambda: rates_chi_square([1], [10]), "successes"),
        (lambda: rates_chi_square([1, 2], [10]), "trials"),
        (lambda: rates_chi_square([1, 2], [10, 0]), "trials"),
        (lambda: rates_chi_square([1, 20], [10, 10]), "successes"),
        (lambda: rates_chi_square([1, -2], [10, 10]), "successes"),
        (lambda: compare_means([], [1.0, 2.0]), "a"),
        (lambda: compare_means([1.0, 2.0], [1.0]), "b"),
        (lambda: compare_means([1.0, float("nan")], [1.0, 2.0]), "a"),
        (lambda: compare_means([1.0, 2.0], [1.0, 2.0], level=1.5), "level"),
        (lambda: compare_means([1.0, 2.0], [1.0, 2.0], method="mann"), "method"),
        (
            lambda: compare_means([1.0, 2.0], [1.0, 2.0], method="bootstrap", n_resamples=0),
            "n_resamples",
        ),
        (lambda: power_rates(0.0, 0.01, 100), "base_rate"),
        (lambda: power_rates(0.5, 0.6, 100), "effect"),
        (lambda: power_rates(0.5, 0.1, 0), "trials_per_arm"),
        (lambda: power_rates(0.5, 0.1, 100, alpha=0), "alpha"),
        (lambda: minimum_detectable_effect(1.0, 100), "base_rate"),
        (lambda: minimum_detectable_effect(0.5, 100, power=0.01), "power"),
        (lambda: minimum_detectable_effect(0.99, 2), "trials_per_arm"),
        (lambda: always_valid_p_values([], [], [], []), "successes_a"),
        (lambda: always_valid_p_values([1, 2], [10, 20], [1], [10]), "successes_b"),
        (lambda: always_valid_p_values([1, 2], [10, 20], [1, 2], [0, 20]), "trials_b"),
        (lambda: always_valid_p_values([5, 2], [10, 20], [1, 2], [10, 20]), "successes_a"),
        (lambda: always_valid_p_values([1, 2], [10, 20], [1, 30], [10, 20]), "successes_b"),
        (
            lambda: always_valid_p_values([1], [10], [1], [10], mixture_variance=0.0),
            "mixture_variance",
        ),
    ],
)
def test_bad_input_names_the_argument(call, field):
    with pytest.raises(InputError) as caught:
        call()
    assert isinstance(caught.value, ValueError)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}=")
