"""What a snapshot is: the :class:`Snapshot` of its tables, the format version of
its folder, and the customer table's columns (consent, nullable, behavioural)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.data.contracts import EVENT_TYPES
from features.identity.resolution import Identity
from features.settings import FeatureConfig

SNAPSHOT_FORMAT = 1

# Customer columns that may be null for a personalised customer, and why.
NULLABLE_CUSTOMER_FEATURES = {
    "country": "not given",
    "signup_ts": "not given",
    "timezone": "not given",
    "first_event_ts": "no event before as_of",
    "last_event_ts": "no event before as_of",
    "days_since_last_event": "no event before as_of",
    "first_purchase_ts": "never purchased",
    "last_purchase_ts": "never purchased",
    "recency_days": "never purchased",
    "aov": "never purchased",
    "aov_percentile": "never purchased",
    "purchase_gap_median_days": "fewer than two orders",
    "email_open_rate_90d": "no email sent in 90 days",
    "email_click_rate_90d": "no email sent in 90 days",
    "viewed_price_index_90d": "no product view of a priced, categorised item in 90 days",
    "purchased_price_index": "never purchased a priced, categorised item",
    "discount_purchase_share": "never purchased a priced, catalogued item at a known price",
    "top_category": "no interaction with a catalogued item",
    "top_category_affinity": "no interaction with a catalogued item",
    "preferred_send_hour_local": "timezone unknown",
    "consent_updated_ts": "not given",
    "consent_email_ts": "the record's consent, without a consent time",
    "consent_personalization_ts": "the record's consent, without a consent time",
}


@dataclass
class Snapshot:
    """Every table of one feature snapshot.

    Attributes
    ----------
    as_of : datetime
        UTC; only events strictly before it were read.
    customers : pandas.DataFrame
        One row per canonical customer.
    items : pandas.DataFrame
        One row per item (catalog or seen in events).
    category_affinity : pandas.DataFrame
        ``customer_id, category, affinity, rank``: decayed, weighted share.
    interactions : scipy.sparse.csr_matrix of float32, shape (n_users, n_items)
        Event-weighted, time-decayed interaction strength.
    user_ids, item_ids : numpy.ndarray of str
        Row and column ids of ``interactions``.
    segments : pandas.DataFrame
        ``customer_id, segment``: one row per membership.
    triggers : pandas.DataFrame
        ``customer_id, trigger, item_id, fired_at, expires_at``: active at ``as_of``.
    identity : Identity
        The id mapping and the recorded conflicts.
    manifest : dict
        Row counts, feature lists, configuration and lineage.
    """

    as_of: datetime
    customers: pd.DataFrame
    items: pd.DataFrame
    category_affinity: pd.DataFrame
    interactions: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    segments: pd.DataFrame
    triggers: pd.DataFrame
    identity: Identity
    manifest: dict[str, Any] = field(default_factory=dict)


def behaviour_feature_names(config: FeatureConfig) -> list[str]:
    """Names of the customer features a segment may use (the behavioural profile)."""
    counts = [f"{t}_{w}d" for t in EVENT_TYPES for w in config.windows_days]
    return [
        "country",
        "signup_ts",
        "timezone",
        "first_event_ts",
        "last_event_ts",
        "days_since_last_event",
        "first_purchase_ts",
        "last_purchase_ts",
        "recency_days",
        "frequency",
        "orders",
        "monetary",
        "monetary_90d",
        "aov",
        "aov_percentile",
        "purchase_gap_median_days",
        "viewed_price_index_90d",
        "purchased_price_index",
        "discount_purchase_share",
        *counts,
        "email_open_rate_90d",
        "email_click_rate_90d",
        "engagement_score",
        "top_category",
        "top_category_affinity",
        "lifecycle",
        "preferred_send_hour_utc",
        "preferred_send_hour_local",
    ]


CONSENT_COLUMNS = [
    "customer_id",
    "personalised",
    "consent_email",
    "consent_personalization",
    "consent_updated_ts",
    "consent_email_ts",
    "consent_personalization_ts",
    "unsubscribed",
    "hard_bounced",
    "complained",
    "sendable",
]
"""The consent and deliverability state of every customer, profiled or not
(:func:`features.snapshot.people._apply_consent_events`)."""
