"""Fit a content selector for one slot from the logged campaigns in the event store.

Steps: the slot's logged decisions with their outcomes (``training.selector_data``),
customer features as of each send (a point-in-time snapshot per campaign wave:
behaviour and the customer record's ``attr_*`` attributes), content features
(``models.content_features``), then LightGBM outcome models
(``models.selector.OutcomeModel``) judged off-policy.

What the log allows is decided from the log, and each decision is said (the job's
``notes``, printed and logged):

* the population: offers are learned from opened e-mails when the log records opens
  (an unopened e-mail shows no offer), from every send when it has none;
* the reward (``auto``): conversion when the learning rows hold enough conversions,
  else the click;
* the hold-out (:func:`plan_split`): the later campaigns when there are enough of
  them, else a seeded split of customers into folds with cross-fitted estimates (every
  row is predicted by a model that never saw its customer);
* the feature set (:func:`select_feature_set`): candidate sets compared by
  cross-validated loss on the learning rows;
* the gate (:func:`evaluate_selector`): the policy that would be served —
  exploration, the default content for customers without consent to personalisation
  — against the logging policy, every constant policy with the same exploration, and
  the current champion re-estimated on the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd

from features.data.store import EventStore
from features.errors import InputError
from features.identity.match import TrainedMatchers
from features.segments import SegmentSet
from features.settings import ATTRIBUTION_WINDOW_HOURS, MARGIN_RATE, FeatureConfig
from features.snapshot import build_snapshot
from models.content_features import OFFER_FEATURES, OFFER_ID_PREFIX, content_features
from models.policy import Policy
from models.selector import (
    OFFER_CUSTOMER_FEATURES,
    OFFER_TREES,
    CustomerDesign,
    OutcomeModel,
    Selector,
    candidate_scores,
    slot_customer_features,
)
from training.ope import Estimate, beats, evaluate_policy
from training.selector_data import (
    REWARD_COLUMNS,
    attach_outcomes,
    logged_decisions,
    reward_column,
    with_customer_features,
    with_response_history,
)
from training.settings import SelectorConfig


@dataclass
class SelectorData:
    """A slot's training table and its design matrix.

    ``table`` holds every logged decision of the population (``personalised``: the
    customer consented to profiling — only those rows are learned from; the others
    are evaluated with the default content serving gives them).
    """

    slot: str
    reward: str
    table: pd.DataFrame
    features: pd.DataFrame
    rewards: np.ndarray
    content: pd.DataFrame
    candidates: list[str]
    design: CustomerDesign = field(default_factory=CustomerDesign)
    population: str = "all"
    notes: list[str] = field(default_factory=list)

    @property
    def learnable(self) -> np.ndarray:
        """Rows a model may learn from (consent to personalisation), shape (n_rows,)."""
        return self.table["personalised"].to_numpy(dtype=bool)


def store_features_at(
    store: EventStore, config: FeatureConfig, segments: SegmentSet
) -> Callable[[pd.Timestamp], pd.DataFrame]:
    """``ts -> customer features`` from a snapshot as of ``ts``, keyed by every customer
    id a person has (so a send to a duplicate record finds its person's features)."""

    # One identity matcher for every campaign's snapshot: trained by the first build,
    # reused to score the records as they stood at each later one.
    matchers = TrainedMatchers()

    def features_at(ts: pd.Timestamp) -> pd.DataFrame:
        snapshot = build_snapshot(
            store, as_of=ts.to_pydatetime(), config=config, segments=segments, matchers=matchers
        )
        mapping = snapshot.identity.mapping
        ids = mapping.loc[mapping["source_type"] == "customer", ["source_id", "canonical_id"]]
        people = snapshot.customers.rename(columns={"customer_id": "canonical_id"})
        merged = ids.merge(people, on="canonical_id", how="inner")
        return merged.drop(columns="canonical_id").rename(columns={"source_id": "customer_id"})

    return features_at


def resolve_reward(
    table: pd.DataFrame, slot: str, requested: str, *, min_positive: int
) -> tuple[str, str]:
    """The reward a slot is judged by, and why.

    ``auto``: conversion when the rows hold at least ``min_positive`` conversions,
    else the click (a rarer outcome can be neither learned nor estimated with useful
    precision; the click is the nearest outcome a log always has more of). A named
    reward is taken as asked.
    """
    if requested != "auto":
        return requested, f"reward {requested} (as set)"
    counts = {r: int(table[REWARD_COLUMNS[r]].sum()) for r in ("conversion", "click")}
    reward = "conversion" if counts["conversion"] >= min_positive else "click"
    shown = ", ".join(f"{r} {n:,}" for r, n in counts.items())
    return reward, (
        f"reward {reward} (auto: conversion with at least {min_positive:,} conversions "
        f"among the {len(table):,} {slot} decisions learned from, else click; {shown})"
    )


def build_selector_data(
    events: pd.DataFrame,
    content: pd.DataFrame,
    customers: pd.DataFrame,
    features_at: Callable[[pd.Timestamp], pd.DataFrame],
    *,
    slot: str,
    reward: str | None = None,
    window: timedelta = timedelta(hours=ATTRIBUTION_WINDOW_HOURS),
    margin_rate: float = MARGIN_RATE,
    population: str = "auto",
    min_positive_rewards: int = 300,
) -> SelectorData:
    """The training table and design matrix of ``slot`` (see the module docstring).

    ``reward`` None: the slot's setting default (``auto`` for offers, click for
    subject lines).
    """
    settings = SelectorConfig()
    requested = reward or (settings.offer_reward if slot == "offer" else settings.subject_reward)
    decisions = logged_decisions(events, slot=slot)
    if decisions.empty:
        raise InputError("slot", slot, "no logged decisions for this slot")
    notes: list[str] = []
    costs = _costs(content)
    table = attach_outcomes(
        decisions, events, window=window, margins=costs, margin_rate=margin_rate
    )
    slot_ids = content.loc[content["slot"] == slot, "content_id"].astype(str).tolist()
    table = with_response_history(table, slot_ids)
    chosen_population = "all"
    if slot == "offer":
        if population not in ("auto", "opened", "all"):
            raise InputError("offer_population", population, "expected auto, opened or all")
        opens = int(table["open_event"].sum())
        chosen_population = population
        if population == "auto":
            chosen_population = "opened" if opens else "all"
        if chosen_population == "opened":
            table = table[table["opened"]].reset_index(drop=True)
            if table.empty:
                raise InputError(
                    "offer_population",
                    "opened",
                    "no logged offer decision was opened; set --population all",
                )
        how = "auto: " if population == "auto" else ""
        notes.append(
            f"population: {'opened e-mails' if chosen_population == 'opened' else 'every send'} "
            f"({how}{opens:,} email_open events attributed; "
            f"{len(table):,} offer decisions learned from)"
        )
    table = with_customer_features(table, features_at)
    table["personalised"] = table["personalised"].astype("boolean").fillna(False).astype(bool)
    table = table.merge(customers[["customer_id", "country"]], on="customer_id", how="left")
    learnable = table["personalised"].to_numpy(dtype=bool)
    if not learnable.any():
        raise InputError(
            "customers",
            f"{len(table):,} {slot} decisions",
            "no decision is of a customer with consent to personalisation: nothing to learn",
        )
    chosen_reward, why = resolve_reward(
        table[learnable], slot, requested, min_positive=min_positive_rewards
    )
    notes.append(why)
    rewards = reward_column(table, chosen_reward)
    _check_learnable(rewards[learnable], chosen_reward, slot)
    design, dropped = CustomerDesign.learn(table[learnable], slot_customer_features(slot))
    attributes = [c for c in design.columns() if c.startswith("attr_")]
    notes.append(
        f"customer attributes: {len(attributes)} design columns"
        + (f"; left out: {dropped}" if dropped else "")
    )
    slot_content = content[content["slot"] == slot]
    content_table = content_features(slot_content)
    features = pd.concat(
        [
            design.frame(table).reset_index(drop=True),
            content_table.reindex(table["content_id"].astype(str)).reset_index(drop=True),
        ],
        axis=1,
    )
    active = slot_content[slot_content["active"].fillna(True).astype(bool)]
    return SelectorData(
        slot=slot,
        reward=chosen_reward,
        table=table,
        features=features,
        rewards=rewards,
        content=content_table,
        candidates=active["content_id"].astype(str).tolist(),
        design=design,
        population=chosen_population,
        notes=notes,
    )


def _check_learnable(rewards: np.ndarray, reward: str, slot: str) -> None:
    if len(rewards) == 0:
        raise InputError("rewards", 0, f"no {slot} decision to learn from")
    if not np.isfinite(rewards).all():
        raise InputError("rewards", "non-finite", f"{reward} rewards must be finite numbers")
    if len(np.unique(rewards)) < 2:
        raise InputError(
            "reward",
            reward,
            f"every one of {len(rewards):,} {slot} decisions has the same {reward} "
            f"({float(rewards[0]):g}): nothing to learn; choose another --reward or widen "
            "--attribution-window-hours",
        )


def _costs(content: pd.DataFrame) -> dict[str, float]:
    offers = content[content["slot"] == "offer"]
    features = content_features(offers)
    if "offer_cost" not in features:
        return {}
    return {str(k): float(v) for k, v in features["offer_cost"].items()}


# ------------------------------------------------------------------------------ splits


@dataclass(frozen=True)
class SplitPlan:
    """How rows are held out.

    ``kind`` ``campaign``: ``fold`` is 1 for the held-out (later) campaigns, 0 for the
    rest. ``customer``: ``fold`` is each row's customer fold in ``[0, folds)``; every
    row is held out once.
    """

    kind: str
    fold: np.ndarray
    folds: int
    reason: str

    @property
    def holdout(self) -> np.ndarray:
        """Rows the estimates are computed on, shape (n_rows,)."""
        if self.kind == "campaign":
            return self.fold == 1
        return np.ones(len(self.fold), dtype=bool)


def customer_folds(customers: pd.Series, folds: int, seed: int) -> np.ndarray:
    """A seeded fold in ``[0, folds)`` per row, the same for every row of a customer."""
    unique, inverse = np.unique(customers.astype(str).to_numpy(), return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    return (order % folds)[inverse].astype(np.int64)


def plan_split(table: pd.DataFrame, config: SelectorConfig) -> SplitPlan:
    """The hold-out of ``config.split`` (see :class:`features.settings.SelectorConfig`).

    Raises
    ------
    InputError
        ``split=campaign`` when the later campaigns, or the earlier ones, are empty.
    """
    starts = table.groupby("campaign_id")["ts"].transform("min")
    later = (starts >= starts.quantile(1 - config.holdout_share)).to_numpy()
    n_campaigns = int(table["campaign_id"].nunique())
    held_campaigns = int(table.loc[later, "campaign_id"].nunique())
    held_rows, train_rows = int(later.sum()), int((~later).sum())
    described = (
        f"{n_campaigns} campaign(s); the later {config.holdout_share:.0%} hold "
        f"{held_campaigns} campaign(s), {held_rows:,} decisions, the earlier {train_rows:,}"
    )
    if config.split == "campaign":
        if held_rows == 0 or train_rows == 0:
            raise InputError(
                "split", "campaign", f"{described}: nothing to fit or to hold out; use customer"
            )
        return SplitPlan(
            "campaign", later.astype(np.int64), 2, f"later campaigns (as set; {described})"
        )
    enough = (
        held_campaigns >= config.min_holdout_campaigns
        and held_rows >= config.min_holdout_rows
        and train_rows > 0
    )
    if config.split == "auto" and enough:
        return SplitPlan(
            "campaign", later.astype(np.int64), 2, f"later campaigns (auto: {described})"
        )
    fold = customer_folds(table["customer_id"], config.folds, config.seed)
    why = (
        "as set"
        if config.split == "customer"
        else f"auto: fewer than {config.min_holdout_campaigns} held-out campaigns or "
        f"{config.min_holdout_rows:,} held-out decisions"
    )
    return SplitPlan(
        "customer",
        fold,
        config.folds,
        f"customers in {config.folds} seeded folds (seed {config.seed}), cross-fitted "
        f"({why}; {described})",
    )


# ------------------------------------------------------------------------ feature sets


def feature_sets(data: SelectorData) -> dict[str, list[str] | None]:
    """Candidate design columns of the slot's model (None: every column).

    Offers: ``offer`` — what an offer's effect is expected to depend on (price
    sensitivity, spend, country) and the offer's own features — against ``all``
    (every behavioural feature, the attributes, past responses). Subject lines: all.
    """
    if data.slot != "offer":
        return {"all": None}
    content = [
        c for c in data.content.columns if c in OFFER_FEATURES or c.startswith(OFFER_ID_PREFIX)
    ]
    restricted = [c for c in OFFER_CUSTOMER_FEATURES if c in data.features.columns] + content
    return {"offer": restricted, "all": None}


def slot_outcome_model(
    slot: str, columns: list[str] | None, *, ensemble: int = 1, random_state: int = 0
) -> OutcomeModel:
    """The LightGBM settings of a slot (offers: shallow trees, large leaves — an offer
    changes an outcome by a few points, and deep trees fit noise)."""
    if slot == "offer":
        return OutcomeModel(
            **OFFER_TREES,
            ensemble=ensemble,
            random_state=random_state,
            columns=columns,
        )
    return OutcomeModel(ensemble=ensemble, random_state=random_state, columns=columns)


def _loss(predicted: np.ndarray, observed: np.ndarray, binary: bool) -> float:
    if binary:
        p = np.clip(predicted, 1e-6, 1 - 1e-6)
        return float(-np.mean(observed * np.log(p) + (1 - observed) * np.log(1 - p)))
    return float(np.mean((predicted - observed) ** 2))


@dataclass
class CrossFit:
    """Out-of-fold predictions of one feature set."""

    name: str
    columns: list[str] | None
    loss: float
    members: np.ndarray | None  # (1, n_rows, n_candidates), rows not scored: NaN


def cross_fit(
    data: SelectorData,
    columns: list[str] | None,
    name: str,
    fold: np.ndarray,
    rows: np.ndarray,
    *,
    seed: int,
    with_scores: bool,
) -> CrossFit:
    """Fit one model per fold on the other folds' learnable ``rows``; predict the fold.

    The loss is the out-of-fold log loss (0/1 rewards) or squared error of the logged
    decisions' rewards over the learnable ``rows``; with ``with_scores`` every
    candidate is scored for every row of ``rows`` too (for the off-policy estimates).
    """
    learnable = data.learnable
    binary = bool(np.isin(data.rewards[learnable], (0.0, 1.0)).all())
    predicted = np.full(len(data.table), np.nan)
    members = np.full((1, len(data.table), len(data.candidates)), np.nan) if with_scores else None
    for k in np.unique(fold[rows]):
        fit = rows & learnable & (fold != k)
        test = rows & (fold == k)
        _check_learnable(data.rewards[fit], data.reward, f"{data.slot} (fold {k})")
        model = slot_outcome_model(data.slot, columns, random_state=seed).fit(
            data.features[fit], data.rewards[fit]
        )
        predicted[test] = model.predict(data.features[test])
        if members is not None:
            members[:, test] = candidate_scores(
                model, data.table[test], data.content, data.candidates, data.design
            )
    scored = rows & learnable
    loss = _loss(predicted[scored], data.rewards[scored], binary)
    return CrossFit(name, columns, loss, members)


def select_feature_set(
    data: SelectorData, fold: np.ndarray, rows: np.ndarray, *, seed: int, with_scores: bool
) -> tuple[CrossFit, dict[str, float]]:
    """The candidate feature set with the lowest cross-validated loss (ties: the
    smaller set), and every candidate's loss (NaN: a sole candidate, not
    cross-validated when no out-of-fold scores are asked for)."""
    sets = feature_sets(data)
    if len(sets) == 1 and not with_scores:
        ((name, columns),) = sets.items()
        return CrossFit(name, columns, float("nan"), None), {name: float("nan")}
    fits = [
        cross_fit(data, columns, name, fold, rows, seed=seed, with_scores=with_scores)
        for name, columns in sets.items()
    ]
    best = min(fits, key=lambda f: f.loss)
    return best, {f.name: f.loss for f in fits}


# -------------------------------------------------------------------------------- gate


@dataclass
class SelectorEvaluation:
    """Off-policy estimates of the served policies on the evaluation rows, and the
    verdict."""

    estimates: dict[str, Estimate]
    logging_value: float
    best_single: str
    best_single_estimate: Estimate
    singles: dict[str, Estimate]
    promoted: str
    reason: str
    champion_estimate: Estimate | None = None
    rows: int = 0


def served_policy(config: SelectorConfig, content_id: str | None = None) -> Policy:
    """The policy a run would serve: the learned one (``content_id`` None) or the
    constant one of ``content_id``, with the configured exploration."""
    if content_id is not None:
        return Policy("constant", epsilon=config.epsilon, content_id=content_id)
    return Policy(config.policy, epsilon=config.epsilon, temperature=config.temperature)


def forced_default(rows: pd.DataFrame, candidates: list[str], default: str) -> np.ndarray:
    """Serving's consent mask: the default content's index for rows of customers
    without consent to personalisation, -1 elsewhere."""
    personal = rows["personalised"].to_numpy(dtype=bool)
    return np.where(personal, -1, candidates.index(default)).astype(np.int64)


def evaluate_selector(
    members: np.ndarray,
    data: SelectorData,
    holdout: np.ndarray,
    *,
    config: SelectorConfig | None = None,
    default: str | None = None,
    champion: Selector | None = None,
    champion_value: float | None = None,
    random_state: int = 0,
) -> SelectorEvaluation:
    """Estimate the served learned policy, every served constant policy, the logging
    policy and the current champion on the held-out rows, and apply the gate.

    Each policy is :meth:`models.policy.Policy.probabilities` as serving runs it:
    with the configured exploration, and the ``default`` content for customers
    without consent to personalisation. The learned policy becomes champion only if
    its doubly robust lower bound beats the logging policy's observed value, the best
    constant policy's estimate and the current champion's; otherwise the champion is
    the constant policy of the best variant, and the reason says what blocked.

    Parameters
    ----------
    members : numpy.ndarray, shape (ensemble, n_holdout, n_candidates)
        Predicted rewards of the held-out rows (out of fold where cross-fitted); the
        learned policy's scores and the reward model of DM and DR.
    holdout : numpy.ndarray of bool, shape (n_rows,)
        Rows to evaluate on, not used for fitting the predictions.
    champion : Selector, optional
        The registered champion, re-scored on these rows with its own model and policy.
    champion_value : float, optional
        A champion value known on these rows (instead of ``champion``).
    """
    config = config or SelectorConfig()
    rows = data.table[holdout].reset_index(drop=True)
    candidates = data.candidates
    logged = pd.Index(candidates).get_indexer(pd.Index(rows["content_id"].astype(str)))
    keep = logged >= 0
    rows, logged = rows[keep].reset_index(drop=True), logged[keep].astype(np.int64)
    members = members[:, keep]
    if len(rows) == 0:
        raise InputError("holdout", 0, "no held-out decision shows a current candidate")
    if not np.isfinite(members).all():
        raise InputError("members", "non-finite", "every held-out row needs predictions")
    rewards = data.rewards[holdout][keep]
    propensities = rows["propensity"].to_numpy(dtype=float)
    reward_model = members.mean(axis=0)
    forced = forced_default(rows, candidates, default or candidates[0])

    def estimate(policy: Policy, scores: np.ndarray = members) -> dict[str, Estimate]:
        dist = policy.probabilities(scores, candidates, forced=forced)
        return evaluate_policy(
            logged, rewards, propensities, dist, reward_model, random_state=random_state
        )

    estimates = estimate(served_policy(config))
    singles = {c: estimate(served_policy(config, c))["DR"] for c in candidates}
    best_single = max(singles, key=lambda c: singles[c].value)
    logging_value = float(rewards.mean())
    comparators: dict[str, Estimate | float] = {
        "logging policy": logging_value,
        f"best single variant ({best_single})": singles[best_single],
    }
    champion_estimate = None
    if champion is not None:
        champion_estimate = champion_on(champion, rows, candidates, forced, estimate)
        comparators["current champion"] = champion_estimate
    elif champion_value is not None:
        comparators["current champion"] = champion_value
    values = [e.value for e in (*estimates.values(), *singles.values())]
    if not np.isfinite(values).all():
        raise InputError("estimates", values, "an off-policy estimate is not a number")
    passed, reason = beats(estimates["DR"], comparators)
    return SelectorEvaluation(
        estimates=estimates,
        logging_value=logging_value,
        best_single=best_single,
        best_single_estimate=singles[best_single],
        singles=singles,
        promoted="learned" if passed else best_single,
        reason=reason,
        champion_estimate=champion_estimate,
        rows=len(rows),
    )


def champion_on(
    champion: Selector,
    rows: pd.DataFrame,
    candidates: list[str],
    forced: np.ndarray,
    estimate: Callable[..., dict[str, Estimate]],
) -> Estimate:
    """The champion's DR value on ``rows``: its own model scores them, its own policy
    chooses, with the same masks and reward model as the candidate."""
    if set(champion.candidates) != set(candidates):
        raise InputError(
            "champion",
            champion.candidates,
            f"offers other candidates than this run ({candidates}): not comparable",
        )
    scores = candidate_scores(
        champion.model, rows, champion.content, champion.candidates, champion.design
    )
    # Reorder the champion's candidate axis into this run's order.
    order = pd.Index(champion.candidates).get_indexer(pd.Index(candidates))
    policy = champion.policy
    if policy.kind == "constant" and policy.content_id not in candidates:
        raise InputError("champion", policy.content_id, "its constant variant is not a candidate")
    return estimate(policy, scores[:, :, order])["DR"]
