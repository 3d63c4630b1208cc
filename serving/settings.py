"""The settings the service owns (``[serving]``) and the ones its process reads.

The service runs in processes of its own, started by ``tailor serve``, which has
already checked the whole settings file (``cli.settings.Settings``); a service
process reads the home, ``[features]``, ``[serving]`` and the attribution window of
``[selectors]`` (``ServiceSettings``) and passes over the sections of training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import SettingsConfigDict

from features.settings import AttributionSettings, TailorSettings

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
            "Plaintext API key → scopes (decide, ingest, admin), sent as `Authorization: "
            "Bearer <key>`: for tests and development, beside the hashed keys of "
            "`keys_file` (`tailor keys add`)."
        ),
    )
    keys_file: Path | None = Field(
        None,
        description=(
            "The API key store (JSON: ids, names, scopes and SHA-256 digests, never a "
            "key), written by `tailor keys`; none: TAILOR_HOME/serving/keys.json. When "
            "neither it nor `api_keys` holds a key, `tailor serve` adds one admin key "
            "and prints it once."
        ),
    )
    shutdown_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description=(
            "After SIGTERM or SIGINT, how long `tailor serve` lets the service finish "
            "the requests in flight before it kills the service's processes."
        ),
    )
    rules_file: Path | None = Field(
        None,
        description=(
            "YAML file of if-then rules and default content; none: the file packaged "
            "with Tailor (serving/defaults/rules.yaml), which names no content."
        ),
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
    challenger_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description=(
            "Share of customers (a stable hash of the id, apart from the holdout's) served "
            "by the models with the registry alias 'challenger' where one is set — a "
            "canary; their decisions log its versions (and arm 'challenger'), so "
            "`tailor ab-report --by version` compares it with the champion."
        ),
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
    max_body_bytes: int = Field(
        4 << 20, ge=1024, description="Largest request body accepted (413 above)."
    )
    rate_limit: float | None = Field(
        None,
        gt=0,
        description=(
            "Requests a second per API key, counted across the service's workers (token "
            "bucket; 429 with Retry-After above it); none: unlimited."
        ),
    )
    rate_burst: float = Field(
        50.0, ge=1, description="Requests a key may send at once above its rate limit."
    )

    @field_validator("api_keys")
    @classmethod
    def _keys_not_blank(cls, keys: dict[str, list[str]]) -> dict[str, list[str]]:
        for key in keys:
            if len(key) < 8:
                raise ValueError(f"API key {key[:2]!r}… is shorter than 8 characters")
        return keys


class ServiceSettings(TailorSettings):
    """What the decision service reads: the home, ``[features]``, ``[serving]`` and
    ``[selectors].attribution_window_hours``; the other sections are training's."""

    # The prefix, the nesting and frozen come from TailorSettings; the sections
    # training owns are passed over.
    model_config = SettingsConfigDict(extra="ignore")

    serving: ServingConfig = Field(
        default_factory=ServingConfig, description="Decision service settings."
    )
    selectors: AttributionSettings = Field(
        default_factory=AttributionSettings,
        description="Selector settings (the service reads the attribution window).",
    )

    @property
    def keys_file(self) -> Path:
        """The API key store: ``serving.keys_file``, else ``home/serving/keys.json``."""
        return self.serving.keys_file or self.home / "serving" / "keys.json"
