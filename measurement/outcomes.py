"""Every logged decision joined to what followed it: the table the reports read.

One row per decision of the service's decision log (``/recommend``,
``/recommend_batch``, ``/choose``), with the outcomes attributed to it by the same
rule training uses (``training.selector_data.attach_outcomes``): an open, click or
purchase carrying the decision's id belongs to it whenever it happens after it; one
without a known decision id belongs to the decisions of the same customer and
campaign (``context.campaign_id`` of the request) within the attribution window.
A decision made outside a campaign (no ``campaign_id``) is credited only by its id.

Besides the outcomes, each row says who decided: the ``policy`` (the strategy's
family — ``model``, ``rule``, ``fallback``, ``consent``, ``holdout`` — with the full
``strategy`` beside it) and the ``model_version`` that served (the recommender's for
recommendations, the slot's selector's for a content choice).
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from features.errors import InputError
from features.settings import ATTRIBUTION_WINDOW_HOURS, MARGIN_RATE
from training.selector_data import attach_outcomes

#: The families of served strategies, as the decision log names them
#: (``fallback:cold_start`` is of family ``fallback``, ``rule:winback`` of ``rule``).
POLICIES = ("model", "rule", "fallback", "consent", "holdout")
#: The outcome columns of the table, each a per-decision reward.
OUTCOMES = ("opened", "clicked", "converted", "revenue", "margin")
DECISION_COLUMNS = (
    "decision_id",
    "ts",
    "endpoint",
    "customer_id",
    "slot",
    "strategy",
    "chosen",
    "propensity",
    "candidates",
    "versions",
    "context",
)
# Decisions outside a campaign are keyed by their own id, so only outcomes carrying
# that id reach them.
_NO_CAMPAIGN = "decision:"


def decision_outcomes(
    decisions: pd.DataFrame,
    events: pd.DataFrame,
    *,
    window: timedelta = timedelta(hours=ATTRIBUTION_WINDOW_HOURS),
    margin_rate: float = MARGIN_RATE,
    margins: dict[str, float] | None = None,
) -> pd.DataFrame:
    """The decisions (as the decision log reads them) with their outcomes.

    Parameters
    ----------
    decisions : pandas.DataFrame
        The decision log's rows: ``decision_id``, ``ts`` (epoch seconds), ``endpoint``,
        ``customer_id``, ``slot``, ``strategy``, ``chosen``, ``propensity``,
        ``candidates``, ``versions`` and ``context`` (decoded JSON).
    events : pandas.DataFrame
        Events in the contract's columns (the event store's, with the posted events
        not yet compacted): the outcome events among them are attributed.
    window : datetime.timedelta
        How long after a decision an outcome without a known decision id counts.
    margin_rate, margins
        As for the selectors' margin reward (revenue × rate minus the offer's cost).

    Returns
    -------
    pandas.DataFrame
        One row per decision: ``decision_id``, ``ts`` (UTC), ``endpoint``,
        ``customer_id``, ``campaign_id`` (missing outside a campaign), ``slot``,
        ``strategy``, ``policy``, ``model_version``, ``snapshot``, ``content_id`` (a
        content choice's), ``propensity``, ``candidates`` (as logged: a content choice's
        ``[content_id, score, probability]``), and the outcomes ``opened``, ``clicked``,
        ``converted`` (bool), ``revenue`` and ``margin``.
    """
    missing = [c for c in DECISION_COLUMNS if c not in decisions.columns]
    if missing:
        raise InputError("decisions", missing, "columns missing from the decision log's rows")
    if decisions.empty:
        raise InputError(
            "decisions", 0, "the decision log holds no decision: serve some traffic first"
        )
    if decisions["decision_id"].duplicated().any():
        dup = decisions.loc[decisions["decision_id"].duplicated(), "decision_id"].iloc[0]
        raise InputError("decision_id", dup, "logged twice: one decision, one row")
    table = _decision_table(decisions)
    mapping = table[["decision_id", "customer_id", "campaign_id"]]
    joined = attach_outcomes(
        table.rename(columns={"sent_ts": "ts"}),
        events,
        window=window,
        margins=margins,
        margin_rate=margin_rate,
        sends_by_decision=mapping,
    )
    joined["campaign_id"] = joined["campaign_id"].where(
        ~joined["campaign_id"].str.startswith(_NO_CAMPAIGN)
    )
    keep = [
        "decision_id",
        "ts",
        "endpoint",
        "customer_id",
        "campaign_id",
        "slot",
        "strategy",
        "policy",
        "model_version",
        "snapshot",
        "content_id",
        "propensity",
        "candidates",
        *OUTCOMES,
    ]
    return joined[keep].reset_index(drop=True)


def _decision_table(decisions: pd.DataFrame) -> pd.DataFrame:
    context = decisions["context"].map(lambda c: c if isinstance(c, dict) else {})
    campaign = context.map(lambda c: c.get("campaign_id"))
    campaign = campaign.where(
        campaign.map(lambda v: isinstance(v, str) and v != ""),
        _NO_CAMPAIGN + decisions["decision_id"].astype(str),
    )
    versions = decisions["versions"].map(lambda v: v if isinstance(v, dict) else {})
    is_choice = decisions["slot"].ne("recommend")
    # A decision without a model (a rule, a fallback) has no version: None, not "nan".
    model_version = versions.map(lambda v: v.get("recommender")).where(
        ~is_choice, versions.map(lambda v: v.get("selector"))
    )
    policy = decisions["strategy"].astype(str).str.split(":").str[0]
    unknown = sorted(set(policy) - set(POLICIES))
    if unknown:
        raise InputError("strategy", unknown, f"not a served strategy; expected {POLICIES}")
    return pd.DataFrame(
        {
            "decision_id": decisions["decision_id"].astype(str),
            "sent_ts": pd.to_datetime(decisions["ts"].astype(float), unit="s", utc=True),
            "endpoint": decisions["endpoint"],
            "customer_id": decisions["customer_id"].astype(str),
            "campaign_id": campaign.astype(str),
            "slot": decisions["slot"],
            "strategy": decisions["strategy"],
            "policy": policy,
            "model_version": pd.Series(
                [None if v is None or pd.isna(v) else str(v) for v in model_version],
                index=decisions.index,
                dtype=object,
            ),
            "snapshot": versions.map(lambda v: v.get("snapshot")),
            "content_id": decisions["chosen"]
            .where(is_choice)
            .map(lambda v: v if isinstance(v, str) else None),
            "propensity": pd.to_numeric(decisions["propensity"], errors="coerce"),
            "candidates": decisions["candidates"],
        }
    )
