"""Key figures of what was served, over time and by who decided.

From the decisions ⋈ outcomes table (``measurement.outcomes``): per period (a day by
default) and per value of a dimension — the served policy (rule, model, fallback,
consent, holdout), the model version, or the recipient's segment — the recipients
(decisions), open, click and conversion rates and revenue per recipient.
"""

from __future__ import annotations

import pandas as pd

from features.errors import InputError

DIMENSIONS = ("policy", "model_version", "segment")
FIGURES = {
    "open_rate": ("opened", "mean"),
    "click_rate": ("clicked", "mean"),
    "conversion_rate": ("converted", "mean"),
    "revenue_per_recipient": ("revenue", "mean"),
}


def kpis(table: pd.DataFrame, *, by: str | None = None, every: str | None = "1D") -> pd.DataFrame:
    """Decisions, recipients and the four figures per period (``every``; None: the
    whole span) and per value of ``by`` (None: all decisions together).

    ``recipients`` counts sends: the decisions of one e-mail (a customer and a
    campaign: its subject line, its offer) are one recipient; a decision outside a
    campaign is one of its own. The rates are per decision; the decisions of a send
    share its outcome, so they equal the rates per send within a group. A model
    version is shown with its model (``offer selector 3``): versions of different
    models are different things.
    """
    if by is not None and by not in DIMENSIONS:
        raise InputError("by", by, f"expected one of {DIMENSIONS}")
    if by is not None and by not in table.columns:
        raise InputError("by", by, "the decisions carry no such column")
    keys: list[pd.Series] = []
    if every is not None:
        try:
            period = pd.tseries.frequencies.to_offset(every)
        except ValueError:
            raise InputError("every", every, "not a pandas frequency (e.g. 1D, 1W)") from None
        keys.append(table["ts"].dt.floor(period).rename("period"))
    if by is not None:
        values = table[by].astype(object).fillna("–").astype(str)
        if by == "model_version" and "slot" in table.columns:
            model = table["slot"].map(
                lambda s: "recommender" if s == "recommend" else f"{s} selector"
            )
            values = model + " " + values
        keys.append(values.rename(by))
    named = {figure: pd.NamedAgg(column, how) for figure, (column, how) in FIGURES.items()}
    if not keys:  # one group: all decisions
        keys.append(pd.Series("all", index=table.index, name="_all"))
    sends = _send_keys(table)
    out = (
        table.assign(_send=sends)
        .groupby(keys)
        .agg(
            decisions=pd.NamedAgg("decision_id", "size"),
            recipients=pd.NamedAgg("_send", "nunique"),
            **named,
        )
    )
    return out.reset_index().drop(columns=["_all"], errors="ignore")


def _send_keys(table: pd.DataFrame) -> pd.Series:
    """One key per send: customer and campaign, or the decision outside a campaign."""
    if "campaign_id" not in table.columns:
        return table["decision_id"].astype(str)
    campaign = table["campaign_id"]
    by_send = table["customer_id"].astype(str) + "\x1f" + campaign.astype(str)
    return by_send.where(campaign.notna(), "\x1e" + table["decision_id"].astype(str))


def with_segments(table: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """One row per decision and segment of its recipient (``segments``: ``customer_id,
    segment``); a recipient in no segment gets ``(no segment)``."""
    joined = table.merge(segments[["customer_id", "segment"]], on="customer_id", how="left")
    joined["segment"] = joined["segment"].fillna("(no segment)")
    return joined
