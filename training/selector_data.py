"""Training tables for content selectors, from logged campaigns.

One row per logged decision: a send's ``email_sent`` row for one slot (subject,
offer …) with its ``content_id``, ``decision_id`` and logging ``propensity``,
joined with what followed — opens, clicks and purchases carrying the send's
decision id (at any time after it), or else of the same customer and campaign
within the attribution window — and with the customer's features *as of the send*
(point in time: behaviour and the ``attr_*`` attributes of the customer record),
crossed with the content's own features.

Rewards per slot are settings (``selectors.subject_reward``, ``offer_reward``): a
subject line is judged by the click by default (opens are inflated by mail-privacy
proxies); an offer by conversion when the log holds enough conversions to learn
from, else by the click (``training.selector_job.resolve_reward``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pandas as pd

from features.errors import InputError
from features.settings import ATTRIBUTION_WINDOW_HOURS, MARGIN_RATE
from models.selector import ALL_CUSTOMER_FEATURES

REWARDS = ("open", "click", "conversion", "margin")
DEFAULT_REWARD = {"subject": "click", "offer": "conversion"}
#: The table column of each reward.
REWARD_COLUMNS = {
    "open": "opened",
    "click": "clicked",
    "conversion": "converted",
    "margin": "margin",
}


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
    window: timedelta = timedelta(hours=ATTRIBUTION_WINDOW_HOURS),
    margins: dict[str, float] | None = None,
    margin_rate: float = MARGIN_RATE,
    sends_by_decision: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Add ``opened``, ``clicked``, ``converted``, ``revenue``, ``margin``, ``open_event``
    and ``click_ts`` per decision.

    An outcome (open, click, purchase) carrying the ``decision_id`` of a logged send —
    of any slot: the decisions of one send share its outcomes — belongs to that send
    whenever it happens after it. An outcome without a known decision id belongs to
    the send of the same customer and campaign when it happens within ``window``
    after it. ``open_event`` is true when an ``email_open`` event was attributed
    (``opened`` also counts clicks and purchases: a click implies an open);
    ``click_ts`` is the first attributed click (NaT: none). ``margin`` is revenue ×
    ``margin_rate`` minus the offer's cost (``margins`` maps content id to cost).
    ``sends_by_decision`` (``decision_id``, ``customer_id``, ``campaign_id``) names
    the send of decision ids known beside the log's ``email_sent`` rows (the
    service's decision log).
    """
    if window <= timedelta(0):
        raise InputError("attribution_window", window, "must be a positive duration")
    keys = ["customer_id", "campaign_id"]
    sends = decisions[keys + ["ts"]].drop_duplicates(keys).rename(columns={"ts": "sent_ts"})
    outcome_types = ("email_open", "email_click", "purchase")
    if "decision_id" not in events.columns:  # a log that never carries decision ids
        events = events.assign(decision_id=None)
    outcomes = events[events["event_type"].isin(outcome_types)]
    # Every logged send's decision id (any slot) names its (customer, campaign).
    sent = events[(events["event_type"] == "email_sent") & events["decision_id"].notna()]
    known_sends = [sent[["decision_id", *keys]]]
    if sends_by_decision is not None:  # named by the caller: wins over the log's rows
        known_sends.insert(0, sends_by_decision[["decision_id", *keys]])
    by_decision = (
        pd.concat(known_sends, ignore_index=True)
        .dropna(subset=keys)
        .drop_duplicates("decision_id")
        .rename(columns={"customer_id": "_customer", "campaign_id": "_campaign"})
    )
    outcomes = outcomes.merge(by_decision, on="decision_id", how="left")
    known = outcomes["_customer"].notna().to_numpy()
    outcomes = outcomes.assign(
        customer_id=outcomes["customer_id"].where(~known, outcomes["_customer"]),
        campaign_id=outcomes["campaign_id"].where(~known, outcomes["_campaign"]),
        _by_decision=known,
    ).dropna(subset=keys)
    joined = outcomes.merge(sends, on=keys, how="inner")
    after = joined["ts"] >= joined["sent_ts"]
    in_window = joined["ts"] <= joined["sent_ts"] + window
    joined = joined[after & (joined["_by_decision"] | in_window)]
    value = joined["price"].fillna(0.0) * joined["quantity"].fillna(1.0)
    is_click = joined["event_type"].eq("email_click")
    joined = joined.assign(
        opened=joined["event_type"].eq("email_open"),
        clicked=is_click,
        converted=joined["event_type"].eq("purchase"),
        revenue=value.where(joined["event_type"].eq("purchase"), 0.0),
        click_ts=joined["ts"].where(is_click),
    )
    per_send = joined.groupby(keys).agg(
        opened=("opened", "max"),
        clicked=("clicked", "max"),
        converted=("converted", "max"),
        revenue=("revenue", "sum"),
        click_ts=("click_ts", "min"),
    )
    out = decisions.join(per_send, on=keys)
    for column in ("opened", "clicked", "converted"):
        out[column] = out[column].astype("boolean").fillna(False).astype(bool)
    out["revenue"] = out["revenue"].fillna(0.0)
    out["click_ts"] = pd.to_datetime(out["click_ts"], utc=True)
    out["open_event"] = out["opened"]
    # A click implies an open even when the open pixel was blocked.
    out["opened"] = out["opened"] | out["clicked"] | out["converted"]
    cost = out["content_id"].map(margins or {}).fillna(0.0)
    out["margin"] = np.where(out["converted"], out["revenue"] * margin_rate - cost, 0.0)
    return out


def reward_column(table: pd.DataFrame, reward: str) -> np.ndarray:
    """The reward of each row: ``open``, ``click``, ``conversion`` or ``margin``."""
    if reward not in REWARDS:
        raise InputError("reward", reward, f"expected one of {REWARDS}")
    return table[REWARD_COLUMNS[reward]].to_numpy(dtype=float)


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
    columns = [*(columns or ALL_CUSTOMER_FEATURES), "personalised"]
    # One snapshot per campaign wave, as of the wave's first send: earlier than
    # every send of the wave, so no feature sees a send's own aftermath.
    wave_start = table.groupby("campaign_id")["ts"].transform("min")
    parts = []
    for ts, rows in table.groupby(wave_start, sort=True):
        features = features_at(pd.Timestamp(ts))
        wanted = [*columns, *(c for c in features.columns if str(c).startswith("attr_"))]
        keep = ["customer_id", *dict.fromkeys(c for c in wanted if c in features.columns)]
        parts.append(rows.merge(features[keep], on="customer_id", how="left"))
    if not parts:
        return table.assign(**{c: pd.Series(dtype=float) for c in columns})
    return pd.concat(parts, ignore_index=True)


def with_response_history(table: pd.DataFrame, candidates: list[str]) -> pd.DataFrame:
    """Add, per candidate c, the customer's earlier sends of c and the clicks on them.

    ``prior_sends_<c>`` counts the customer's sends of c strictly before the row's
    own send; ``prior_clicks_<c>`` counts those earlier sends of c whose first click
    (``click_ts``) also came strictly before it — a click that arrives after the
    current send was not known when it was decided. So a row never sees its own
    outcome nor a later one. Past responses are the strongest signal of which variant
    works for whom. Vectorised: one sorted stream of sends and click arrivals per
    customer, cumulative counts per candidate.
    """
    n = len(table)
    content = table["content_id"].astype(str).to_numpy()
    onehot = np.stack([(content == c) for c in candidates], 1).astype(float)
    sent_ts = pd.to_datetime(table["ts"], utc=True)
    if "click_ts" in table.columns:
        click_ts = pd.to_datetime(table["click_ts"], utc=True)
    else:  # no click times: a click counts from just after its own send
        click_ts = sent_ts.where(table["clicked"].astype(bool))
    clicked = click_ts.notna().to_numpy()
    # Events: each send (kind 0: reads the counts before it, then adds its send) and
    # each first click (kind 1: adds a click). At equal times a send reads first.
    people = table["customer_id"].astype(str).to_numpy()
    stamps = np.concatenate([_micros(sent_ts), _micros(click_ts[clicked])])
    customers = np.concatenate([people, people[clicked]])
    kind = np.concatenate([np.zeros(n, dtype=np.int8), np.ones(int(clicked.sum()), dtype=np.int8)])
    row = np.concatenate([np.arange(n), np.flatnonzero(clicked)])
    order = np.lexsort((kind, stamps, customers))
    send_add = np.where((kind == 0)[:, None], onehot[row], 0.0)[order]
    click_add = np.where((kind == 1)[:, None], onehot[row], 0.0)[order]
    groups = customers[order]
    out = table.copy()
    for name, added in (("prior_sends", send_add), ("prior_clicks", click_add)):
        running = pd.DataFrame(added).groupby(groups).cumsum().to_numpy() - added
        reads = kind[order] == 0
        values = np.empty((n, len(candidates)))
        values[row[order][reads]] = running[reads]
        for j, candidate in enumerate(candidates):
            out[f"{name}_{candidate}"] = values[:, j]
    return out


def _micros(stamps: pd.Series) -> np.ndarray:
    """UTC epoch microseconds of a timestamp column (no missing values)."""
    naive = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return naive.astype("datetime64[us]").to_numpy().astype(np.int64)
