"""One settings object for every entry point: defaults, ``TAILOR_*`` variables, ``tailor.toml``.

Built once by an entry point (the CLI, the service) and passed down; nothing else
reads the environment.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class TriggerConfig(BaseModel):
    """Thresholds of the behavioural triggers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cart_abandon_hours: float = Field(
        24, gt=0, description="A cart with no purchase of its item this long after fires."
    )
    browse_abandon_hours: float = Field(
        48, gt=0, description="Hours after the repeat view with no cart before browse fires."
    )
    browse_min_views: int = Field(2, ge=1, description="Views of one item that make a browse.")
    browse_lookback_days: float = Field(
        7, gt=0, description="Views older than this do not count towards a browse."
    )
    lapsing_gap_multiple: float = Field(
        2.0, gt=0, description="Lapsing fires after this many median purchase gaps."
    )
    back_in_stock_lookback_days: float = Field(
        30, gt=0, description="A view this recent before a restock makes the customer eligible."
    )
    ttl_hours: dict[str, float] = Field(
        default_factory=lambda: {
            "cart_abandoned": 72.0,
            "browse_abandoned": 72.0,
            "lapsing": 720.0,
            "back_in_stock": 168.0,
        },
        description="How long each trigger stays active after it fires.",
    )


class FeatureConfig(BaseModel):
    """Settings of the feature job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    windows_days: tuple[int, ...] = Field(
        (1, 2, 7, 30, 90), description="Windows [as_of - N days, as_of) of the event counts."
    )
    interaction_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "product_view": 1.0,
            "add_to_wishlist": 2.0,
            "add_to_cart": 3.0,
            "checkout": 3.0,
            "purchase": 5.0,
        },
        description="Weight of each event type in the interaction matrix (view < cart < buy).",
    )
    half_life_days: float = Field(
        14.0, gt=0, description="Exponential time decay of interactions and affinities."
    )
    assume_consent_when_unknown: bool = Field(
        False,
        description=(
            "Profile customers who appear only in events (no customer record). Off: "
            "no recorded consent means no personalisation."
        ),
    )

    @field_validator("interaction_weights")
    @classmethod
    def _known_non_negative(cls, weights: dict[str, float]) -> dict[str, float]:
        from features.contracts import EVENT_TYPES

        for event_type, weight in weights.items():
            if event_type not in EVENT_TYPES or event_type == "stock_change":
                raise ValueError(f"{event_type!r} is not a customer event type")
            if weight < 0:
                raise ValueError(f"weight of {event_type} is {weight}; must be >= 0")
        return weights

    segments_file: Path = Field(
        Path("config/segments.yaml"), description="YAML file declaring the segments."
    )
    triggers: TriggerConfig = Field(default_factory=TriggerConfig)


SelectorReward = Literal["auto", "open", "click", "conversion", "margin"]


class SelectorConfig(BaseModel):
    """Settings of ``tailor train selector`` (each also a command-line option)."""

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
    offer_population: Literal["auto", "opened", "all"] = Field(
        "auto",
        description=(
            "Offer decisions learned from: opened (an unopened e-mail shows no offer), all "
            "sends, or auto: opened when the log records opens (email_open events), else all."
        ),
    )
    attribution_window_hours: float = Field(
        72.0,
        gt=0,
        description=(
            "An outcome without a known decision id belongs to a send of the same customer "
            "and campaign this long after it; outcomes carrying the send's decision id count "
            "at any time after the send."
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


Scope = Literal["decide", "ingest", "admin"]


class ServingConfig(BaseModel):
    """Settings of the decision service (``tailor serve``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field("127.0.0.1", description="Address the service binds.")
    port: int = Field(3000, ge=1, le=65535, description="Port the service binds.")
    workers: int = Field(1, ge=1, le=64, description="Server processes.")
    api_keys: dict[str, list[Scope]] = Field(
        default_factory=dict,
        description=(
            "API key → scopes (decide, ingest, admin), sent as `Authorization: Bearer "
            "<key>`. Empty: `tailor serve` generates one admin key and prints it."
        ),
    )
    rules_file: Path = Field(
        Path("config/rules.yaml"), description="YAML file of if-then rules and defaults."
    )
    batch_limit: int = Field(
        10_000, ge=1, description="Most recipients per /recommend_batch call (413 above)."
    )
    max_events_per_call: int = Field(
        10_000, ge=1, description="Most events per /events call (413 above)."
    )
    deadline_ms: float = Field(
        50.0, gt=0, description="Past this, a single decision answers with its fallback."
    )
    batch_deadline_ms: float = Field(
        30_000.0, gt=0, description="Deadline of a whole /recommend_batch call."
    )
    holdout_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of customers (stable hash of the id) always given the default.",
    )
    fallback_epsilon: float = Field(
        0.1,
        ge=0,
        le=1,
        description=(
            "Without a selector, the share of /choose decisions drawn uniformly over the "
            "candidates instead of the default content (logged propensities make the "
            "log usable for training the first selector)."
        ),
    )
    registry_poll_seconds: float = Field(
        5.0, gt=0, description="How often each worker checks the registry for new champions."
    )
    recent_event_days: float = Field(
        14.0, gt=0, description="Days of events before the snapshot kept online for triggers."
    )
    default_n: int = Field(10, ge=1, le=500, description="Items per recommendation by default.")

    @field_validator("api_keys")
    @classmethod
    def _keys_not_blank(cls, keys: dict[str, list[str]]) -> dict[str, list[str]]:
        for key in keys:
            if len(key) < 8:
                raise ValueError(f"API key {key[:2]!r}… is shorter than 8 characters")
        return keys


class Settings(BaseSettings):
    """Validated configuration; a bad value fails at start-up naming the field."""

    model_config = SettingsConfigDict(
        env_prefix="TAILOR_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        toml_file="tailor.toml",
    )

    home: Path = Field(
        Path(".tailor"),
        description="Folder holding every embedded store (events, features, MLflow, logs).",
    )
    ingest_chunk_rows: int = Field(
        250_000,
        ge=1_000,
        description="Rows read, validated and written per ingest chunk (bounds memory).",
    )
    max_future_skew: timedelta = Field(
        timedelta(days=1),
        description="Events stamped later than now + this are quarantined as clock errors.",
    )
    phone_region: str = Field(
        "US",
        min_length=2,
        max_length=2,
        description="Default region for phone numbers written without a country code.",
    )

    features: FeatureConfig = Field(
        default_factory=FeatureConfig, description="Feature job settings."
    )
    serving: ServingConfig = Field(
        default_factory=ServingConfig, description="Decision service settings."
    )
    selectors: SelectorConfig = Field(
        default_factory=SelectorConfig, description="Selector training settings."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments win, then the environment, then tailor.toml.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def store_dir(self) -> Path:
        """Root of the embedded event store."""
        return self.home / "store"

    @property
    def online_dir(self) -> Path:
        """Root of the online store, the online event log and the decision log."""
        return self.home / "online"

    @property
    def features_dir(self) -> Path:
        """Root of the feature snapshots (``as_of=…`` folders)."""
        return self.home / "features"
