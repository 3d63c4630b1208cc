"""Off-policy evaluation: what a target policy would have earned on logged bandit data.

Conventions (one protocol for every estimator, so numbers compare):

* Logged round ``i`` has the shown action ``a_i`` (an index in ``[0, n_actions)``), its
  reward ``r_i`` and the logging propensity ``p_i = π0(a_i | x_i)`` in ``(0, 1]``.
  Eligibility is applied before the logging policy chooses (see DESIGN.md), so ``p_i``
  is the probability of ``a_i`` among the eligible actions.
* The target policy is given as its action distribution ``π(· | x_i)``, an
  ``(n, n_actions)`` array whose rows sum to 1; :func:`deterministic_policy` and
  :func:`uniform_policy` build the fixed ones, and :meth:`models.policy.Policy.probabilities`
  (the served policy's one definition) every policy a selector can serve.
* A reward model, for DM and DR, is its predictions ``q̂(x_i, a)`` as an
  ``(n, n_actions)`` array.
* Importance weight ``w_i = π(a_i | x_i) / p_i``, optionally clipped at ``max_weight``
  (IPS and DR only; SNIPS normalises instead).

Estimators, each a mean (or a ratio of means) of per-round terms:

* IPS   ``V = mean(w_i r_i)``
* SNIPS ``V = Σ w_i r_i / Σ w_i``
* DM    ``V = mean(Σ_a π(a|x_i) q̂(x_i, a))``
* DR    ``V = mean(Σ_a π(a|x_i) q̂(x_i, a) + w_i (r_i − q̂(x_i, a_i)))``

Confidence intervals are percentile bootstrap intervals over rounds: each resample
draws ``n`` rounds with replacement (an index matrix, a chunk of resamples at a time)
and recomputes the estimate. DM's interval holds the reward model fixed, so it shows
sampling noise over contexts only, not the model's error — a biased reward model gets a
narrow interval around the wrong value. The effective sample size is
``(Σ w)² / Σ w²`` (``n`` for DM): how many on-policy rounds the estimate is worth.

:func:`beats` is the promotion gate of DESIGN.md: a candidate is promoted only if its
lower confidence bound exceeds the point estimate of every comparator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from features.errors import InputError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Index-matrix cells drawn per bootstrap chunk (``chunk × n``), about 32 MiB of int64.
BOOTSTRAP_CHUNK_CELLS = 1 << 22
#: Tolerance on ``|Σ_a π(a|x) − 1|`` for a row of a target action distribution.
ROW_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Estimate:
    """One estimator's value of a target policy, with its bootstrap interval.

    Attributes
    ----------
    name : str
        Estimator: ``"IPS"``, ``"SNIPS"``, ``"DM"`` or ``"DR"``.
    value : float
        Point estimate of the policy's mean reward per round (NaN when undefined,
        e.g. SNIPS when the target gives no weight to any logged action).
    ci_low, ci_high : float
        Percentile bootstrap confidence interval.
    n : int
        Logged rounds used.
    effective_sample_size : float
        ``(Σ w)² / Σ w²`` of the (clipped) importance weights; ``n`` for DM.
    """

    name: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    effective_sample_size: float


# --------------------------------------------------------------------------- estimators


def estimate_ips(
    actions: ArrayLike,
    rewards: ArrayLike,
    propensities: ArrayLike,
    action_dist: ArrayLike,
    *,
    max_weight: float | None = None,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    random_state: int | np.random.Generator | None = 0,
) -> Estimate:
    """Inverse propensity scoring: ``mean(w_i r_i)``.

    Parameters
    ----------
    actions : array_like of int, shape (n,)
        Logged action indices in ``[0, n_actions)``.
    rewards : array_like of float, shape (n,)
        Logged rewards.
    propensities : array_like of float, shape (n,)
        Logging probability of each logged action, in ``(0, 1]``.
    action_dist : array_like of float, shape (n, n_actions)
        Target policy's action distribution per round; rows sum to 1.
    max_weight : float, optional
        Clip importance weights at this value (trades bias for variance).
    n_bootstrap : int
        Bootstrap resamples for the interval.
    level : float
        Confidence level of the interval, in (0, 1).
    random_state : int, numpy.random.Generator or None
        Seed of the bootstrap; the same int gives the same resamples to every
        estimator over the same rounds.

    Returns
    -------
    Estimate

    Raises
    ------
    InputError
        Naming the field, on any malformed input.
    """
    logged = _logged(actions, rewards, propensities, action_dist)
    _check_bootstrap(n_bootstrap, level)
    weights = _weights(logged, max_weight)
    terms = weights * logged.rewards
    return _estimate("IPS", terms, None, weights, n_bootstrap, level, random_state)


def estimate_snips(
    actions: ArrayLike,
    rewards: ArrayLike,
    propensities: ArrayLike,
    action_dist: ArrayLike,
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    random_state: int | np.random.Generator | None = 0,
) -> Estimate:
    """Self-normalised IPS: ``Σ w_i r_i / Σ w_i`` (no clipping; it normalises instead).

    Undefined (NaN) when the target gives probability zero to every logged action;
    bootstrap resamples where that happens are left out of the interval.

    Parameters
    ----------
    actions, rewards, propensities, action_dist
        As in :func:`estimate_ips`.
    n_bootstrap, level, random_state
        As in :func:`estimate_ips`.

    Returns
    -------
    Estimate
    """
    logged = _logged(actions, rewards, propensities, action_dist)
    _check_bootstrap(n_bootstrap, level)
    weights = _weights(logged, None)
    terms = weights * logged.rewards
    return _estimate("SNIPS", terms, weights, weights, n_bootstrap, level, random_state)


def estimate_dm(
    action_dist: ArrayLike,
    reward_model: ArrayLike,
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    random_state: int | np.random.Generator | None = 0,
) -> Estimate:
    """Direct method: ``mean(Σ_a π(a|x_i) q̂(x_i, a))``.

    Uses no logged reward, so it is only as good as the reward model; its interval
    holds the model fixed (context sampling noise only).

    Parameters
    ----------
    action_dist : array_like of float, shape (n, n_actions)
        Target policy's action distribution per round; rows sum to 1.
    reward_model : array_like of float, shape (n, n_actions)
        Predicted reward of every action in every logged context.
    n_bootstrap, level, random_state
        As in :func:`estimate_ips`.

    Returns
    -------
    Estimate
    """
    dist = _action_dist(action_dist)
    model = _reward_model(reward_model, dist.shape)
    _check_bootstrap(n_bootstrap, level)
    terms = np.einsum("ij,ij->i", dist, model)
    return _estimate("DM", terms, None, None, n_bootstrap, level, random_state)


def estimate_dr(
    actions: ArrayLike,
    rewards: ArrayLike,
    propensities: ArrayLike,
    action_dist: ArrayLike,
    reward_model: ArrayLike,
    *,
    max_weight: float | None = None,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    random_state: int | np.random.Generator | None = 0,
) -> Estimate:
    """Doubly robust: DM plus the importance-weighted residual of the logged reward.

    ``mean(Σ_a π(a|x_i) q̂(x_i, a) + w_i (r_i − q̂(x_i, a_i)))`` — unbiased when either
    the propensities or the reward model are right, and low-variance when the reward
    model is good.

    Parameters
    ----------
    actions, rewards, propensities, action_dist
        As in :func:`estimate_ips`.
    reward_model : array_like of float, shape (n, n_actions)
        Predicted reward of every action in every logged context.
    max_weight, n_bootstrap, level, random_state
        As in :func:`estimate_ips`.

    Returns
    -------
    Estimate
    """
    logged = _logged(actions, rewards, propensities, action_dist)
    model = _reward_model(reward_model, logged.action_dist.shape)
    _check_bootstrap(n_bootstrap, level)
    weights = _weights(logged, max_weight)
    rows = np.arange(logged.n)
    direct = np.einsum("ij,ij->i", logged.action_dist, model)
    terms = direct + weights * (logged.rewards - model[rows, logged.actions])
    return _estimate("DR", terms, None, weights, n_bootstrap, level, random_state)


def evaluate_policy(
    actions: ArrayLike,
    rewards: ArrayLike,
    propensities: ArrayLike,
    action_dist: ArrayLike,
    reward_model: ArrayLike | None = None,
    *,
    max_weight: float | None = None,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    random_state: int | np.random.Generator | None = 0,
) -> dict[str, Estimate]:
    """Every applicable estimator of the target policy's value on one log.

    Parameters
    ----------
    actions, rewards, propensities, action_dist
        As in :func:`estimate_ips`.
    reward_model : array_like of float, shape (n, n_actions), optional
        Predicted rewards; with it DM and DR are added.
    max_weight : float, optional
        Weight clipping for IPS and DR.
    n_bootstrap, level, random_state
        As in :func:`estimate_ips`; an int seed gives every estimator the same
        resamples, so their intervals are paired.

    Returns
    -------
    dict of str to Estimate
        Keyed ``"IPS"``, ``"SNIPS"`` and, with a reward model, ``"DM"``, ``"DR"``.
    """
    logged = _logged(actions, rewards, propensities, action_dist)
    model = None if reward_model is None else _reward_model(reward_model, logged.action_dist.shape)
    _check_bootstrap(n_bootstrap, level)
    a, r, p, dist = logged.actions, logged.rewards, logged.propensities, logged.action_dist
    out = {
        "IPS": estimate_ips(
            a,
            r,
            p,
            dist,
            max_weight=max_weight,
            n_bootstrap=n_bootstrap,
            level=level,
            random_state=random_state,
        ),
        "SNIPS": estimate_snips(
            a, r, p, dist, n_bootstrap=n_bootstrap, level=level, random_state=random_state
        ),
    }
    if model is not None:
        out["DM"] = estimate_dm(
            dist, model, n_bootstrap=n_bootstrap, level=level, random_state=random_state
        )
        out["DR"] = estimate_dr(
            a,
            r,
            p,
            dist,
            model,
            max_weight=max_weight,
            n_bootstrap=n_bootstrap,
            level=level,
            random_state=random_state,
        )
    return out


# ------------------------------------------------------------------------ promotion gate


def beats(candidate: Estimate, comparators: Mapping[str, Estimate | float]) -> tuple[bool, str]:
    """The promotion gate: the candidate's lower bound must exceed every comparator.

    Parameters
    ----------
    candidate : Estimate
        The candidate policy's estimate.
    comparators : mapping of str to Estimate or float
        E.g. the champion and each constant single-variant policy; an ``Estimate``
        is compared by its point ``value``.

    Returns
    -------
    passed : bool
        True only if ``candidate.ci_low`` is strictly above every comparator's value.
    reason : str
        Which comparators blocked and the numbers, or what was beaten.

    Raises
    ------
    InputError
        When ``comparators`` is empty (a gate with nothing to beat passes nothing).
    """
    if not comparators:
        raise InputError("comparators", {}, "at least one comparator is needed")
    values = {
        name: float(other.value if isinstance(other, Estimate) else other)
        for name, other in comparators.items()
    }
    shown = (
        f"{candidate.name} {candidate.value:.6g} [{candidate.ci_low:.6g}, {candidate.ci_high:.6g}]"
    )
    if math.isnan(candidate.ci_low):
        return False, f"{shown}: the lower bound is undefined"
    # ``not >`` also blocks on a NaN comparator: it cannot be shown to be beaten.
    blocking = {name: v for name, v in values.items() if not candidate.ci_low > v}
    if blocking:
        listed = ", ".join(f"{name} ({v:.6g})" for name, v in blocking.items())
        return False, (
            f"{shown}: lower bound {candidate.ci_low:.6g} does not exceed {listed}; "
            f"blocked by {len(blocking)} of {len(values)} comparator(s)"
        )
    listed = ", ".join(f"{name} ({v:.6g})" for name, v in values.items())
    return True, f"{shown}: lower bound {candidate.ci_low:.6g} exceeds {listed}"


# ------------------------------------------------------------------------ target policies


def deterministic_policy(chosen: ArrayLike, n_actions: int) -> FloatArray:
    """One-hot action distribution of a policy that picks ``chosen[i]`` in round ``i``.

    Parameters
    ----------
    chosen : array_like of int, shape (n,)
        Action picked per round, in ``[0, n_actions)``.
    n_actions : int
        Number of candidate actions.

    Returns
    -------
    ndarray of float64, shape (n, n_actions)
    """
    n_actions = _n_actions(n_actions)
    picks = _actions(chosen, n_actions, field="chosen")
    dist = np.zeros((picks.shape[0], n_actions))
    dist[np.arange(picks.shape[0]), picks] = 1.0
    return dist


def uniform_policy(n_rounds: int, n_actions: int) -> FloatArray:
    """Every action with probability ``1 / n_actions`` in every round.

    Returns
    -------
    ndarray of float64, shape (n_rounds, n_actions)
    """
    if isinstance(n_rounds, bool) or not isinstance(n_rounds, int | np.integer) or n_rounds < 0:
        raise InputError("n_rounds", n_rounds, "must be an integer >= 0")
    n_actions = _n_actions(n_actions)
    return np.full((int(n_rounds), n_actions), 1.0 / n_actions)


# ------------------------------------------------------------------------------ internals


@dataclass(frozen=True)
class _Logged:
    actions: IntArray
    rewards: FloatArray
    propensities: FloatArray
    action_dist: FloatArray

    @property
    def n(self) -> int:
        return int(self.actions.shape[0])


def _logged(
    actions: ArrayLike, rewards: ArrayLike, propensities: ArrayLike, action_dist: ArrayLike
) -> _Logged:
    dist = _action_dist(action_dist)
    n, n_actions = dist.shape
    acts = _actions(actions, n_actions, field="actions", n=n)
    rew = _vector(rewards, "rewards", n)
    if not np.isfinite(rew).all():
        bad = ~np.isfinite(rew)
        raise InputError("rewards", rew[bad][:5].tolist(), f"{bad.sum()} of {n} are not finite")
    prop = _vector(propensities, "propensities", n)
    bad = ~((prop > 0) & (prop <= 1))  # NaN fails too
    if bad.any():
        raise InputError(
            "propensities",
            prop[bad][:5].tolist(),
            f"{int(bad.sum())} of {n} are outside (0, 1]",
        )
    return _Logged(acts, rew, prop, dist)


def _vector(values: ArrayLike, field: str, n: int) -> FloatArray:
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(field, type(values).__name__, "expected numbers") from error
    if out.ndim != 1 or out.shape[0] != n:
        raise InputError(field, out.shape, f"expected shape ({n},), one value per round")
    return out


def _actions(values: ArrayLike, n_actions: int, *, field: str, n: int | None = None) -> IntArray:
    raw = np.asarray(values)
    if raw.ndim != 1 or (n is not None and raw.shape[0] != n):
        expected = f"({n},), one per round" if n is not None else "(n,)"
        raise InputError(field, raw.shape, f"expected shape {expected}")
    if raw.size and not np.issubdtype(raw.dtype, np.integer):
        raise InputError(field, str(raw.dtype), "expected integer action indices")
    out = raw.astype(np.int64, copy=False)
    bad = (out < 0) | (out >= n_actions)
    if bad.any():
        raise InputError(field, out[bad][:5].tolist(), f"{int(bad.sum())} outside [0, {n_actions})")
    return out


def _action_dist(values: ArrayLike) -> FloatArray:
    try:
        dist = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError("action_dist", type(values).__name__, "expected numbers") from error
    if dist.ndim != 2 or dist.shape[1] == 0:
        raise InputError("action_dist", dist.shape, "expected shape (n_rounds, n_actions)")
    if dist.shape[0] == 0:
        raise InputError("action_dist", dist.shape, "no rounds to evaluate")
    bad = ~np.isfinite(dist) | (dist < 0)
    if bad.any():
        rows = int(bad.any(axis=1).sum())
        raise InputError(
            "action_dist", dist[bad][:5].tolist(), f"{rows} rows hold negative or non-finite values"
        )
    sums = dist.sum(axis=1)
    off = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if off.any():
        raise InputError(
            "action_dist",
            sums[off][:5].tolist(),
            f"{int(off.sum())} of {dist.shape[0]} rows do not sum to 1 (row sums shown)",
        )
    return dist


def _reward_model(values: ArrayLike, shape: tuple[int, ...]) -> FloatArray:
    try:
        model = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError("reward_model", type(values).__name__, "expected numbers") from error
    if model.shape != shape:
        raise InputError("reward_model", model.shape, f"expected shape {shape}, as action_dist")
    if not np.isfinite(model).all():
        bad = int((~np.isfinite(model)).sum())
        raise InputError("reward_model", bad, f"{bad} predictions are not finite")
    return model


def _n_actions(n_actions: int) -> int:
    if isinstance(n_actions, bool) or not isinstance(n_actions, int | np.integer) or n_actions < 1:
        raise InputError("n_actions", n_actions, "must be an integer >= 1")
    return int(n_actions)


def _check_bootstrap(n_bootstrap: int, level: float) -> None:
    if (
        isinstance(n_bootstrap, bool)
        or not isinstance(n_bootstrap, int | np.integer)
        or n_bootstrap < 1
    ):
        raise InputError("n_bootstrap", n_bootstrap, "must be an integer >= 1")
    if not 0.0 < level < 1.0:
        raise InputError("level", level, "must be in (0, 1)")


def _weights(logged: _Logged, max_weight: float | None) -> FloatArray:
    target = logged.action_dist[np.arange(logged.n), logged.actions]
    weights = target / logged.propensities
    if max_weight is not None:
        if not max_weight > 0:
            raise InputError("max_weight", max_weight, "must be > 0")
        weights = np.minimum(weights, max_weight)
    return weights


def _estimate(
    name: str,
    terms: FloatArray,
    denominators: FloatArray | None,
    weights: FloatArray | None,
    n_bootstrap: int,
    level: float,
    random_state: int | np.random.Generator | None,
) -> Estimate:
    """Point value ``Σ terms / Σ denominators`` (a mean when there are none) and its
    percentile bootstrap interval."""
    n = int(terms.shape[0])
    value = _ratio(terms.sum(), n if denominators is None else denominators.sum())
    low, high = _bootstrap_interval(terms, denominators, n_bootstrap, level, random_state)
    if weights is None:
        ess = float(n)
    else:
        square = float(np.square(weights).sum())
        ess = float(weights.sum()) ** 2 / square if square > 0 else 0.0
    return Estimate(name, value, low, high, n, ess)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator != 0 else math.nan


def _bootstrap_interval(
    terms: FloatArray,
    denominators: FloatArray | None,
    n_bootstrap: int,
    level: float,
    random_state: int | np.random.Generator | None,
) -> tuple[float, float]:
    rng = np.random.default_rng(random_state)
    n = int(terms.shape[0])
    chunk = max(1, BOOTSTRAP_CHUNK_CELLS // n)
    stats = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        index = rng.integers(0, n, size=(stop - start, n))
        numerator = terms[index].sum(axis=1)
        if denominators is None:
            stats[start:stop] = numerator / n
        else:
            denominator = denominators[index].sum(axis=1)
            safe = np.where(denominator != 0, denominator, 1.0)
            stats[start:stop] = np.where(denominator != 0, numerator / safe, np.nan)
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [tail, 1.0 - tail])
    return float(low), float(high)
