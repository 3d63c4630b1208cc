"""Planning an A/B test of rates: its power, and the smallest effect it can detect.

What backs each function:

* :func:`power_rates`, :func:`minimum_detectable_effect` —
  ``statsmodels.stats.power.NormalIndPower`` on Cohen's ``h``
  (``proportion_effectsize``).

Arms, levels and errors follow the conventions of :mod:`measurement.stats`, whose
:func:`~measurement.stats.compare_rates` is the test planned for.
"""

from __future__ import annotations

import math

from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from features.errors import InputError
from measurement.checks import _finite, _level, _positive_int


def power_rates(base_rate: float, effect: float, trials_per_arm: int, alpha: float = 0.05) -> float:
    """Power of the two-sided test of two rates to detect an absolute difference.

    Power of the normal test on Cohen's ``h = 2 asin√(base_rate + effect) − 2
    asin√base_rate`` (``proportion_effectsize``) with equal arms
    (``NormalIndPower``); the arcsine scale makes the variance free of the rate, and
    at A/B sizes its power matches the pooled z-test of :func:`compare_rates`. A zero
    effect gives ``alpha`` (both tails counted).

    Parameters
    ----------
    base_rate : float
        Control arm's rate, in (0, 1).
    effect : float
        Absolute difference ``rate_b − rate_a`` to detect (either sign), with
        ``base_rate + effect`` in [0, 1].
    trials_per_arm : int
        Trials (recipients) in each arm, at least 1.
    alpha : float
        Two-sided significance level, in (0, 1).

    Returns
    -------
    float
        Probability of rejecting no difference, in [alpha, 1).

    Raises
    ------
    InputError
        Naming the argument, on a value outside its range.
    """
    _level(base_rate, "base_rate")
    if not _finite(effect) or not 0.0 <= base_rate + effect <= 1.0:
        raise InputError("effect", effect, f"base_rate + effect must lie in [0, 1] ({base_rate=})")
    n = _positive_int(trials_per_arm, "trials_per_arm")
    _level(alpha, "alpha")
    h = abs(float(proportion_effectsize(base_rate + effect, base_rate)))
    power = NormalIndPower().power(h, nobs1=n, alpha=alpha, ratio=1.0, alternative="two-sided")
    return float(power)


def minimum_detectable_effect(
    base_rate: float, trials_per_arm: int, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest absolute increase in rate the two-sided test detects with ``power``.

    Solves ``NormalIndPower`` for Cohen's ``h`` and turns it back into a rate,
    ``sin²(asin√base_rate + h / 2) − base_rate``, so that
    ``power_rates(base_rate, mde, trials_per_arm, alpha) == power``. The increase is
    the upward one; a decrease of the same ``h`` is a slightly different absolute
    amount.

    Parameters
    ----------
    base_rate : float
        Control arm's rate, in (0, 1).
    trials_per_arm : int
        Trials (recipients) in each arm, at least 1.
    alpha : float
        Two-sided significance level, in (0, 1).
    power : float
        Wanted power, in (alpha, 1).

    Returns
    -------
    float
        The absolute difference in rate, in (0, 1 − base_rate].

    Raises
    ------
    InputError
        Naming the argument, on a value outside its range, or ``trials_per_arm`` when
        no increase within [0, 1] reaches the power.
    """
    _level(base_rate, "base_rate")
    n = _positive_int(trials_per_arm, "trials_per_arm")
    _level(alpha, "alpha")
    if not _finite(power) or not alpha < power < 1.0:
        raise InputError("power", power, f"must lie in (alpha, 1) ({alpha=})")
    h = float(
        NormalIndPower().solve_power(
            effect_size=None, nobs1=n, alpha=alpha, power=power, alternative="two-sided"
        )
    )
    angle = math.asin(math.sqrt(base_rate)) + h / 2.0
    if not math.isfinite(h) or angle > math.pi / 2:
        raise InputError(
            "trials_per_arm",
            trials_per_arm,
            f"too few: no rate up to 1 is detected from {base_rate=} with {power=}",
        )
    return math.sin(angle) ** 2 - base_rate
