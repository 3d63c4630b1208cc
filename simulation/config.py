"""The simulated store's configuration: sizes, shares and the seed."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from features.settings import ATTRIBUTION_WINDOW_HOURS

__all__ = ["SimulationConfig"]


class SimulationConfig(BaseModel):
    """Everything that shapes a simulated store; the seed is the only randomness."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customers: int = Field(
        2000, ge=1, le=5_000_000, description="customer records, duplicates included"
    )
    days: int = Field(30, ge=1, le=3660, description="length of the simulated window, days")
    seed: int = Field(0, ge=0, description="seed of the only random generator")
    start: AwareDatetime = Field(
        datetime(2026, 10, 1, tzinfo=UTC), description="start of the window (UTC)"
    )
    n_items: int = Field(500, ge=1, le=1_000_000, description="catalog size")
    n_categories: int = Field(
        12, ge=1, le=100, description="product categories (readable names up to 16)"
    )
    n_brands: int = Field(30, ge=1, le=60, description="distinct brands in the catalog")
    malformed_share: float = Field(
        0.002, ge=0.0, le=1.0, description="malformed rows added, as a share of clean events"
    )
    no_personalization_consent_share: float = Field(
        0.1, ge=0.0, le=1.0, description="share of records without consent_personalization"
    )
    no_email_consent_share: float = Field(
        0.05, ge=0.0, le=1.0, description="share of records without consent_email"
    )
    duplicate_person_share: float = Field(
        0.03, ge=0.0, le=1.0, description="share of persons with a second customer record"
    )
    name_typo_share: float = Field(
        0.3, ge=0.0, le=1.0, description="share of second records with a one-letter name typo"
    )
    moved_share: float = Field(
        0.2, ge=0.0, le=1.0, description="share of second records at a new address (moved)"
    )
    fuzzy_duplicate_share: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="share of second records with another email and no phone: linkable "
        "only by name, date of birth and address",
    )
    placeholder_email_share: float = Field(
        0.03,
        ge=0.0,
        le=1.0,
        description="share of records whose email is a placeholder (noemail@example.com, ...)",
    )
    household_share: float = Field(
        0.04,
        ge=0.0,
        le=1.0,
        description="share of persons in households of 2-3 (one last name, address, landline)",
    )
    store_phone_share: float = Field(
        0.01, ge=0.0, le=1.0, description="share of records carrying the shop's phone number"
    )
    anonymous_session_share: float = Field(
        0.2, ge=0.0, le=1.0, description="share of sessions that start anonymous (web)"
    )
    anonymous_login_share: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="share of anonymous sessions without a purchase that log in "
        "(sessions with a purchase always log in before checkout)",
    )
    shared_devices: int = Field(
        3, ge=0, description="anonymous ids that log in as two different persons"
    )
    new_subscriber_share: float = Field(
        0.15, ge=0.0, le=1.0, description="share of persons who sign up inside the window"
    )
    lapsing_share: float = Field(
        0.1, ge=0.0, le=1.0, description="share of persons who stop being active mid-window"
    )
    heavy_buyer_share: float = Field(
        0.04, ge=0.0, le=1.0, description="share of persons who visit and buy far more often"
    )
    sessions_per_day: float = Field(
        0.12, gt=0.0, le=50.0, description="mean browse sessions per person per day"
    )
    campaign_every_days: int = Field(4, ge=1, description="days between email campaigns")
    campaign_hour_utc: int = Field(15, ge=0, le=23, description="UTC hour campaigns start")
    attribution_hours: int = Field(
        int(ATTRIBUTION_WINDOW_HOURS),
        ge=1,
        le=24 * 30,
        description="window after a send in which purchases count",
    )
    stock_out_share: float = Field(
        0.06, ge=0.0, le=1.0, description="share of items that go out of stock at some point"
    )

    @field_validator("start")
    @classmethod
    def _utc_whole_seconds(cls, value: datetime) -> datetime:
        return value.astimezone(UTC).replace(microsecond=0)

    @model_validator(mode="after")
    def _items_cover_categories(self) -> SimulationConfig:
        if self.n_items < self.n_categories:
            raise ValueError(
                f"n_items={self.n_items} must be at least n_categories={self.n_categories}"
            )
        return self
