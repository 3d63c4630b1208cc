"""The statistics of an A/B test at its planned end: rates and means compared.

Conventions (one for every function here and in :mod:`measurement.planning` and
:mod:`measurement.sequential`, so numbers compare):

* Two arms, ``a`` (control) and ``b`` (treatment). Every difference is ``b − a``;
  a positive difference means the treatment did better.
* A rate arm is its counts: ``successes`` out of ``trials`` (recipients), integers with
  ``0 <= successes <= trials`` and ``trials >= 1``. An arm with no trials has no rate,
  so it is an error rather than a NaN.
* ``level`` is a two-sided confidence level in (0, 1); ``alpha`` a two-sided
  significance level in (0, 1).
* Bad input raises :class:`features.errors.InputError` (a ``ValueError``) naming the
  argument and its value. No function returns NaN; the degenerate cases (no success or
  no failure anywhere, constant samples) have defined answers, stated per function.

What backs each function (none re-implements a test these libraries provide):

* :func:`rate_interval` — ``statsmodels.stats.proportion.proportion_confint``
  (Wilson score interval).
* :func:`compare_rates` — ``confint_proportions_2indep`` (Newcombe's hybrid score
  interval of the difference) and ``proportions_ztest`` (pooled two-proportion z-test).
* :func:`rates_chi_square` — ``scipy.stats.chi2_contingency`` (Pearson, no continuity
  correction).
* :func:`compare_means` — ``scipy.stats.ttest_ind`` (Welch) or ``scipy.stats.bootstrap``
  (percentile bootstrap).

Power and the minimum detectable effect are in :mod:`measurement.planning`, p-values
safe to peek at in :mod:`measurement.sequential`, and the checks of the arguments all
of them share in :mod:`measurement.checks`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

from features.errors import InputError
from measurement.checks import FloatArray, _arm, _arms, _counts, _level, _sample, _show

#: Interval of the difference of two rates: Newcombe's hybrid score interval (method 10
#: of Newcombe 1998), built from the two arms' Wilson intervals.
DIFFERENCE_CI_METHOD = "newcomb"
#: Resampled observations held at once by :func:`compare_means`'s bootstrap
#: (``batch × (n_a + n_b)``), about 32 MiB of float64.
BOOTSTRAP_CHUNK_CELLS = 1 << 22


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class RateInterval:
    """One arm's rate with its Wilson score interval.

    Attributes
    ----------
    rate : float
        ``successes / trials``.
    ci_low, ci_high : float
        Wilson score interval, within [0, 1].
    level : float
        Confidence level of the interval.
    """

    rate: float
    ci_low: float
    ci_high: float
    level: float


@dataclass(frozen=True)
class RateComparison:
    """Two arms' rates compared: the difference ``b − a``, its interval and its test.

    Attributes
    ----------
    rate_a, rate_b : float
        Each arm's ``successes / trials``.
    difference : float
        ``rate_b − rate_a`` (absolute, in rate units).
    ci_low, ci_high : float
        Newcombe's hybrid score interval of the difference, within [−1, 1].
    level : float
        Confidence level of the interval.
    relative_lift : float or None
        ``difference / rate_a``; None when ``rate_a`` is 0 (no baseline to be
        relative to).
    z : float
        Pooled two-proportion z statistic of ``b − a`` (its square is the 2×2 Pearson
        χ² without continuity correction); 0 when the pooled rate is 0 or 1.
    p_value : float
        Two-sided p-value of ``z``; 1 when the pooled rate is 0 or 1.
    """

    rate_a: float
    rate_b: float
    difference: float
    ci_low: float
    ci_high: float
    level: float
    relative_lift: float | None
    z: float
    p_value: float


@dataclass(frozen=True)
class ChiSquare:
    """Pearson's χ² test that k arms share one rate.

    Attributes
    ----------
    statistic : float
        Pearson χ² of the k×2 (success, failure) table, without continuity correction.
    dof : int
        Degrees of freedom, ``k − 1``.
    p_value : float
        Upper-tail probability of ``statistic`` under χ²(dof).
    """

    statistic: float
    dof: int
    p_value: float


@dataclass(frozen=True)
class MeanComparison:
    """Two arms' means compared (e.g. revenue per recipient): ``b − a`` and its test.

    Attributes
    ----------
    mean_a, mean_b : float
        Each arm's sample mean.
    difference : float
        ``mean_b − mean_a``.
    ci_low, ci_high : float
        Confidence interval of the difference (Welch's t or percentile bootstrap).
    level : float
        Confidence level of the interval.
    method : str
        ``"welch"`` or ``"bootstrap"``.
    statistic : float or None
        Welch's t (``±inf`` when both arms are constant and differ); None for the
        bootstrap.
    df : float or None
        Welch–Satterthwaite degrees of freedom; None for the bootstrap, and when both
        arms are constant (no variance to approximate).
    p_value : float
        Two-sided p-value of no difference in means.
    n_resamples : int or None
        Bootstrap resamples; None for Welch.
    """

    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    level: float
    method: str
    statistic: float | None
    df: float | None
    p_value: float
    n_resamples: int | None = None


# ---------------------------------------------------------------------------- rates


def rate_interval(successes: int, trials: int, level: float = 0.95) -> RateInterval:
    """One arm's rate with its Wilson score interval.

    Wilson's interval keeps its coverage for small counts and rates near 0 or 1 (where
    e-mail click and conversion rates live) and never leaves [0, 1]; with no success
    it is ``[0, h]`` with ``h > 0``, not the empty ``[0, 0]`` of the Wald interval.

    Parameters
    ----------
    successes : int
        Successes (e.g. recipients who clicked), ``0 <= successes <= trials``.
    trials : int
        Trials (recipients), at least 1.
    level : float
        Confidence level, in (0, 1).

    Returns
    -------
    RateInterval

    Raises
    ------
    InputError
        Naming the argument, on a negative or non-integer count, ``successes >
        trials``, no trials, or a level outside (0, 1).
    """
    k, n = _arm(successes, trials, "successes", "trials")
    _level(level, "level")
    low, high = proportion_confint(k, n, alpha=1.0 - level, method="wilson")
    return RateInterval(
        rate=k / n,
        ci_low=min(max(float(low), 0.0), 1.0),
        ci_high=min(max(float(high), 0.0), 1.0),
        level=float(level),
    )


def compare_rates(
    successes_a: int,
    trials_a: int,
    successes_b: int,
    trials_b: int,
    level: float = 0.95,
) -> RateComparison:
    """Compare two arms' rates: difference ``b − a``, its interval, lift and z-test.

    The interval is Newcombe's hybrid score interval (``method="newcomb"`` of
    statsmodels' ``confint_proportions_2indep``), not the Wald interval: at the low
    rates and modest counts of e-mail tests Wald undercovers, and it collapses to
    ``[0, 0]`` when both arms have no success (or no failure), while Newcombe's
    interval, built from the two Wilson intervals, keeps near-nominal coverage there
    and stays within [−1, 1] (Newcombe 1998, method 10). The test is the pooled
    two-proportion z-test (``proportions_ztest``), the textbook test of equal rates;
    being pooled, it is not exactly the dual of the interval, so in borderline cases
    the interval may just include 0 while ``p_value < 1 − level`` or the reverse.

    Degenerate case: when the pooled rate is 0 or 1 (no success, or no failure, in
    either arm) the arms are identical, so ``z = 0`` and ``p_value = 1``; the interval
    is still Newcombe's (e.g. ``[−0.2775, 0.2775]`` for 0/10 against 0/10), and
    ``relative_lift`` is None whenever ``rate_a`` is 0.

    Parameters
    ----------
    successes_a, trials_a : int
        Control arm's successes and trials.
    successes_b, trials_b : int
        Treatment arm's successes and trials.
    level : float
        Confidence level of the interval, in (0, 1).

    Returns
    -------
    RateComparison

    Raises
    ------
    InputError
        Naming the argument, on a bad count or level (see :func:`rate_interval`).
    """
    k_a, n_a = _arm(successes_a, trials_a, "successes_a", "trials_a")
    k_b, n_b = _arm(successes_b, trials_b, "successes_b", "trials_b")
    _level(level, "level")
    rate_a, rate_b = k_a / n_a, k_b / n_b
    low, high = confint_proportions_2indep(
        k_b, n_b, k_a, n_a, method=DIFFERENCE_CI_METHOD, compare="diff", alpha=1.0 - level
    )
    pooled = (k_a + k_b) / (n_a + n_b)
    if pooled in (0.0, 1.0):
        z, p_value = 0.0, 1.0
    else:
        z_raw, p_raw = proportions_ztest([k_b, k_a], [n_b, n_a], value=0.0)
        z, p_value = float(z_raw), float(p_raw)
    return RateComparison(
        rate_a=rate_a,
        rate_b=rate_b,
        difference=rate_b - rate_a,
        ci_low=min(max(float(low), -1.0), 1.0),
        ci_high=min(max(float(high), -1.0), 1.0),
        level=float(level),
        relative_lift=None if k_a == 0 else (rate_b - rate_a) / rate_a,
        z=z,
        p_value=p_value,
    )


def rates_chi_square(successes: ArrayLike, trials: ArrayLike) -> ChiSquare:
    """Pearson's χ² test that k >= 2 arms share one rate.

    The k×2 table of (successes, failures) per arm goes to
    ``scipy.stats.chi2_contingency`` with ``correction=False``: for two arms the
    statistic is then the square of :func:`compare_rates`' pooled ``z``.

    Degenerate case: when no arm has a success, or no arm a failure, the arms agree
    exactly: ``statistic = 0`` and ``p_value = 1`` (scipy refuses the zero expected
    counts).

    Parameters
    ----------
    successes : array_like of int, shape (k,)
        Each arm's successes.
    trials : array_like of int, shape (k,)
        Each arm's trials, at least 1 each.

    Returns
    -------
    ChiSquare

    Raises
    ------
    InputError
        Naming the argument, on fewer than two arms, arrays of different lengths, or a
        bad count.
    """
    k = _counts(successes, "successes")
    n = _counts(trials, "trials")
    if k.ndim != 1 or k.size < 2:
        raise InputError("successes", _show(successes), "needs one count per arm, k >= 2 arms")
    if n.shape != k.shape:
        raise InputError("trials", _show(trials), f"needs {k.size} counts, one per arm")
    _arms(k, n, "successes", "trials")
    dof = k.size - 1
    total = int(k.sum())
    if total == 0 or total == int(n.sum()):
        return ChiSquare(statistic=0.0, dof=dof, p_value=1.0)
    table = np.column_stack([k, n - k])
    result = stats.chi2_contingency(table, correction=False)
    return ChiSquare(statistic=float(result.statistic), dof=dof, p_value=float(result.pvalue))


# ---------------------------------------------------------------------------- means


def compare_means(
    a: ArrayLike,
    b: ArrayLike,
    level: float = 0.95,
    method: Literal["welch", "bootstrap"] = "welch",
    n_resamples: int = 9999,
    seed: int | np.random.Generator | None = 0,
) -> MeanComparison:
    """Compare two arms' means (e.g. revenue per recipient): ``b − a``, interval, test.

    ``method="welch"``: Welch's t-test (``scipy.stats.ttest_ind`` with
    ``equal_var=False``) and its interval of the difference — no equal-variance
    assumption, the right default for revenue, whose spread differs between arms.

    ``method="bootstrap"``: ``scipy.stats.bootstrap`` on the difference of means,
    resampling each arm separately, with a percentile interval (BCa would add a
    jackknife over all ``n_a + n_b`` observations — quadratic work at A/B sizes, where
    the two agree). Its p-value is the interval's dual: ``2 · min(P*(θ* <= 0),
    P*(θ* >= 0))`` over the resampled differences ``θ*``, each count plus one over
    ``n_resamples + 1``: the smallest ``1 − level`` at which the percentile interval
    would exclude 0, so it agrees with the interval (up to the interpolation of the
    quantiles) and its resolution is ``2 / (n_resamples + 1)``. It tests the
    difference of means, not equality of the distributions (that would be a
    permutation test), and is as accurate as the percentile interval: good for large
    arms, optimistic for small skewed ones.

    Degenerate case: when both arms are constant the difference is known exactly: the
    interval is ``[d, d]`` and, for Welch, ``statistic`` is 0 with ``p_value`` 1 when
    the means are equal, ``±inf`` with ``p_value`` 0 when they differ (``df`` None);
    the bootstrap gives the same interval and ``p_value`` 1 or ``2 / (n_resamples +
    1)``.

    Parameters
    ----------
    a, b : array_like of float, shape (n_a,), (n_b,)
        Per-recipient values of the control and treatment arms (e.g. revenue, with 0
        for recipients who bought nothing); finite, at least 2 each.
    level : float
        Confidence level of the interval, in (0, 1).
    method : {"welch", "bootstrap"}
        The test and interval.
    n_resamples : int
        Bootstrap resamples (bootstrap only), at least 1.
    seed : int, numpy.random.Generator or None
        Seed of the bootstrap (bootstrap only); the same int gives the same result.

    Returns
    -------
    MeanComparison

    Raises
    ------
    InputError
        Naming the argument, on an arm with fewer than 2 or non-finite values, a level
        outside (0, 1), an unknown method or a bad ``n_resamples``.
    """
    x = _sample(a, "a")
    y = _sample(b, "b")
    _level(level, "level")
    if method not in ("welch", "bootstrap"):
        raise InputError("method", method, "must be 'welch' or 'bootstrap'")
    mean_a, mean_b = float(x.mean()), float(y.mean())
    difference = mean_b - mean_a
    constant = bool(np.ptp(x) == 0 and np.ptp(y) == 0)
    if method == "welch":
        if constant:
            statistic = 0.0 if difference == 0 else math.copysign(math.inf, difference)
            return MeanComparison(
                mean_a=mean_a,
                mean_b=mean_b,
                difference=difference,
                ci_low=difference,
                ci_high=difference,
                level=float(level),
                method="welch",
                statistic=statistic,
                df=None,
                p_value=1.0 if difference == 0 else 0.0,
            )
        result = stats.ttest_ind(y, x, equal_var=False)
        interval = result.confidence_interval(confidence_level=level)
        return MeanComparison(
            mean_a=mean_a,
            mean_b=mean_b,
            difference=difference,
            ci_low=float(interval.low),
            ci_high=float(interval.high),
            level=float(level),
            method="welch",
            statistic=float(result.statistic),
            df=float(result.df),
            p_value=float(result.pvalue),
        )
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer):
        raise InputError("n_resamples", n_resamples, "must be an integer >= 1")
    if n_resamples < 1:
        raise InputError("n_resamples", n_resamples, "must be an integer >= 1")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    batch = max(1, BOOTSTRAP_CHUNK_CELLS // (x.size + y.size))
    result = stats.bootstrap(
        (x, y),
        _difference_of_means,
        n_resamples=int(n_resamples),
        batch=batch,
        vectorized=True,
        paired=False,
        confidence_level=level,
        method="percentile",
        rng=rng,
    )
    resampled = np.asarray(result.bootstrap_distribution, dtype=np.float64)
    at_most = int(np.count_nonzero(resampled <= 0.0))
    at_least = int(np.count_nonzero(resampled >= 0.0))
    p_value = min(1.0, 2.0 * (min(at_most, at_least) + 1) / (resampled.size + 1))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if constant:  # every resample is the difference itself
        low = high = difference
    return MeanComparison(
        mean_a=mean_a,
        mean_b=mean_b,
        difference=difference,
        ci_low=low,
        ci_high=high,
        level=float(level),
        method="bootstrap",
        statistic=None,
        df=None,
        p_value=p_value,
        n_resamples=int(n_resamples),
    )


def _difference_of_means(a: FloatArray, b: FloatArray, axis: int = -1) -> FloatArray:
    """``mean(b) − mean(a)`` along ``axis``: the bootstrap's statistic (vectorised)."""
    return np.asarray(np.mean(b, axis=axis) - np.mean(a, axis=axis), dtype=np.float64)
