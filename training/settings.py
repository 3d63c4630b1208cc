"""The settings training owns: ``[recommender]``, ``[selectors]`` and ``[retrain]``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.settings import MARGIN_RATE, AttributionSettings


class RecommenderSettings(BaseModel):
    """Settings of ``tailor train recommender`` (each also a command-line flag)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label_events: Literal["auto"] | tuple[str, ...] = Field(
        "auto",
        description=(
            "Event types that count as relevant in training and evaluation. 'auto': "
            "carts, checkouts and purchases when the log holds any, else every product "
            "event (a views-only or ratings log is trained and judged on views)."
        ),
    )
    mode: Literal["all", "new"] = Field(
        "all",
        description="'all': seen-but-unbought items may be recommended; 'new': never.",
    )
    protocol: Literal["per_user", "global"] = Field(
        "per_user", description="Temporal split: each user's last share, or one cut-off."
    )
    test_share: float = Field(0.2, gt=0, lt=1, description="Share of interactions held out.")
    half_life_days: float = Field(
        14.0, gt=0, description="Half-life of an interaction's weight, in days."
    )
    decay: Literal["last_activity", "as_of", "none"] = Field(
        "last_activity",
        description=(
            "Where an interaction's age is measured from: the customer's own last "
            "activity (a customer inactive for months keeps the shape of their history), "
            "the snapshot's as_of, or no decay."
        ),
    )
    tune_budget: int = Field(8, ge=0, description="ALS configurations tried (0: no tuning).")
    seed: int = Field(0, description="Seed of tuning, factorisation and the reranker.")
    floor: float | None = Field(
        None,
        description=(
            "NDCG@10 a candidate needs to become champion. None: it must beat the "
            "popularity baseline on the same split."
        ),
    )

    @field_validator("label_events", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str) and value != "auto":
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("label_events")
    @classmethod
    def _product_events(
        cls, value: Literal["auto"] | tuple[str, ...]
    ) -> Literal["auto"] | tuple[str, ...]:
        if value == "auto":
            return value
        allowed = ("product_view", "add_to_wishlist", "add_to_cart", "checkout", "purchase")
        unknown = [v for v in value if v not in allowed]
        if unknown or not value:
            raise ValueError(f"{list(value)}: expected 'auto' or some of {allowed}")
        return value


SelectorReward = Literal["auto", "open", "click", "conversion", "margin"]


class SelectorConfig(AttributionSettings):
    """Settings of ``tailor train selector`` (each also a command-line option); the
    attribution window is shared with the service (``AttributionSettings``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    offer_reward: SelectorReward = Field(
        "auto",
        description=(
            "What an offer decision is judged by. auto: conversion when the learning rows "
            "hold at least min_positive_rewards conversions, else click (a rare outcome "
            "can be neither learned nor evaluated); the run says which."
        ),
    )
    subject_reward: SelectorReward = Field(
        "click",
        description="What a subject line is judged by (auto: as for offers).",
    )
    min_positive_rewards: int = Field(
        300,
        ge=1,
        description=(
            "Fewest positive outcomes (conversions, clicks) a reward needs in the learning "
            "rows for reward=auto to pick it."
        ),
    )
    margin_rate: float = Field(
        MARGIN_RATE,
        gt=0,
        le=1,
        description=(
            "Gross margin on revenue: the margin reward of a conversion is revenue × this "
            "minus the offer's cost (its content attribute cost)."
        ),
    )
    offer_population: Literal["auto", "opened", "all"] = Field(
        "auto",
        description=(
            "Offer decisions learned from: opened (an unopened e-mail shows no offer), all "
            "sends, or auto: opened when the log records opens (email_open events), else all."
        ),
    )
    split: Literal["auto", "campaign", "customer"] = Field(
        "auto",
        description=(
            "Hold-out: the later campaigns, or a seeded split of customers into folds with "
            "cross-fitted estimates; auto takes the later campaigns when there are at least "
            "min_holdout_campaigns of them with min_holdout_rows rows, else customers."
        ),
    )
    holdout_share: float = Field(
        0.4, gt=0, lt=1, description="Share of the campaigns (by start time) held out."
    )
    min_holdout_campaigns: int = Field(
        2, ge=1, description="Fewest held-out campaigns for split=auto to hold out campaigns."
    )
    min_holdout_rows: int = Field(
        1000, ge=1, description="Fewest held-out decisions for split=auto to hold out campaigns."
    )
    folds: int = Field(5, ge=2, le=20, description="Customer folds of the cross-fitted split.")
    policy: Literal["epsilon_greedy", "softmax"] = Field(
        "epsilon_greedy", description="How a learned model's scores become a choice."
    )
    epsilon: float = Field(
        0.02,
        ge=0,
        le=1,
        description=(
            "Exploration share of the served champion, learned or constant: drawn uniformly "
            "over the eligible variants and logged with its exact propensity, so later logs "
            "can evaluate every variant. Each point of it costs about a point of the gap "
            "between the best variant and the average one."
        ),
    )
    temperature: float = Field(
        0.01, gt=0, description="For policy=softmax, in units of the predicted reward."
    )
    seed: int = Field(0, description="Seed of the customer folds, bootstraps and models.")


class RetrainSettings(BaseModel):
    """Settings of ``tailor retrain``, the one command a scheduler calls."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inbox: Path | None = Field(
        None,
        description=(
            "Folder of new data files, one subfolder per table: customers/, catalog/, "
            "content/, events/ (CSV, CSV.gz, Parquet or JSONL in the contract's columns, "
            "or a source's own layout, see `sources`). A file is ingested once (by "
            "content hash); none: only events posted to the service count as new data."
        ),
    )
    sources: dict[str, str] = Field(
        default_factory=dict,
        description="Table → source adapter of its inbox files (default: contract).",
    )
    service_url: str | None = Field(
        None,
        description=(
            "The running service to reload after a promotion (e.g. http://127.0.0.1:3000); "
            "none: the service picks new champions up at its next registry poll."
        ),
    )
    service_key: str | None = Field(
        None,
        description="An admin-scope API key for the reload call (TAILOR_RETRAIN__SERVICE_KEY).",
    )
    slots: tuple[str, ...] = Field(
        ("subject", "offer"),
        description="Selector slots retrained, when the store holds decisions logged for them.",
    )
