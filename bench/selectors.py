"""Selectors on the Open Bandit Dataset: how well off-policy estimates predict a policy.

    python -m bench.selectors

Data: the Open Bandit Dataset sample shipped in ``../shared/data/open-bandit`` (ZOZOTOWN
fashion recommendations, campaigns ``men`` and ``women``, 10,000 rounds per log; see its
SOURCE.md). Each campaign ran two behaviour policies at the same time: uniform random and
Bernoulli Thompson sampling (BTS). Each round shows one item in one of three positions.

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

import sys
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import betaln

from bench.results import record, table
from training.ope import Estimate, estimate_ips, evaluate_policy

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "open-bandit"
CAMPAIGNS = ("men", "women")
POSITIONS = (1, 2, 3)
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


def read_log(policy: str, campaign: str) -> pd.DataFrame:
    """One OBD log (plain CSV if present, else the ``.csv.gz`` copy)."""
    folder = DATA / policy / campaign
    path = folder / f"{campaign}.csv"
    if not path.exists():
        path = folder / f"{campaign}.csv.gz"
    return pd.read_csv(path, index_col=0)


def n_items(campaign: str) -> int:
    """Catalogue size of a campaign, from its item_context.csv."""
    return len(pd.read_csv(DATA / "random" / campaign / "item_context.csv", index_col=0))


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
    }
    return rows, facts


USER_FEATURES = ("user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3")
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
    items = pd.read_csv(DATA / "random" / campaign / "item_context.csv", index_col=0)
    items = items.set_index("item_id").sort_index()
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


def selector_section(results: list[SelectorResult]) -> str:
    """The part (b) paragraphs of the RESULTS.md section."""
    verdicts = " ".join(
        f"{r.campaign}: {'passes' if r.passed else 'fails'} — {r.reason}"
        + (
            ""
            if r.passed
            else "; so the champion would be the constant best item per position "
            f"(the most-clicked item at positions 1-3: {', '.join(map(str, r.best_items))})"
            + (
                f", though a best item picked on one fold is itself estimated at "
                f"{pct(r.best_single.value)} % on the other, below the random policy's "
                f"{pct(r.random_observed.value)} %: on this sample no learned or fixed choice "
                "is supported, and keeping the logging policy is the safe fallback."
                if r.best_single.value < r.random_observed.value
                else "."
            )
        )
        for r in results
    )
    choices = ", ".join(f"{r.campaign} {r.distinct_choices}" for r in results)
    sizes = ", ".join(f"{r.campaign} {n_items(r.campaign)}" for r in results)
    return f"""
Part (b): the learned selector. The selectors' outcome model (LightGBM, `models.selector.
OutcomeModel`) on the random log: context = the user's four categorical features and the
position, candidate = an item (its features and the user's affinity to it), reward = the
click; the policy shows the item with the highest predicted click rate. Cross-fitted over
{SELECTOR_FOLDS} folds of rounds (each round's choice from a model that did not see it),
evaluated off-policy on the random log with the part (a) estimators and reward model.
Comparators: each logging policy's observed click rate in its own log, and the best single
item per position (per fold and position the item with the highest DR value on the other fold).

{render_selector(results)}

Gate (`training.ope.beats`: the learned DR lower bound must exceed each comparator's point
value). {verdicts}

Interpretation: {" ".join(selector_reading(r) for r in results)} With about 23 clicks per
fold to learn from, the model cannot rank the items ({sizes}; distinct items it chose: {choices});
nothing here shows a learned selector beating BTS, random or a fixed item on this sample,
and the gate keeps the fallback, as designed.
"""


def selector_reading(r: SelectorResult) -> str:
    """One sentence: where the learned DR interval lies against the logging policies."""
    dr = r.learned["DR"]
    parts = []
    for name, e in (("random", r.random_observed), ("BTS", r.bts_observed)):
        if dr.ci_high < e.value:
            parts.append(f"lies below {name}'s observed {pct(e.value)} %")
        elif dr.ci_low > e.value:
            parts.append(f"lies above {name}'s observed {pct(e.value)} %")
        else:
            parts.append(f"spans {name}'s observed {pct(e.value)} %")
    return (
        f"In {r.campaign} the learned policy's DR interval "
        f"[{pct(dr.ci_low)}, {pct(dr.ci_high)}] % " + " and ".join(parts) + "."
    )


def pooling_note(strength: float) -> str:
    """Say so when the prior strength is the largest tried (the cells are pooled)."""
    return " (the largest tried: complete pooling)" if strength >= PRIOR_STRENGTHS[-1] else ""


def reflow(text: str, width: int = 100) -> str:
    """Rewrap the prose paragraphs of ``text`` (tables and headings are kept as they are)."""
    blocks = text.strip().split("\n\n")
    kept = [
        block
        if block.lstrip().startswith("|")
        else textwrap.fill(" ".join(block.split()), width, break_on_hyphens=False)
        for block in blocks
    ]
    return "\n\n".join(kept)


def main() -> int:
    if not DATA.is_dir():
        print(f"skipped: Open Bandit data not found at {DATA} (../shared/data beside the repo)")
        return 0
    rows: list[Row] = []
    facts: dict[str, dict[str, float]] = {}
    for campaign in CAMPAIGNS:
        campaign_rows, facts[campaign] = evaluate_campaign(campaign)
        rows += campaign_rows

    selector_results = [evaluate_selector(c) for c in CAMPAIGNS]
    part_b = selector_section(selector_results)
    overall = render(rows, {"all"})
    per_position = render(rows, {str(k) for k in POSITIONS})
    print(overall, "\n", per_position, "\n", render_selector(selector_results), sep="\n")

    def pick(campaign: str, position: str, name: str) -> Row:
        return next(
            r
            for r in rows
            if (r.campaign, r.position, r.estimate.name) == (campaign, position, name)
        )

    weighted = ("IPS", "SNIPS", "DR")
    covered = sum(r.covers for r in rows if r.estimate.name in weighted)
    total = sum(r.estimate.name in weighted for r in rows)
    dm_covered = sum(r.covers for r in rows if r.estimate.name == "DM")
    dm_total = sum(r.estimate.name == "DM" for r in rows)
    counts = "; ".join(
        f"{c}: {f['random_clicks']:.0f} clicks in the random log and {f['bts_clicks']:.0f} in "
        f"the BTS log, IPS effective sample size {f['ess_all']:,.0f} of 10,000, "
        f"reward-model prior strength {f['prior_strength']:,.0f} pseudo-rounds"
        f"{pooling_note(f['prior_strength'])}"
        f" against about {10_000 / 3 / n_items(c):.0f} rounds per (position, item) cell"
        for c, f in facts.items()
    )
    men_ips, men_naive = pick("men", "all", "IPS"), pick("men", "all", "random log mean")
    women_ips = pick("women", "all", "IPS")
    men_first = pick("men", "1", "IPS")
    men = facts["men"]
    ht = np.median([f["horvitz_thompson_median"] for f in facts.values()])
    half_widths = [
        (r.truth.ci_high - r.truth.ci_low) / 2 / r.truth.value
        for r in rows
        if r.position == "all" and r.estimate.name == "IPS"
    ]
    drift = max(f["daily_propensity_range"] for f in facts.values())
    inflation = np.mean([f["mean_logged_over_share"] for f in facts.values()])
    body = f"""
Part (a): the BTS policy evaluated from the uniform-random log of the Open Bandit Dataset
sample (10,000 rounds per log), compared with the click rate BTS observed in its own log.
CTRs in percent; intervals are 95 % percentile bootstrap ({N_BOOTSTRAP:,} resamples, seed
{SEED}); relative error = |estimate − BTS observed| / BTS observed. Target: BTS's item
frequencies per position in its log. DM / DR reward model: per-(position, item) click rates
shrunk towards the position's rate (beta-binomial prior strength), cross-fitted over
{FOLDS} folds. "random log mean" is the uncorrected click rate of the random log.

Overall (all positions):

{overall}

Per position:

{per_position}

IPS / SNIPS / DR intervals cover BTS's observed CTR in {covered} of {total} cases (per
position and overall); DM's in {dm_covered} of {dm_total} (its interval holds the reward
model fixed, so it is far too narrow). {counts}.

Interpretation: with 46 clicks per 10,000 random rounds, every estimate is noisy; the
yardstick is noisy too (BTS's own overall CTR interval is about
±{100 * min(half_widths):.0f}–{100 * max(half_widths):.0f} %), so relative errors of
about 0.2 are within what this sample can resolve. In men, where BTS beat random, IPS /
SNIPS / DR move from the uncorrected {pct(men_naive.estimate.value)} % towards the observed
{pct(men_ips.truth.value)} % (IPS {pct(men_ips.estimate.value)} %, relative error
{men_ips.relative_error:.2f} vs {men_naive.relative_error:.2f}) and their intervals cover it,
while the uncorrected interval does not. In women BTS did no better than random (the same 46
clicks in each log), so the uncorrected rate and DM are right by coincidence and IPS
overshoots ({pct(women_ips.estimate.value)} %, still covering). The only IPS / SNIPS / DR
misses are men position 1 ({pct(men_first.estimate.value)} % estimated vs
{pct(men_first.truth.value)} % observed): BTS's favourite item there
({100 * men["top1_share"]:.0f} % of its position-1 traffic) got
{men["top1_random_clicks"]:.0f} clicks in its {men["top1_random_rounds"]:.0f} random
rounds at that position. The shrunk reward model pools almost completely, so DM ≈ the
random log's position mean and DR ≈ IPS: a 0.5 % CTR leaves a reward model nothing to
learn from here.

Data notes: BTS's logged propensity for one (position, item) moves by up to {drift:.2f}
between daily means over the week, and averaged over the rounds an item was shown it is a
median {inflation:.1f}× the item's share of its position: rounds where an item was shown
are rounds where its probability was high. The propensities are still consistent
(Σ 1/p over an item's rounds ≈ the position's rounds, median ratio {ht:.2f}) except
for a few tiny ones (the smallest is {facts["women"]["min_propensity"]:.0e}, in women), so
the item frequencies, not averaged logged propensities, estimate BTS's week-average action
distribution.

{part_b}
"""
    record("Selectors (Open Bandit)", reflow(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
