"""Fit a content selector for one slot from the logged campaigns in the event store.

Steps: the slot's logged decisions with their outcomes (``training.selector_data``),
customer features as of each send (a point-in-time snapshot per campaign wave),
content features (``models.content_features``), then a LightGBM outcome model
(``models.selector.OutcomeModel``). Offers are learned from opened emails only:
an unopened email shows no offer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from features.errors import InputError
from features.segments import SegmentSet
from features.settings import FeatureConfig
from features.snapshot import build_snapshot
from features.store import EventStore
from models.content_features import content_features
from models.selector import (
    OutcomeModel,
    candidate_scores,
    customer_design,
    slot_customer_features,
)
from training.ope import Estimate, beats, deterministic_policy, evaluate_policy
from training.selector_data import (
    DEFAULT_REWARD,
    attach_outcomes,
    logged_decisions,
    reward_column,
    with_customer_features,
    with_response_history,
)


@dataclass
class SelectorData:
    """A slot's training table and its design matrix."""

    slot: str
    reward: str
    table: pd.DataFrame
    features: pd.DataFrame
    rewards: np.ndarray
    content: pd.DataFrame
    candidates: list[str]


def store_features_at(
    store: EventStore, config: FeatureConfig, segments: SegmentSet
) -> Callable[[pd.Timestamp], pd.DataFrame]:
    """``ts -> customer features`` from a snapshot as of ``ts``, keyed by every customer
    id a person has (so a send to a duplicate record finds its person's features)."""

    def features_at(ts: pd.Timestamp) -> pd.DataFrame:
        snapshot = build_snapshot(store, as_of=ts.to_pydatetime(), config=config, segments=segments)
        mapping = snapshot.identity.mapping
        ids = mapping.loc[mapping["source_type"] == "customer", ["source_id", "canonical_id"]]
        people = snapshot.customers.rename(columns={"customer_id": "canonical_id"})
        merged = ids.merge(people, on="canonical_id", how="inner")
        return merged.drop(columns="canonical_id").rename(columns={"source_id": "customer_id"})

    return features_at


def build_selector_data(
    events: pd.DataFrame,
    content: pd.DataFrame,
    customers: pd.DataFrame,
    features_at: Callable[[pd.Timestamp], pd.DataFrame],
    *,
    slot: str,
    reward: str | None = None,
    window: timedelta = timedelta(hours=72),
) -> SelectorData:
    """The training table and design matrix of ``slot`` (see the module docstring)."""
    reward = reward or DEFAULT_REWARD.get(slot, "click")
    decisions = logged_decisions(events, slot=slot)
    if decisions.empty:
        raise InputError("slot", slot, "no logged decisions for this slot")
    costs = _costs(content)
    table = attach_outcomes(decisions, events, window=window, margins=costs)
    slot_ids = content.loc[content["slot"] == slot, "content_id"].astype(str).tolist()
    table = with_response_history(table, slot_ids)
    if slot == "offer":
        table = table[table["opened"]].reset_index(drop=True)
    table = with_customer_features(table, features_at)
    table = table.merge(customers[["customer_id", "country"]], on="customer_id", how="left")
    slot_content = content[content["slot"] == slot]
    content_table = content_features(slot_content)
    design = pd.concat(
        [
            customer_design(table, slot_customer_features(slot)).reset_index(drop=True),
            content_table.reindex(table["content_id"].astype(str)).reset_index(drop=True),
        ],
        axis=1,
    )
    active = slot_content[slot_content["active"].fillna(True).astype(bool)]
    return SelectorData(
        slot=slot,
        reward=reward,
        table=table,
        features=design,
        rewards=reward_column(table, reward),
        content=content_table,
        candidates=active["content_id"].astype(str).tolist(),
    )


def _costs(content: pd.DataFrame) -> dict[str, float]:
    offers = content[content["slot"] == "offer"]
    features = content_features(offers)
    if "offer_cost" not in features:
        return {}
    return {str(k): float(v) for k, v in features["offer_cost"].items()}


@dataclass
class SelectorEvaluation:
    """Off-policy estimates on held-out campaigns, and what should be champion."""

    estimates: dict[str, Estimate]
    logging_value: float
    best_single: str
    best_single_estimate: Estimate
    promoted: str
    reason: str


def evaluate_selector(
    model: OutcomeModel,
    data: SelectorData,
    holdout: np.ndarray,
    *,
    eligible: np.ndarray | None = None,
    champion_value: float | None = None,
    random_state: int = 0,
) -> SelectorEvaluation:
    """Estimate the learned greedy policy, every single-variant policy and the
    logging policy on the held-out rows, and apply the gate.

    The learned policy becomes champion only if its doubly robust lower bound
    beats the logging policy's observed value, the best single variant's estimate
    and the current champion's value; otherwise the champion is the constant
    policy of the best single variant, and the reason says what blocked.

    Parameters
    ----------
    holdout : numpy.ndarray of bool, shape (n_rows,)
        Rows to evaluate on (e.g. the latest campaigns), not used for fitting.
    eligible : numpy.ndarray of bool, shape (n_holdout, n_candidates), optional
        Which candidates each held-out row could have been shown.
    """
    rows = data.table[holdout].reset_index(drop=True)
    candidates = data.candidates
    logged = np.array([candidates.index(c) if c in candidates else -1 for c in rows["content_id"]])
    keep = logged >= 0
    rows, logged = rows[keep].reset_index(drop=True), logged[keep]
    rewards = data.rewards[holdout][keep]
    propensities = rows["propensity"].to_numpy(dtype=float)
    scores = candidate_scores(model, rows, data.content, candidates).mean(axis=0)
    allowed = np.ones_like(scores, dtype=bool) if eligible is None else eligible[keep]
    masked = np.where(allowed, scores, -np.inf)
    greedy = deterministic_policy(masked.argmax(axis=1), len(candidates))
    estimates = evaluate_policy(
        logged, rewards, propensities, greedy, scores, random_state=random_state
    )
    singles = {}
    for j, candidate in enumerate(candidates):
        if not allowed[:, j].all():
            continue  # a constant policy must be allowed everywhere
        constant = deterministic_policy(np.full(len(rows), j), len(candidates))
        singles[candidate] = evaluate_policy(
            logged, rewards, propensities, constant, scores, random_state=random_state
        )["DR"]
    best_single = max(singles, key=lambda c: singles[c].value)
    comparators: dict[str, Estimate | float] = {
        "logging policy": float(rewards.mean()),
        f"best single variant ({best_single})": singles[best_single],
    }
    if champion_value is not None:
        comparators["current champion"] = champion_value
    passed, reason = beats(estimates["DR"], comparators)
    return SelectorEvaluation(
        estimates=estimates,
        logging_value=float(rewards.mean()),
        best_single=best_single,
        best_single_estimate=singles[best_single],
        promoted="learned" if passed else best_single,
        reason=reason,
    )
