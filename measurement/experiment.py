"""One experiment read from the decisions joined to their outcomes: arms, rates, tests.

An experiment is the decisions of a period split into arms by one column of the
join (``measurement.outcomes``): the content chosen for a slot (campaign variants),
the model version that served (champion against challenger), the served policy
(personalised against the holdout), or the segment of the recipient. Per arm:
recipients (decisions), open, click and conversion rates with Wilson intervals, and
revenue per recipient with its interval. Each arm is compared with the control arm:
the difference in each rate (Newcombe interval, pooled z-test), in revenue per
recipient (Welch, or a bootstrap), χ² across all arms per rate, the minimum
detectable effect of the primary rate at the arms' sizes, the power to detect a
given relative lift, and always-valid p-values over the looks (one a day by
default) for whoever reads the test before it ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from features.errors import InputError
from measurement.planning import minimum_detectable_effect, power_rates
from measurement.sequential import DEFAULT_MIXTURE_VARIANCE, always_valid_p_values
from measurement.stats import (
    ChiSquare,
    MeanComparison,
    RateComparison,
    RateInterval,
    compare_means,
    compare_rates,
    rate_interval,
    rates_chi_square,
)

#: What an experiment's arms can be: a column of the decisions ⋈ outcomes table.
ARM_COLUMNS = {
    "variant": "content_id",
    "version": "model_version",
    "policy": "policy",
    "segment": "segment",
}
#: The rates of an arm, by the name a report shows: (table column, label).
RATES = {"open": "opened", "click": "clicked", "conversion": "converted"}
NO_VALUE = "(none)"
#: An arm with fewer recipients has no spread to test: it is shown, not compared.
MIN_RECIPIENTS = 2


@dataclass(frozen=True)
class Arm:
    """One arm: its size, its rates and its revenue per recipient."""

    name: str
    recipients: int
    customers: int
    successes: dict[str, int]
    rates: dict[str, RateInterval]
    revenue_per_recipient: float
    revenue_interval: tuple[float, float]


@dataclass(frozen=True)
class Comparison:
    """One arm against the control: each rate, revenue, power and the sequential test."""

    arm: str
    control: str
    rates: dict[str, RateComparison]
    revenue: MeanComparison
    minimum_detectable_effect: float
    power: float
    always_valid_p: float


@dataclass(frozen=True)
class Experiment:
    """An experiment's arms and its comparisons with the control arm.

    Attributes
    ----------
    by : str
        What the arms are (``variant``, ``version``, ``policy``, ``segment``).
    control : str
        The arm the others are compared with.
    primary : str
        The rate the power, the minimum detectable effect and the sequential test
        are about (``click`` by default).
    looks : pandas.DataFrame
        ``look`` (end of each look, UTC), ``arm``, cumulative ``recipients`` and
        ``successes`` of the primary rate, and ``always_valid_p`` against the control
        (1 for the control itself).
    left_out : int
        Recipients in no arm (for segments: in both segments, or in neither).
    """

    by: str
    control: str
    primary: str
    level: float
    lift: float
    arms: list[Arm]
    comparisons: list[Comparison]
    chi_square: dict[str, ChiSquare]
    looks: pd.DataFrame = field(repr=False)
    mixture_variance: float = DEFAULT_MIXTURE_VARIANCE
    left_out: int = 0

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)

    def summary(self) -> dict[str, Any]:
        """Flat figures for a tracking run: per arm and per comparison."""
        out: dict[str, Any] = {}
        for arm in self.arms:
            out[f"{arm.name}.recipients"] = arm.recipients
            for rate, interval in arm.rates.items():
                out[f"{arm.name}.{rate}_rate"] = interval.rate
            out[f"{arm.name}.revenue_per_recipient"] = arm.revenue_per_recipient
        for c in self.comparisons:
            for rate, compared in c.rates.items():
                out[f"{c.arm}.{rate}_difference"] = compared.difference
                out[f"{c.arm}.{rate}_p_value"] = compared.p_value
            out[f"{c.arm}.revenue_difference"] = c.revenue.difference
            out[f"{c.arm}.revenue_p_value"] = c.revenue.p_value
            out[f"{c.arm}.always_valid_p"] = c.always_valid_p
            out[f"{c.arm}.mde"] = c.minimum_detectable_effect
            out[f"{c.arm}.power"] = c.power
        return out


def analyse(
    table: pd.DataFrame,
    *,
    by: Literal["variant", "version", "policy", "segment"],
    control: str | None = None,
    primary: Literal["open", "click", "conversion"] = "click",
    level: float = 0.95,
    lift: float = 0.1,
    revenue_method: Literal["welch", "bootstrap"] = "welch",
    look_every: str = "1D",
    mixture_variance: float | None = None,
    seed: int = 0,
) -> Experiment:
    """Read an experiment from the decisions ⋈ outcomes table.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`measurement.outcomes.decision_outcomes` (already narrowed to the
        experiment: a slot, a campaign, a period); for ``by="segment"`` a ``segment``
        column naming each recipient's arm.
    by : str
        What the arms are: ``variant`` (the content chosen), ``version`` (the model
        version that served), ``policy`` (model, rule, fallback, consent, holdout) or
        ``segment``.
    control : str, optional
        The arm the others are compared with. Default: ``holdout`` when the arms are
        policies and it is one of them, else the arm with the most recipients.
    primary : str
        The rate the power, the minimum detectable effect and the sequential test are
        about.
    level : float
        Confidence level of every interval; the tests' significance is ``1 − level``.
    lift : float
        The relative lift of the primary rate over the control's whose power is
        reported (0.1: a tenth more).
    revenue_method : str
        ``welch`` or ``bootstrap`` for revenue per recipient.
    look_every : str
        A pandas frequency: the sequential test looks at the end of each period.
    mixture_variance : float, optional
        τ² of the always-valid p-values (see :mod:`measurement.sequential`): best
        near the square of the effect the test is meant to find. Default: the square
        of the minimum detectable effect of the primary rate at the arms' final sizes
        (a size set by the sends, not by the outcomes) and the control's rate; pass
        ``MDE(planned size)²`` when the planned size is known.
    seed : int
        Of the bootstrap.
    """
    if by not in ARM_COLUMNS:
        raise InputError("by", by, f"expected one of {sorted(ARM_COLUMNS)}")
    if primary not in RATES:
        raise InputError("primary", primary, f"expected one of {sorted(RATES)}")
    if not 0 < lift:
        raise InputError("lift", lift, "must be a positive relative lift (0.1: a tenth more)")
    column = ARM_COLUMNS[by]
    if column not in table.columns:
        raise InputError("by", by, f"the decisions carry no {column!r} column")
    frame = table.assign(_arm=table[column].astype(object).where(table[column].notna(), NO_VALUE))
    frame["_arm"] = frame["_arm"].astype(str)
    names = sorted(frame["_arm"].unique())
    if len(names) < 2:
        raise InputError(
            "by",
            by,
            f"an experiment needs at least two arms; the decisions have {names or 'none'} "
            "(widen the period, or compare by another column)",
        )
    sizes = frame["_arm"].value_counts()
    if control is None:
        control = "holdout" if by == "policy" and "holdout" in names else str(sizes.idxmax())
    if control not in names:
        raise InputError("control", control, f"not an arm; the arms are {names}")
    if sizes[control] < MIN_RECIPIENTS:
        raise InputError(
            "control", control, f"has {sizes[control]} recipient(s): too few to compare with"
        )
    arms = [_arm(name, frame[frame["_arm"] == name], level) for name in names]
    by_name = {arm.name: arm for arm in arms}
    chi = {
        rate: rates_chi_square(
            [arm.successes[rate] for arm in arms], [arm.recipients for arm in arms]
        )
        for rate in RATES
    }
    base = by_name[control]
    if mixture_variance is None:
        smallest = min(arm.recipients for arm in arms if arm.recipients >= MIN_RECIPIENTS)
        mde = _mde(base.rates[primary].rate, smallest, 1 - level)
        mixture_variance = mde**2 if np.isfinite(mde) else DEFAULT_MIXTURE_VARIANCE
    elif not mixture_variance > 0:
        raise InputError("mixture_variance", mixture_variance, "must be positive")
    looks = _looks(frame, control, RATES[primary], look_every, mixture_variance)
    comparisons = []
    for arm in arms:
        if arm.name == control or arm.recipients < MIN_RECIPIENTS:
            continue  # too small an arm is shown, not compared
        rates = {
            rate: compare_rates(
                base.successes[rate],
                base.recipients,
                arm.successes[rate],
                arm.recipients,
                level=level,
            )
            for rate in RATES
        }
        revenue = compare_means(
            frame.loc[frame["_arm"] == control, "revenue"].to_numpy(float),
            frame.loc[frame["_arm"] == arm.name, "revenue"].to_numpy(float),
            level=level,
            method=revenue_method,
            seed=seed,
        )
        n = min(base.recipients, arm.recipients)
        base_rate = base.rates[primary].rate
        comparisons.append(
            Comparison(
                arm=arm.name,
                control=control,
                rates=rates,
                revenue=revenue,
                minimum_detectable_effect=_mde(base_rate, n, 1 - level),
                power=_power(base_rate, lift, n, 1 - level),
                always_valid_p=float(looks.loc[looks["arm"] == arm.name, "always_valid_p"].min()),
            )
        )
    return Experiment(
        by=by,
        control=control,
        primary=primary,
        level=level,
        lift=lift,
        arms=arms,
        comparisons=comparisons,
        chi_square=chi,
        looks=looks,
        mixture_variance=mixture_variance,
    )


def segment_arms(
    table: pd.DataFrame, segments: pd.DataFrame, names: tuple[str, str]
) -> tuple[pd.DataFrame, int]:
    """``table`` with a ``segment`` column: each recipient's arm of two segment
    definitions (``segments``: ``customer_id, segment`` memberships). Recipients in
    both or in neither are left out; their count is returned beside."""
    if len(set(names)) != 2:
        raise InputError("segments", names, "name two different segments")
    known = set(segments["segment"])
    for name in names:
        if name not in known:
            raise InputError("segments", name, f"no customer is in it; segments: {sorted(known)}")
    members = [set(segments.loc[segments["segment"] == name, "customer_id"]) for name in names]
    in_a = table["customer_id"].isin(members[0])
    in_b = table["customer_id"].isin(members[1])
    arm = pd.Series(None, index=table.index, dtype=object)
    arm[in_a & ~in_b] = names[0]
    arm[in_b & ~in_a] = names[1]
    kept = arm.notna()
    return table[kept].assign(segment=arm[kept]), int((~kept).sum())


def _arm(name: str, rows: pd.DataFrame, level: float) -> Arm:
    n = len(rows)
    successes = {rate: int(rows[column].sum()) for rate, column in RATES.items()}
    revenue = rows["revenue"].to_numpy(float)
    mean = float(revenue.mean())
    low, high = mean, mean  # one recipient, or all alike: no spread to speak of
    if n > 1 and revenue.std(ddof=1) > 0:
        low, high = (float(v) for v in stats.t.interval(level, n - 1, mean, stats.sem(revenue)))
    return Arm(
        name=name,
        recipients=n,
        customers=int(rows["customer_id"].nunique()),
        successes=successes,
        rates={rate: rate_interval(k, n, level) for rate, k in successes.items()},
        revenue_per_recipient=mean,
        revenue_interval=(low, high),
    )


def _mde(base_rate: float, n: int, alpha: float) -> float:
    if not 0 < base_rate < 1:
        return float("inf")  # nothing varies yet: no difference is detectable
    return minimum_detectable_effect(base_rate, n, alpha=alpha)


def _power(base_rate: float, lift: float, n: int, alpha: float) -> float:
    effect = base_rate * lift
    if not 0 < base_rate < 1 or base_rate + effect >= 1:
        return 0.0
    return power_rates(base_rate, effect, n, alpha=alpha)


def _looks(
    frame: pd.DataFrame, control: str, column: str, every: str, mixture_variance: float
) -> pd.DataFrame:
    """Cumulative counts of each arm at the end of each look, and the always-valid p."""
    try:
        period = pd.tseries.frequencies.to_offset(every)
    except ValueError:
        raise InputError("look_every", every, "not a pandas frequency (e.g. 1D, 12h)") from None
    ends = frame["ts"].dt.floor(period) + period
    counts = (
        frame.assign(_look=ends)
        .groupby(["_arm", "_look"])[column]
        .agg(["size", "sum"])
        .unstack("_arm", fill_value=0)
        .sort_index()
        .cumsum()
    )
    rows = []
    control_n = counts["size"][control].to_numpy(np.int64)
    control_k = counts["sum"][control].to_numpy(np.int64)
    for arm in counts["size"].columns:
        n = counts["size"][arm].to_numpy(np.int64)
        k = counts["sum"][arm].to_numpy(np.int64)
        if arm == control:
            p = np.ones(len(n))
        else:
            # A look before both arms have a recipient carries no information.
            ready = (n > 0) & (control_n > 0)
            p = np.ones(len(n))
            if ready.any():
                p[ready] = always_valid_p_values(
                    control_k[ready],
                    control_n[ready],
                    k[ready],
                    n[ready],
                    mixture_variance=mixture_variance,
                )
        rows.append(
            pd.DataFrame(
                {
                    "look": counts.index,
                    "arm": arm,
                    "recipients": n,
                    "successes": k,
                    "always_valid_p": p,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)
