"""What decides a recommender training run: its configuration and the events that count.

:class:`RecommenderJobConfig` is logged with every run; :func:`resolve_label_events`
turns its ``label_events`` into the event types a given log is trained and judged on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.errors import InputError
from models.candidates import Decay

PRODUCT_EVENTS = ("product_view", "add_to_wishlist", "add_to_cart", "checkout", "purchase")
"""Event types a recommender learns from (the interaction log's types)."""
INTENT_EVENTS = ("add_to_cart", "checkout", "purchase")
"""Labels of a log that holds them: what a recommendation e-mail is meant to cause."""


def resolve_label_events(
    log: pd.DataFrame, requested: tuple[str, ...] | Literal["auto"] | None
) -> tuple[str, ...] | None:
    """The event types that count as relevant for this log.

    ``"auto"``: the carts, checkouts and purchases the log holds; a log with none
    of them (a ratings or views log) is trained and judged on every product event it
    holds. ``None``: every event. An explicit tuple is checked against the contract.
    """
    if requested is None:
        return None
    if requested != "auto":
        unknown = [t for t in requested if t not in PRODUCT_EVENTS]
        if unknown or not requested:
            raise InputError(
                "label_events", list(requested), f"expected product event types {PRODUCT_EVENTS}"
            )
        return tuple(requested)
    present = set(log["event_type"].astype(str).unique())
    intent = tuple(t for t in INTENT_EVENTS if t in present)
    return intent or tuple(t for t in PRODUCT_EVENTS if t in present)


class RecommenderJobConfig(BaseModel):
    """Everything that decides a recommender training run (logged with it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["new", "all"] = Field(
        "new", description="'new': seen items neither relevant nor recommended; 'all': both."
    )
    protocol: Literal["per_user", "global"] = Field(
        "per_user", description="Temporal split: each user's last share, or one cut-off."
    )
    test_share: float = Field(0.2, gt=0, lt=1, description="Per-user share held out.")
    cutoff: datetime | None = Field(None, description="Global cut-off (protocol 'global').")
    inner_cutoff: datetime | None = Field(
        None, description="Cut-off of the reranker's label period (protocol 'global')."
    )
    label_events: tuple[str, ...] | Literal["auto"] | None = Field(
        "auto",
        description="Event types that count as relevant. 'auto': carts, checkouts and "
        "purchases when the log holds any, else every product event (a views-only log "
        "is trained and judged on views); None: every event.",
    )
    half_life_days: float = Field(14.0, gt=0, description="Decay of interaction strength.")
    decay: Decay = Field(
        "last_activity",
        description="Where an interaction's age is measured from: the user's own last "
        "activity (no history fades to zero), the cut-off ('as_of'), or 'none'.",
    )
    candidates_per_generator: int = Field(50, ge=1, description="Top k from each generator.")
    ks: tuple[int, ...] = Field((10, 20), description="Cut-offs of the reported metrics.")
    als: dict[str, Any] = Field(
        default_factory=lambda: {
            "factors": 64,
            "regularization": 0.05,
            "alpha": 10.0,
            "iterations": 15,
        },
        description="ALS parameters (before tuning).",
    )
    tune_budget: int = Field(8, ge=0, description="ALS configurations tried (0: no tuning).")
    seed: int = Field(0, description="Seed of tuning, ALS, BPR and the reranker.")
    reranker: dict[str, Any] = Field(
        default_factory=lambda: {
            "n_estimators": 300,
            "learning_rate": 0.03,
            "num_leaves": 7,
            "min_child_samples": 200,
        },
        description="LambdaRank parameters: small, well-regularised trees (few users per "
        "store at this stage; deeper trees overfit the label period).",
    )
