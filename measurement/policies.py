"""What each served policy earned, and what personalisation itself adds.

Three readings of the decisions ⋈ outcomes table (``measurement.outcomes``):

* :func:`served_rates` — each served policy (model, rule, fallback, consent, holdout)
  and model version: the rate of a reward over the decisions it made, with its
  Wilson interval. It describes the customers each policy served, who differ (rules
  and consent choose them), so the rates are not compared with one another.
* :func:`incrementality` — the global holdout (a stable hash of the customer, drawn
  before anything else is decided) against everyone else: the randomised comparison
  that says what personalisation adds, with its interval.
* :func:`off_policy` — for content choices with logged candidates and propensities,
  the value of policies that were not (or not always) served, estimated from the log
  with the project's off-policy estimators (``training.ope``): the logged policy
  itself, the greedy champion (each decision's top-scored candidate), uniform
  exploration and every "always this content" policy.

The first two count sends, not decisions: the decisions of one e-mail (its subject
line, its offer) share one outcome, so each send is one trial (:func:`one_per_send`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.errors import InputError
from measurement.stats import RateComparison, compare_rates, rate_interval
from training.ope import deterministic_policy, evaluate_policy

REWARDS = {"open": "opened", "click": "clicked", "conversion": "converted"}


def served_rates(
    table: pd.DataFrame, *, reward: str = "click", level: float = 0.95
) -> pd.DataFrame:
    """Per served policy and model version: decisions, sends, the reward's rate and
    interval (over the sends: see :func:`one_per_send`)."""
    column = _reward(reward)
    rows = []
    keys = table["model_version"].fillna("–")
    for (policy, version), group in table.groupby([table["policy"], keys], sort=True):
        sends = one_per_send(group)
        interval = rate_interval(int(sends[column].sum()), len(sends), level)
        rows.append(
            {
                "policy": policy,
                "model_version": version,
                "decisions": len(group),
                "sends": len(sends),
                f"{reward}_rate": interval.rate,
                "ci_low": interval.ci_low,
                "ci_high": interval.ci_high,
            }
        )
    return pd.DataFrame(rows)


def incrementality(
    table: pd.DataFrame, *, reward: str = "click", level: float = 0.95
) -> RateComparison:
    """Everyone but the holdout (b) against the holdout (a): personalisation's lift,
    each arm counted in sends (see :func:`one_per_send`).

    Raises
    ------
    InputError
        When the decisions hold no holdout (``serving.holdout_share`` is 0) or nothing
        but the holdout.
    """
    column = _reward(reward)
    held = table["policy"].eq("holdout")
    if not held.any():
        raise InputError(
            "holdout",
            0,
            "no decision of the holdout: set serving.holdout_share (e.g. 0.05) to measure "
            "what personalisation adds",
        )
    if held.all():
        raise InputError("holdout", int(held.sum()), "every decision is of the holdout")
    control, treated = one_per_send(table[held]), one_per_send(table[~held])
    return compare_rates(
        int(control[column].sum()),
        len(control),
        int(treated[column].sum()),
        len(treated),
        level=level,
    )


def one_per_send(table: pd.DataFrame) -> pd.DataFrame:
    """The first decision of each send of ``table``.

    The decisions of one e-mail (a customer and a campaign: its subject line, its offer,
    its recommendations) share the send's outcomes (``measurement.outcomes``); counted
    each, one recipient's click would count as several independent trials and every
    interval would be too narrow (by about √2 for two decisions a send). A decision
    outside a campaign, or a table without ``customer_id`` and ``campaign_id``, is a
    send of its own.
    """
    if not {"customer_id", "campaign_id"} <= set(table.columns):
        return table
    campaign = table["campaign_id"]
    own = pd.Series(np.arange(len(table)), index=table.index).astype(str)
    key = (table["customer_id"].astype(str) + "\x1f" + campaign.astype(str)).where(
        campaign.notna(), "\x1e" + own
    )
    return table[~key.duplicated().to_numpy()]


def off_policy(
    table: pd.DataFrame,
    *,
    reward: str = "click",
    level: float = 0.95,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> pd.DataFrame:
    """Off-policy estimates from the content choices that logged their candidates.

    ``table`` needs ``candidates`` (``[content_id, score, probability]`` per candidate,
    as the service logs them), ``content_id`` and ``propensity``; the decisions of one
    slot. Returns one row per target policy and estimator (IPS, SNIPS): ``policy``,
    ``estimator``, ``value``, ``ci_low``, ``ci_high``, ``effective_sample_size``,
    ``decisions``.
    """
    column = _reward(reward)
    rows = table[table["candidates"].map(_usable) & table["propensity"].gt(0)]
    if rows.empty:
        raise InputError(
            "candidates",
            0,
            "no content choice logged its candidates with probabilities: nothing to "
            "estimate off-policy",
        )
    if rows["slot"].nunique() > 1:
        raise InputError("slot", sorted(rows["slot"].unique()), "estimate one slot at a time")
    actions = sorted({c[0] for cands in rows["candidates"] for c in cands})
    index = {content: i for i, content in enumerate(actions)}
    mapped = rows["content_id"].map(index)
    keep = mapped.notna().to_numpy()
    rows = rows[keep]
    chosen = mapped[keep].astype(int).to_numpy()
    rewards = rows[column].to_numpy(float)
    propensities = rows["propensity"].to_numpy(float)
    logged = np.zeros((len(rows), len(actions)))
    greedy = np.zeros(len(rows), dtype=int)
    eligible = np.zeros((len(rows), len(actions)), dtype=bool)
    for i, cands in enumerate(rows["candidates"]):
        scores = {c[0]: (float(c[1]) if c[1] is not None else -np.inf) for c in cands}
        for content, _, probability in cands:
            logged[i, index[content]] = float(probability)
            eligible[i, index[content]] = True
        greedy[i] = index[max(sorted(scores), key=lambda k: scores[k])]
    logged /= logged.sum(axis=1, keepdims=True)
    uniform = eligible / eligible.sum(axis=1, keepdims=True)
    targets: dict[str, Any] = {
        "logged (as served)": logged,
        "greedy champion": deterministic_policy(greedy, len(actions)),
        "uniform": uniform,
    }
    for content, i in index.items():
        if eligible[:, i].all():
            targets[f"always {content}"] = deterministic_policy(np.full(len(rows), i), len(actions))
    out = []
    for name, dist in targets.items():
        for estimator, estimate in evaluate_policy(
            chosen,
            rewards,
            propensities,
            dist,
            n_bootstrap=n_bootstrap,
            level=level,
            random_state=seed,
        ).items():
            out.append(
                {
                    "policy": name,
                    "estimator": estimator,
                    "value": estimate.value,
                    "ci_low": estimate.ci_low,
                    "ci_high": estimate.ci_high,
                    "effective_sample_size": estimate.effective_sample_size,
                    "decisions": estimate.n,
                }
            )
    return pd.DataFrame(out)


def _usable(candidates: Any) -> bool:
    return (
        isinstance(candidates, list)
        and len(candidates) > 0
        and all(isinstance(c, list) and len(c) == 3 and c[2] is not None for c in candidates)
    )


def _reward(reward: str) -> str:
    if reward not in REWARDS:
        raise InputError("reward", reward, f"expected one of {sorted(REWARDS)}")
    return REWARDS[reward]
