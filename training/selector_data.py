"""Training tables for content selectors, from logged campaigns.

One row per logged decision: a send's ``email_sent`` row for one slot (subject,
offer …) with its ``content_id``, ``decision_id`` and logging ``propensity``,
joined with what followed — opens, clicks and purchases of the same customer and
campaign within the attribution window (or carrying the decision id) — and with
the customer's features *as of the send* (point in time), crossed with the
content's own features.

Rewards per slot (configurable): a subject line is judged by the click (opens are
inflated by mail-privacy proxies), an offer by conversion among opened emails (an
offer is only seen when the email is opened).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pandas as pd

from features.errors import InputError
from models.selector import ALL_CUSTOMER_FEATURES

REWARDS = ("open", "click", "conversion", "margin")
DEFAULT_REWARD = {"subject": "click", "offer": "conversion"}


def logged_decisions(events: pd.DataFrame, *, slot: str) -> pd.DataFrame:
    """The ``email_sent`` rows of one slot: customer, campaign, time, content, decision."""
    sent = events[(events["event_type"] == "email_sent") & (events["slot"] == slot)]
    columns = ["customer_id", "campaign_id", "ts", "content_id", "decision_id", "propensity"]
    frame = sent[columns].dropna(subset=["customer_id", "campaign_id", "content_id"])
    bad = ~frame["propensity"].between(0, 1, inclusive="right")
    if bad.any():
        raise InputError(
            "propensity",
            frame.loc[bad, "propensity"].head(3).tolist(),
            f"{int(bad.sum())} logged {slot} decisions without a propensity in (0, 1]",
        )
    return frame.reset_index(drop=True)


def attach_outcomes(
    decisions: pd.DataFrame,
    events: pd.DataFrame,
    *,
    window: timedelta = timedelta(hours=72),
    margins: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Add ``opened``, ``clicked``, ``converted``, ``revenue`` and ``margin`` per decision.

    An outcome belongs to a send when it has the same customer and campaign and
    happens within ``window`` after it (a click or purchase carrying the decision's
    id counts as well). ``margin`` is revenue × margin rate minus the offer's cost
    (``margins`` maps content id to cost; none given: revenue).
    """
    keys = ["customer_id", "campaign_id"]
    sends = decisions[keys + ["ts"]].drop_duplicates(keys).rename(columns={"ts": "sent_ts"})
    outcome_types = ("email_open", "email_click", "purchase")
    outcomes = events[events["event_type"].isin(outcome_types)].dropna(subset=["campaign_id"])
    joined = outcomes.merge(sends, on=keys, how="inner")
    in_window = (joined["ts"] >= joined["sent_ts"]) & (joined["ts"] <= joined["sent_ts"] + window)
    joined = joined[in_window]
    value = joined["price"].fillna(0.0) * joined["quantity"].fillna(1.0)
    joined = joined.assign(
        opened=joined["event_type"].eq("email_open"),
        clicked=joined["event_type"].eq("email_click"),
        converted=joined["event_type"].eq("purchase"),
        revenue=value.where(joined["event_type"].eq("purchase"), 0.0),
    )
    per_send = joined.groupby(keys).agg(
        opened=("opened", "max"),
        clicked=("clicked", "max"),
        converted=("converted", "max"),
        revenue=("revenue", "sum"),
    )
    out = decisions.join(per_send, on=keys)
    for column in ("opened", "clicked", "converted"):
        out[column] = out[column].fillna(False).astype(bool)
    out["revenue"] = out["revenue"].fillna(0.0)
    # A click implies an open even when the open pixel was blocked.
    out["opened"] = out["opened"] | out["clicked"] | out["converted"]
    cost = out["content_id"].map(margins or {}).fillna(0.0)
    out["margin"] = np.where(out["converted"], out["revenue"] * 0.4 - cost, 0.0)
    return out


def reward_column(table: pd.DataFrame, reward: str) -> np.ndarray:
    """The reward of each row: ``open``, ``click``, ``conversion`` or ``margin``."""
    if reward not in REWARDS:
        raise InputError("reward", reward, f"expected one of {REWARDS}")
    column = {"open": "opened", "click": "clicked", "conversion": "converted"}.get(reward, reward)
    return table[column].to_numpy(dtype=float)


def with_customer_features(
    table: pd.DataFrame,
    features_at: Callable[[pd.Timestamp], pd.DataFrame],
    *,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """Join each decision with the customer's features as of its send time.

    ``features_at(ts)`` returns one row per customer (``customer_id`` + features)
    computed from events strictly before ``ts`` — a feature snapshot. It is called
    once per campaign, as of the campaign's first send, so the cost is one snapshot
    per campaign, not per row.
    """
    columns = columns or ALL_CUSTOMER_FEATURES
    # One snapshot per campaign wave, as of the wave's first send: earlier than
    # every send of the wave, so no feature sees a send's own aftermath.
    wave_start = table.groupby("campaign_id")["ts"].transform("min")
    parts = []
    for ts, rows in table.groupby(wave_start, sort=True):
        features = features_at(pd.Timestamp(ts))
        keep = ["customer_id", *[c for c in columns if c in features.columns]]
        parts.append(rows.merge(features[keep], on="customer_id", how="left"))
    if not parts:
        return table.assign(**{c: pd.Series(dtype=float) for c in columns})
    return pd.concat(parts, ignore_index=True)


def with_response_history(table: pd.DataFrame, candidates: list[str]) -> pd.DataFrame:
    """Add, per candidate c, the customer's earlier sends of c and clicks after them.

    ``prior_sends_<c>`` and ``prior_clicks_<c>`` count only decisions strictly
    before the row's own send (a cumulative sum shifted by one), so a row never
    sees its own outcome. Past responses are the strongest signal of which
    variant works for whom.
    """
    order = table.sort_values(["customer_id", "ts"], kind="stable").index
    ordered = table.loc[order]
    onehot = np.stack(
        [(ordered["content_id"].astype(str) == c).to_numpy(dtype=float) for c in candidates], 1
    )
    clicks = onehot * ordered["clicked"].to_numpy(dtype=float)[:, None]
    groups = ordered["customer_id"].to_numpy()
    out = table.copy()
    for name, values in (("prior_sends", onehot), ("prior_clicks", clicks)):
        running = pd.DataFrame(values, index=order).groupby(groups).cumsum().to_numpy() - values
        for j, candidate in enumerate(candidates):
            out.loc[order, f"{name}_{candidate}"] = running[:, j]
    return out
