"""Selectors on the Open Bandit Dataset: how well off-policy estimates predict a policy.

    python -m bench.selectors

Data: the Open Bandit Dataset sample, read by :mod:`bench.open_bandit`. Each campaign
ran two behaviour policies at the same time: uniform random and Bernoulli Thompson
sampling (BTS). Each round shows one item in one of three positions.

The script prints its tables and records them in the ``Selectors (Open Bandit)`` section
of bench/RESULTS.md; the reading of those tables is static text in the section after it.

Part (a), this script: the estimators of ``training.ope``
---------------------------------------------------------
Evaluate the BTS policy *from the random log* with IPS, SNIPS, DM and DR, and compare
each estimate with the click rate BTS actually got in its own log (its on-policy value,
itself a 10,000-round sample, so it carries an interval too). Relative error is
``|estimate − BTS observed CTR| / BTS observed CTR``.

* Target policy: BTS is context-free, so (DESIGN.md) its action distribution at
  position ``k`` is estimated by the item frequencies at position ``k`` in the BTS log.
  BTS changed over the week (its logged propensities drift day to day), so this is the
  week's average BTS, the policy whose value the BTS log's overall CTR measures.
* Logging policy: the random log's propensities (``1 / n_items`` per position).
* Evaluated per position (the random log's ``position``, target = BTS at that
  position) and over all rounds.
* Reward model for DM / DR: per-(position, item) click rates shrunk towards the
  position's click rate, the prior strength chosen by beta-binomial marginal likelihood,
  cross-fitted over 5 folds (each round's prediction comes from a model that did not
  see it). With about 46 clicks per log it is weak, and DM's interval holds the model
  fixed, so DM's interval is too narrow by construction.
* Reference row: the random log's own mean click rate, i.e. no correction at all.

Part (b): the learned selector against the logging policies
-------------------------------------------------------------
The content selector's outcome model (``models.selector.OutcomeModel``, the LightGBM
model the email selectors use), adapted thinly to the dataset: the context of a round is
the user's four categorical features (one-hot) and the position; a candidate is one of
the campaign's items, described by its item features and the user's affinity to it; the
reward is the click. The learned policy shows, at the round's position, the item with
the highest predicted click rate (greedy).

* Cross-fitting over 2 folds of the random log's rounds: each round's choice comes from
  a model fitted on the other fold, so no round is evaluated by a model that saw it.
* Off-policy value of that policy on the random log with IPS, SNIPS, DM and DR (the
  same shrunk reward model as part (a)), 95 % bootstrap intervals.
* Comparators: each logging policy's observed click rate in its own log (random and
  BTS, with intervals) and the best single item per position, cross-fitted the same
  way (per fold and position, the item with the highest DR value on the other fold).
* The gate (``training.ope.beats``): the learned policy's DR lower bound must exceed
  every comparator's point value; otherwise the champion would be the best single item
  per position, and the run says why.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.special import betaln

from bench.open_bandit import (
    CAMPAIGNS,
    DATA,
    POSITIONS,
    USER_FEATURES,
    n_items,
    read_items,
    read_log,
)
from bench.results import record, table
from training.ope import Estimate, estimate_ips, evaluate_policy

SECTION = "Selectors (Open Bandit)"
ESTIMATORS = ("IPS", "SNIPS", "DM", "DR")
N_BOOTSTRAP = 2000
FOLDS = 5
SEED = 0
#: Prior strengths tried for the shrunk click rates (pseudo-rounds).
PRIOR_STRENGTHS = np.logspace(0, 6, 61)


@dataclass(frozen=True)
class Row:
    """One estimate against the BTS log's observed click rate."""

    campaign: str
    position: str
    estimate: Estimate
    truth: Estimate

    @property
    def relative_error(self) -> float:
        return abs(self.estimate.value - self.truth.value) / self.truth.value

    @property
    def covers(self) -> bool:
        return self.estimate.ci_low <= self.truth.value <= self.estimate.ci_high


def position_frequencies(log: pd.DataFrame, n_actions: int) -> np.ndarray:
    """(3, n_actions): share of each item among the rounds at each position."""
    counts = np.zeros((len(POSITIONS), n_actions))
    np.add.at(counts, (log["position"].to_numpy() - 1, log["item_id"].to_numpy()), 1.0)
    return counts / counts.sum(axis=1, keepdims=True)


def shrunk_click_rates(log: pd.DataFrame, n_actions: int) -> tuple[np.ndarray, float]:
    """(3, n_actions) click rate per (position, item), shrunk towards the position's rate,
    and the prior strength used.

    ``(clicks + m·μ_k) / (rounds + m)``, ``μ_k`` the position's click rate and ``m``
    (pseudo-rounds) maximising the beta-binomial marginal likelihood of the cells.
    """
    index = (log["position"].to_numpy() - 1, log["item_id"].to_numpy())
    rounds = np.zeros((len(POSITIONS), n_actions))
    clicks = np.zeros((len(POSITIONS), n_actions))
    np.add.at(rounds, index, 1.0)
    np.add.at(clicks, index, log["click"].to_numpy(dtype=float))
    mu = clicks.sum(axis=1, keepdims=True) / np.maximum(rounds.sum(axis=1, keepdims=True), 1.0)
    mu = np.clip(mu, 1e-6, 1 - 1e-6)
    m = PRIOR_STRENGTHS[:, None, None]
    alpha, beta = m * mu, m * (1 - mu)
    loglik = (betaln(clicks + alpha, rounds - clicks + beta) - betaln(alpha, beta)).sum(axis=(1, 2))
    strength = float(PRIOR_STRENGTHS[int(np.argmax(loglik))])
    return (clicks + strength * mu) / (rounds + strength), strength


def cross_fitted_reward_model(log: pd.DataFrame, n_actions: int) -> np.ndarray:
    """(n, n_actions) predicted click rate of every item at each round's position, each
    round predicted by the model fitted on the other folds."""
    fold = np.random.default_rng(SEED).permutation(len(log)) % FOLDS
    position = log["position"].to_numpy() - 1
    model = np.empty((len(log), n_actions))
    for k in range(FOLDS):
        rates, _ = shrunk_click_rates(log[fold != k], n_actions)
        held_out = fold == k
        model[held_out] = rates[position[held_out]]
    return model


def on_policy(clicks: np.ndarray) -> Estimate:
    """A policy's value in its own log: every weight is 1, so IPS is the mean click
    rate, with the same bootstrap interval as the estimators."""
    n = len(clicks)
    return estimate_ips(
        np.zeros(n, dtype=np.int64),
        clicks.astype(float),
        np.ones(n),
        np.ones((n, 1)),
        n_bootstrap=N_BOOTSTRAP,
        random_state=SEED,
    )


def evaluate_campaign(campaign: str) -> tuple[list[Row], dict[str, float]]:
    """Every estimator per position and overall, and a few facts about the logs."""
    random, bts = read_log("random", campaign), read_log("bts", campaign)
    n_actions = n_items(campaign)
    target_by_position = position_frequencies(bts, n_actions)
    position = random["position"].to_numpy()
    action_dist = target_by_position[position - 1]
    reward_model = cross_fitted_reward_model(random, n_actions)
    actions = random["item_id"].to_numpy()
    clicks = random["click"].to_numpy(dtype=float)
    propensities = random["propensity_score"].to_numpy(dtype=float)

    rows: list[Row] = []
    for label in [*(str(k) for k in POSITIONS), "all"]:
        here = np.ones(len(random), bool) if label == "all" else position == int(label)
        there = (
            np.ones(len(bts), bool) if label == "all" else bts["position"].to_numpy() == int(label)
        )
        truth = on_policy(bts["click"].to_numpy()[there])
        out = evaluate_policy(
            actions[here],
            clicks[here],
            propensities[here],
            action_dist[here],
            reward_model[here],
            n_bootstrap=N_BOOTSTRAP,
            random_state=SEED,
        )
        naive = replace(on_policy(clicks[here]), name="random log mean")
        rows += [Row(campaign, label, out[name], truth) for name in ESTIMATORS]
        rows.append(Row(campaign, label, naive, truth))

    cells = bts.groupby(["position", "item_id"])["propensity_score"].agg(["size", "mean"])
    cells["share"] = cells["size"] / cells.groupby(level="position")["size"].transform("sum")
    day = pd.to_datetime(bts["timestamp"]).dt.date
    daily = bts.assign(day=day).groupby(["position", "item_id", "day"])["propensity_score"]
    top = int(target_by_position[0].argmax())
    first_top = (position == 1) & (actions == top)
    inverse = (1.0 / bts["propensity_score"]).groupby([bts["position"], bts["item_id"]]).sum()
    per_position = bts.groupby("position").size()
    horvitz_thompson = inverse / per_position.reindex(inverse.index.get_level_values(0)).to_numpy()
    overall = next(r.truth for r in rows if r.position == "all")  # BTS's observed CTR
    facts = {
        "top1_share": float(target_by_position[0, top]),
        "top1_random_rounds": float(first_top.sum()),
        "top1_random_clicks": float(clicks[first_top].sum()),
        "horvitz_thompson_median": float(horvitz_thompson.median()),
        "min_propensity": float(bts["propensity_score"].min()),
        "prior_strength": shrunk_click_rates(random, n_actions)[1],
        "random_clicks": float(clicks.sum()),
        "bts_clicks": float(bts["click"].sum()),
        "mean_logged_over_share": float((cells["mean"] / cells["share"]).median()),
        "daily_propensity_range": float(
            (daily.mean().groupby(level=["position", "item_id"]).agg(np.ptp)).max()
        ),
        "ess_all": next(
            r.estimate.effective_sample_size
            for r in rows
            if r.position == "all" and r.estimate.name == "IPS"
        ),
        "rounds_per_cell": 10_000 / 3 / n_actions,
        "bts_ci_half_width": (overall.ci_high - overall.ci_low) / 2 / overall.value,
    }
    return rows, facts


SELECTOR_FOLDS = 2


@dataclass(frozen=True)
class SelectorResult:
    """Part (b) for one campaign: the learned policy's estimates and its comparators."""

    campaign: str
    learned: dict[str, Estimate]
    random_observed: Estimate
    bts_observed: Estimate
    best_single: Estimate
    best_items: tuple[int, ...]
    passed: bool
    reason: str
    distinct_choices: int


def item_table(campaign: str) -> pd.DataFrame:
    """Item features as numbers: ``item_feature_0`` as is, the hashed categories as codes."""
    items = read_items(campaign).set_index("item_id").sort_index()
    out = pd.DataFrame({"item_feature_0": items["item_feature_0"].astype(float)})
    for column in ("item_feature_1", "item_feature_2", "item_feature_3"):
        out[column] = pd.factorize(items[column], sort=True)[0].astype(float)
    return out


def context_table(log: pd.DataFrame) -> pd.DataFrame:
    """Per round: the user's categorical features one-hot and the position one-hot."""
    users = pd.get_dummies(log[list(USER_FEATURES)].astype(str), dtype=float)
    positions = pd.DataFrame(
        {f"position_{k}": (log["position"] == k).astype(float) for k in POSITIONS},
        index=log.index,
    )
    return pd.concat([users, positions], axis=1).reset_index(drop=True)


def selector_design(
    log: pd.DataFrame, context: pd.DataFrame, items: pd.DataFrame, shown: np.ndarray
) -> pd.DataFrame:
    """(n, features) customer × content design of round ``i`` with item ``shown[i]``:
    the round's context, the item's features and the user's affinity to that item."""
    affinity = log[[f"user-item_affinity_{j}" for j in range(len(items))]].to_numpy(float)
    rows = np.arange(len(log))
    return pd.concat(
        [
            context.reset_index(drop=True),
            items.iloc[shown].reset_index(drop=True),
            pd.DataFrame({"affinity": affinity[rows, shown]}),
        ],
        axis=1,
    )


def learned_choices(log: pd.DataFrame, n_actions: int, campaign: str) -> np.ndarray:
    """The greedy item of every round, each from a model fitted on the other fold."""
    from models.selector import OutcomeModel

    items = item_table(campaign)
    context = context_table(log)
    fold = np.random.default_rng(SEED).permutation(len(log)) % SELECTOR_FOLDS
    logged = selector_design(log, context, items, log["item_id"].to_numpy())
    clicks = log["click"].to_numpy(dtype=float)
    chosen = np.empty(len(log), dtype=np.int64)
    for k in range(SELECTOR_FOLDS):
        train, held = fold != k, np.flatnonzero(fold == k)
        model = OutcomeModel(random_state=SEED).fit(logged[train], clicks[train])
        sub = log.iloc[held]
        scores = np.column_stack(
            [
                model.predict(
                    selector_design(sub, context.iloc[held], items, np.full(len(held), j))
                )
                for j in range(n_actions)
            ]
        )
        chosen[held] = scores.argmax(axis=1)
    return chosen


def evaluate_selector(campaign: str) -> SelectorResult:
    """Part (b) for one campaign (see the module docstring)."""
    from training.ope import beats, deterministic_policy

    random, bts = read_log("random", campaign), read_log("bts", campaign)
    n_actions = n_items(campaign)
    actions = random["item_id"].to_numpy()
    clicks = random["click"].to_numpy(dtype=float)
    propensities = random["propensity_score"].to_numpy(dtype=float)
    position = random["position"].to_numpy()
    reward_model = cross_fitted_reward_model(random, n_actions)

    def estimate(chosen: np.ndarray) -> dict[str, Estimate]:
        return evaluate_policy(
            actions,
            clicks,
            propensities,
            deterministic_policy(chosen, n_actions),
            reward_model,
            n_bootstrap=N_BOOTSTRAP,
            random_state=SEED,
        )

    chosen = learned_choices(random, n_actions, campaign)
    learned = estimate(chosen)
    # Best single item per position, cross-fitted like the learned policy: on each
    # fold, per position, the item with the highest DR value on the other fold.
    fold = np.random.default_rng(SEED).permutation(len(random)) % SELECTOR_FOLDS
    single = np.empty(len(random), dtype=np.int64)
    for k in range(SELECTOR_FOLDS):
        for p in POSITIONS:
            train, held = (fold != k) & (position == p), (fold == k) & (position == p)
            values = [
                evaluate_policy(
                    actions[train],
                    clicks[train],
                    propensities[train],
                    deterministic_policy(np.full(int(train.sum()), j), n_actions),
                    reward_model[train],
                    n_bootstrap=1,
                    random_state=SEED,
                )["DR"].value
                for j in range(n_actions)
            ]
            single[held] = int(np.argmax(values))
    best_single = estimate(single)["DR"]
    # What the fallback would register: the best item per position on all rounds.
    best_items = [
        int(np.argmax(np.bincount(actions[(position == p) & (clicks > 0)], minlength=n_actions)))
        for p in POSITIONS
    ]
    random_observed = on_policy(clicks)
    bts_observed = on_policy(bts["click"].to_numpy())
    passed, reason = beats(
        learned["DR"],
        {
            "random logging policy": random_observed,
            "BTS logging policy": bts_observed,
            "best single item per position": best_single,
        },
    )
    return SelectorResult(
        campaign,
        learned,
        random_observed,
        bts_observed,
        best_single,
        tuple(best_items),
        passed,
        reason,
        int(len(np.unique(chosen))),
    )


def render_selector(results: list[SelectorResult]) -> str:
    """The Markdown table of part (b): every policy's click rate with its interval."""
    headers = ["campaign", "policy", "how", "CTR %", "CI low %", "CI high %"]
    body: list[list[object]] = []
    for r in results:
        for name in ESTIMATORS:
            e = r.learned[name]
            body.append(
                [r.campaign, "learned selector", name, pct(e.value), pct(e.ci_low), pct(e.ci_high)]
            )
        for policy, how, e in (
            ("best single item per position", "DR", r.best_single),
            ("random (logging)", "observed", r.random_observed),
            ("BTS (logging)", "observed", r.bts_observed),
        ):
            body.append([r.campaign, policy, how, pct(e.value), pct(e.ci_low), pct(e.ci_high)])
    return table(headers, body)


def pct(value: float) -> str:
    """A rate as a percentage with three decimals (0.0046 -> ``0.460``)."""
    return f"{100 * value:.3f}"


def render(rows: list[Row], positions: set[str]) -> str:
    """The Markdown table of the rows at the given positions (``"1"``… or ``"all"``)."""
    headers = [
        "campaign",
        "position",
        "estimator",
        "estimate %",
        "CI low %",
        "CI high %",
        "BTS observed CTR %",
        "relative error",
        "CI covers BTS",
        "ESS",
    ]
    body: list[list[object]] = []
    for row in rows:
        if row.position not in positions:
            continue
        e = row.estimate
        body.append(
            [
                row.campaign,
                row.position,
                e.name,
                pct(e.value),
                pct(e.ci_low),
                pct(e.ci_high),
                f"{pct(row.truth.value)} [{pct(row.truth.ci_low)}, {pct(row.truth.ci_high)}]",
                f"{row.relative_error:.3f}",
                "yes" if row.covers else "no",
                f"{e.effective_sample_size:,.0f}",
            ]
        )
    return table(headers, body)


def coverage_table(rows: list[Row]) -> str:
    """How many intervals cover BTS's observed CTR (per position and overall)."""
    groups = (("IPS / SNIPS / DR", {"IPS", "SNIPS", "DR"}), ("DM", {"DM"}))
    body: list[list[object]] = []
    for label, names in groups:
        chosen = [r for r in rows if r.estimate.name in names]
        body.append([label, sum(r.covers for r in chosen), len(chosen)])
    return table(["estimators", "intervals covering BTS observed CTR", "cases"], body)


def facts_table(facts: dict[str, dict[str, float]]) -> str:
    """Per campaign: the logs' clicks, the reward model's pooling and the BTS propensities."""
    body: list[list[object]] = [
        [label, *(cell(f) for f in facts.values())] for label, cell in FACT_LINES
    ]
    return table(["", *facts], body)


def gate_table(results: list[SelectorResult]) -> str:
    """The gate's verdict per campaign, and what the fallback would register."""
    headers = [
        "campaign",
        "gate",
        "reason",
        "fallback: most-clicked item at positions 1-3",
        "items",
        "distinct items chosen",
    ]
    body: list[list[object]] = [
        [
            r.campaign,
            "passes" if r.passed else "fails",
            r.reason,
            ", ".join(map(str, r.best_items)),
            n_items(r.campaign),
            r.distinct_choices,
        ]
        for r in results
    ]
    return table(headers, body)


def pooling_note(strength: float) -> str:
    """Say so when the prior strength is the largest tried (the cells are pooled)."""
    return " (the largest tried: complete pooling)" if strength >= PRIOR_STRENGTHS[-1] else ""


#: The lines of :func:`facts_table`: a label, and how one campaign's facts write it.
FACT_LINES: tuple[tuple[str, Callable[[dict[str, float]], str]], ...] = (
    ("clicks in the random log", lambda f: f"{f['random_clicks']:.0f}"),
    ("clicks in the BTS log", lambda f: f"{f['bts_clicks']:.0f}"),
    ("IPS effective sample size, all rounds (of 10,000)", lambda f: f"{f['ess_all']:,.0f}"),
    (
        "reward-model prior strength (pseudo-rounds)",
        lambda f: f"{f['prior_strength']:,.0f}{pooling_note(f['prior_strength'])}",
    ),
    ("rounds per (position, item) cell, about", lambda f: f"{f['rounds_per_cell']:.0f}"),
    (
        "BTS observed CTR interval, all positions",
        lambda f: f"±{100 * f['bts_ci_half_width']:.0f} %",
    ),
    (
        "BTS's favourite position-1 item: share of its position-1 traffic",
        lambda f: f"{100 * f['top1_share']:.0f} %",
    ),
    (
        "that item: random rounds at position 1 / their clicks",
        lambda f: f"{f['top1_random_rounds']:.0f} / {f['top1_random_clicks']:.0f}",
    ),
    (
        "BTS propensity of one (position, item): largest move between daily means",
        lambda f: f"{f['daily_propensity_range']:.2f}",
    ),
    (
        "BTS mean logged propensity / the item's share of its position, median",
        lambda f: f"{f['mean_logged_over_share']:.1f}×",
    ),
    (
        "Σ 1/p over an item's BTS rounds / the position's rounds, median",
        lambda f: f"{f['horvitz_thompson_median']:.2f}",
    ),
    ("smallest BTS logged propensity", lambda f: f"{f['min_propensity']:.0e}"),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.selectors",
        description="Off-policy estimates and the learned selector on the Open Bandit sample; "
        f"prints its tables and records them in bench/RESULTS.md ({SECTION}).",
    )
    parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"skipped: Open Bandit data not found at {DATA} (../shared/data beside the repo)")
        return 0
    rows: list[Row] = []
    facts: dict[str, dict[str, float]] = {}
    for campaign in CAMPAIGNS:
        campaign_rows, facts[campaign] = evaluate_campaign(campaign)
        rows += campaign_rows
    selector_results = [evaluate_selector(c) for c in CAMPAIGNS]

    body = f"""
Part (a): the BTS policy estimated from the random log, against the click rate BTS observed
in its own log. CTRs in percent; 95 % percentile bootstrap intervals ({N_BOOTSTRAP:,} resamples,
seed {SEED}); DM / DR reward model cross-fitted over {FOLDS} folds.

Overall (all positions):

{render(rows, {"all"})}

Per position:

{render(rows, {str(k) for k in POSITIONS})}

Intervals that cover BTS's observed CTR (per position and overall):

{coverage_table(rows)}

The logs, the reward model and the BTS propensities:

{facts_table(facts)}

Part (b): the learned selector, cross-fitted over {SELECTOR_FOLDS} folds of rounds, and the
comparators. CTRs in percent:

{render_selector(selector_results)}

The gate (`training.ope.beats`: the learned DR lower bound must exceed each comparator's
point value):

{gate_table(selector_results)}
"""
    print(body.strip())
    record(SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
