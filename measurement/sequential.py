"""P-values of two rates that stay valid however often one peeks: the mixture SPRT.

What backs each function:

* :func:`always_valid_p_values` — the normal-mixture SPRT (mSPRT) of Johari, Pekelis &
  Walsh (2017), written out here: neither statsmodels nor scipy has it.

Arms, levels and errors follow the conventions of :mod:`measurement.stats`; the
mixture variance is best chosen with :func:`measurement.planning.minimum_detectable_effect`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from features.errors import InputError
from measurement.checks import FloatArray, _arms, _finite, _looks, _show

#: Default mixture variance ``τ²`` of :func:`always_valid_p_values`: ``τ`` is one
#: percentage point of absolute difference in rate.
DEFAULT_MIXTURE_VARIANCE = 1e-4


def always_valid_p_values(
    successes_a: ArrayLike,
    trials_a: ArrayLike,
    successes_b: ArrayLike,
    trials_b: ArrayLike,
    mixture_variance: float = DEFAULT_MIXTURE_VARIANCE,
) -> FloatArray:
    """Always-valid p-values of ``rate_b − rate_a = 0`` along a sequence of looks.

    For anyone who looks before the planned end: rejecting at the first look where
    ``p <= alpha`` keeps the false-positive rate at most ``alpha`` however many looks
    are taken and whenever one stops, which the fixed-horizon p-value of
    :func:`compare_rates` does not (20 looks at an A/A test reject it far more often
    than 5 %).

    The mixture sequential probability ratio test (mSPRT) of Johari, Pekelis & Walsh,
    "Always valid inference: continuous monitoring of A/B tests" (2017; Operations
    Research 2022), with a normal mixture ``θ ~ N(0, τ²)`` over the difference. At
    each look, with ``θ̂`` the observed difference, ``V`` its variance under no
    difference (the pooled one of the z-test, ``p̄(1 − p̄)(1/n_a + 1/n_b)``) and so
    ``z² = θ̂² / V``, the mixture likelihood ratio is::

        Λ = sqrt(V / (V + τ²)) · exp(z² τ² / (2 (V + τ²)))

    and the p-value is ``min(1, 1/Λ)`` minimised over this and every earlier look
    (non-increasing). By Ville's inequality ``P(sup Λ >= 1/α) <= α`` under no
    difference, for the normal approximation of the counts; the normal approximation
    wants a few dozen successes by the first look. At a look where the pooled rate is
    0 or 1 there is no evidence (``Λ = 1``). Looks taken at any spacing are fine; the
    test is conservative for a few looks, built for continuous monitoring.

    Choosing the mixture variance: ``τ`` is the size of difference (absolute, in rate
    units) the test is tuned to find. The test is valid for every ``τ² > 0``; ``τ``
    only moves the power. At a given ``z`` the evidence is largest for ``τ² = V (z² −
    1)``: ``τ`` about 3 standard errors of the difference at the sample size where one
    hopes to conclude, which is about the minimum detectable effect of a fixed-horizon
    test of that size. So ``mixture_variance = minimum_detectable_effect(base_rate,
    planned_trials_per_arm) ** 2`` is a good choice, and when unsure, err large: at
    ``α = 0.05`` the ``|z|`` needed to reject is 3.04 with the best ``τ``, 3.23 with
    ``τ`` three times too large, 3.75 with ``τ`` three times too small. The default
    ``1e-4`` (``τ`` of one percentage point) suits click and conversion rates of a few
    percent tested on tens of thousands of recipients per arm; scale it up for rates
    of tens of percent (opens) or small tests.

    Parameters
    ----------
    successes_a, trials_a : array_like of int, shape (n_looks,)
        Control arm's cumulative successes and trials at each look, non-decreasing,
        at least 1 trial at the first look.
    successes_b, trials_b : array_like of int, shape (n_looks,)
        Treatment arm's, likewise.
    mixture_variance : float
        ``τ²`` of the normal mixture over the difference in rate, > 0.

    Returns
    -------
    numpy.ndarray of float, shape (n_looks,)
        The always-valid p-value after each look, non-increasing, in [0, 1].

    Raises
    ------
    InputError
        Naming the argument, on arrays that are empty, of different lengths,
        decreasing, or with a bad count, or a non-positive ``mixture_variance``.
    """
    k_a = _looks(successes_a, "successes_a")
    n_a = _looks(trials_a, "trials_a")
    k_b = _looks(successes_b, "successes_b")
    n_b = _looks(trials_b, "trials_b")
    for name, values, raw in (
        ("trials_a", n_a, trials_a),
        ("successes_b", k_b, successes_b),
        ("trials_b", n_b, trials_b),
    ):
        if values.shape != k_a.shape:
            raise InputError(name, _show(raw), f"needs {k_a.size} looks, as successes_a has")
    _arms(k_a, n_a, "successes_a", "trials_a")
    _arms(k_b, n_b, "successes_b", "trials_b")
    if not _finite(mixture_variance) or mixture_variance <= 0:
        raise InputError("mixture_variance", mixture_variance, "must be a finite number > 0")
    tau2 = float(mixture_variance)
    pooled = (k_a + k_b) / (n_a + n_b)
    variance = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)
    informative = variance > 0
    v = np.where(informative, variance, 1.0)
    z2 = np.where(informative, (k_b / n_b - k_a / n_a) ** 2 / v, 0.0)
    log_ratio = -0.5 * np.log1p(tau2 / v) + 0.5 * z2 * tau2 / (v + tau2)
    log_ratio = np.where(informative, log_ratio, 0.0)
    p_values = np.minimum(1.0, np.exp(-log_ratio))
    return np.minimum.accumulate(p_values).astype(np.float64)
