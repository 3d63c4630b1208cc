"""The settings of the data layer and the feature jobs, and the base every entry point's
settings build on: defaults, ``TAILOR_*`` variables, a TOML file.

Each package owns the settings of what it configures: this module the home, the row
limits and ``[features]``; ``training.settings`` ``[recommender]`` and
``[selectors]``; ``serving.settings`` ``[serving]``. The command line composes them
all (``cli.settings.Settings``), the service process the ones it reads
(``serving.settings.ServiceSettings``). Settings are built once by an entry point and
passed down; nothing else reads the environment. The TOML settings file is the one
named by ``tailor --config FILE`` or ``TAILOR_CONFIG``; no file is looked for in the
working folder. Relative paths in that file resolve against the file's own folder. The
YAML files of segments and rules default to the ones packaged with ``features`` and
``serving``.
"""

from __future__ import annotations

import tomllib
import types
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from features.data.contracts import RowLimits
from features.errors import InputError

ATTRIBUTION_WINDOW_HOURS = 72.0
"""Default of ``selectors.attribution_window_hours``: how long after a send an outcome
without a decision id counts for it (training, the service's live counters and the
simulated store alike)."""

MARGIN_RATE = 0.4
"""Default of ``selectors.margin_rate``: gross margin on revenue, for the margin reward."""


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


# Values that shop tills, call centres and test scripts type when a customer has none:
# shared by strangers, they must never merge records. Glob patterns ("*" any text)
# over the normalised (trimmed, lower-cased) e-mail.
DEFAULT_PLACEHOLDER_EMAILS: tuple[str, ...] = (
    "noemail@*",
    "no.email@*",
    "no-email@*",
    "no_email@*",
    "nomail@*",
    "none@*",
    "na@*",
    "n/a@*",
    "null@*",
    "unknown@*",
    "test@*",
    "noreply@*",
    "no-reply@*",
    "donotreply@*",
    "do-not-reply@*",
    "email@email.com",
    "a@a.com",
    "x@x.com",
    "abc@abc.com",
)
# Regular expressions (RE2) over the E.164 form: seven equal or counting digits at the end.
DEFAULT_PLACEHOLDER_PHONES: tuple[str, ...] = (
    r"(0{7}|1{7}|2{7}|3{7}|4{7}|5{7}|6{7}|7{7}|8{7}|9{7})$",
    r"(0123456|1234567|2345678|3456789|9876543|8765432)$",
)


class IdentityConfig(BaseModel):
    """Identity resolution: which keys merge customer records, and the guards on them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    placeholder_emails: tuple[str, ...] = Field(
        DEFAULT_PLACEHOLDER_EMAILS,
        description="Glob patterns of e-mails that never merge anybody (placeholders).",
    )
    placeholder_phones: tuple[str, ...] = Field(
        DEFAULT_PLACEHOLDER_PHONES,
        description="Regular expressions over E.164 numbers that never merge anybody.",
    )
    max_records_per_key: int = Field(
        5,
        ge=2,
        description=(
            "Most customer records one e-mail or phone may join; a key shared by more "
            "merges nobody and is reported (a store phone, a shared inbox)."
        ),
    )
    name_check: bool = Field(
        True,
        description=(
            "A key shared by records whose first names differ (a household phone, a "
            "family inbox) merges nobody and is reported; the probabilistic matcher "
            "may still link the records that agree on everything else."
        ),
    )
    gmail_normalisation: bool = Field(
        False,
        description=(
            "Treat j.doe+news@gmail.com as jdoe@gmail.com (dots and +tags at Gmail, "
            "+tags elsewhere)."
        ),
    )
    probabilistic: Literal["auto", "on", "off"] = Field(
        "auto",
        description=(
            "Fellegi-Sunter matching (Splink, trained by EM without labels) over the "
            "fields customer records carry. auto: when the records carry at least two "
            "of name, date of birth, postcode, address, city (and min_records); on: "
            "always, failing when it cannot; off: exact keys only."
        ),
    )
    match_threshold: float = Field(
        0.9, gt=0.0, lt=1.0, description="Match probability above which records link."
    )
    min_records: int = Field(
        1_000,
        ge=2,
        description="Fewest customer records for which auto runs probabilistic matching.",
    )
    max_records_per_person: int = Field(
        20,
        ge=2,
        description=(
            "Most customer records one person may hold; a larger cluster keeps no "
            "probabilistic links, and, if still larger, no links at all (reported)."
        ),
    )
    extra_fields: tuple[str, ...] = Field(
        (),
        description=(
            "Further attributes compared by the probabilistic matcher (exact or one "
            "edit apart), e.g. a loyalty card or national id."
        ),
    )

    @field_validator("extra_fields")
    @classmethod
    def _plain_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not name or not all(ch.isalnum() or ch in "_-. " for ch in name):
                raise ValueError(
                    f"{name!r}: an attribute name of letters, digits, '_', '-', '.' or spaces"
                )
        return names


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
    interaction_decay: Literal["last_activity", "as_of"] = Field(
        "last_activity",
        description=(
            "Where the interaction matrix measures an interaction's age from: the "
            "customer's own last interaction (a long-inactive customer keeps the shape "
            "of their history; exact up to about 1,000 half-lives) or as_of."
        ),
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
        from features.data.contracts import EVENT_TYPES

        for event_type, weight in weights.items():
            if event_type not in EVENT_TYPES or event_type == "stock_change":
                raise ValueError(f"{event_type!r} is not a customer event type")
            if weight < 0:
                raise ValueError(f"weight of {event_type} is {weight}; must be >= 0")
        return weights

    segments_file: Path | None = Field(
        None,
        description=(
            "YAML file declaring the segments; none: the file packaged with Tailor "
            "(features/defaults/segments.yaml)."
        ),
    )
    triggers: TriggerConfig = Field(default_factory=TriggerConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)


class FrequencyCap(BaseModel):
    """At most ``max_sends`` marketing sends on ``channel`` per ``period_days``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: str = Field("email", description="Channel of the sends counted (email, app, ...).")
    max_sends: int = Field(..., ge=1, description="Most sends within the period.")
    period_days: float = Field(..., gt=0, description="Length of the sliding period, in days.")

    @property
    def label(self) -> str:
        """How a refusal names the cap: ``frequency_cap:email:3/7d``."""
        return f"frequency_cap:{self.channel}:{self.max_sends}/{self.period_days:g}d"


class PrivacyConfig(BaseModel):
    """``[privacy]``: the identity-hash key, suppression, frequency caps and retention."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hash_key: SecretStr | None = Field(
        None,
        description=(
            "Secret of the keyed hash (HMAC-SHA256) that stands for e-mails, phones and "
            "erased ids wherever Tailor keeps one (identity tables, suppression list, "
            "receipts, audit, quarantine); none: a random key generated once in "
            "TAILOR_HOME/secrets/hash.key (mode 0600)."
        ),
    )
    hash_key_id: str = Field(
        "k1",
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="Name of `hash_key`, written beside every hash it made (rotation).",
    )
    retired_hash_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description=(
            "Earlier keys by name: hashes made with them (suppression list, erased ids) "
            "still match after a rotation; new hashes use `hash_key`. Feature builds "
            "re-derive identity tables with the current key."
        ),
    )
    frequency_caps: tuple[FrequencyCap, ...] = Field(
        (),
        description=(
            'Per-customer caps, e.g. [{channel = "email", max_sends = 3, '
            "period_days = 7}]: a customer at a cap is answered `sendable: false` with "
            "the reason. Counted from `email_sent` events (their `channel`, email when "
            "none)."
        ),
    )
    retention_days_events: float | None = Field(
        730,
        gt=0,
        description="`tailor retention` drops events older than this; none: keep them.",
    )
    retention_days_decisions: float | None = Field(
        730,
        gt=0,
        description="`tailor retention` drops logged decisions older than this; none: keep.",
    )
    retention_days_quarantine: float | None = Field(
        90,
        gt=0,
        description="`tailor retention` drops quarantined rows older than this; none: keep.",
    )


class AttributionSettings(BaseModel):
    """How an outcome is credited to a send: the part of ``[selectors]`` that training
    and the service's live counters share (``training.settings.SelectorConfig`` adds
    the rest; the service reads only this)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    attribution_window_hours: float = Field(
        ATTRIBUTION_WINDOW_HOURS,
        gt=0,
        description=(
            "An outcome without a known decision id belongs to a send of the same customer "
            "and campaign this long after it; outcomes carrying the send's decision id count "
            "at any time after the send."
        ),
    )


class TailorSettings(BaseSettings):
    """The home, the row limits and ``[features]``: what every entry point reads.

    A bad value fails at start-up naming the field. An entry point's settings subclass
    this, adding the sections of the packages it runs."""

    model_config = SettingsConfigDict(
        env_prefix="TAILOR_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    config: Path | None = Field(
        None,
        description=(
            "TOML settings file (`tailor --config FILE`, TAILOR_CONFIG); none: defaults "
            "and environment variables only."
        ),
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
    min_event_ts: datetime = Field(
        datetime(1970, 1, 1, tzinfo=UTC),
        description=(
            "Events stamped earlier than this are quarantined (a zero date, a typo'd year); "
            "a time without a zone is UTC."
        ),
    )
    max_field_length: int = Field(
        256, ge=1, description="Most characters of an id or other short text field of a row."
    )
    max_text_length: int = Field(
        4096, ge=1, description="Most characters of a catalog title or a content text."
    )
    max_properties_bytes: int = Field(
        65_536,
        ge=2,
        description="Most bytes (UTF-8) of a row's properties / attributes JSON, "
        "unknown columns folded in.",
    )
    lock_timeout: float = Field(
        600.0,
        ge=0,
        description=(
            "Seconds an ingest or feature build waits for another one writing the same "
            "store (or the same feature folder) to finish before it gives up; 0: do "
            "not wait."
        ),
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
    privacy: PrivacyConfig = Field(
        default_factory=PrivacyConfig,
        description="Keyed hashing, suppression, frequency caps and retention.",
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
        # Explicit arguments win, then the environment, then the TOML file named by
        # either of them (never one found in the working folder).
        path = init_settings().get("config") or env_settings().get("config")
        if path is None:
            return (init_settings, env_settings)
        path = Path(path)
        if not path.is_file():
            raise InputError("config", str(path), "no such settings file")
        return (init_settings, env_settings, _SettingsFile(settings_cls, path))

    @field_validator("min_event_ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @property
    def row_limits(self) -> RowLimits:
        """The bounds every ingested or posted row is held to."""
        return RowLimits(
            min_event_ts=self.min_event_ts,
            max_field_length=self.max_field_length,
            max_text_length=self.max_text_length,
            max_json_bytes=self.max_properties_bytes,
        )

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

    @property
    def privacy_dir(self) -> Path:
        """The privacy ledger (suppression, erasures, receipts, audit) and its key."""
        return self.home / "privacy"


class _SettingsFile(TomlConfigSettingsSource):
    """A TOML settings file whose relative paths resolve against its own folder."""

    def __init__(self, settings_cls: type[BaseSettings], toml_file: Path) -> None:
        self._fields_of = settings_cls  # read by _read_file, before the base sets its own
        super().__init__(settings_cls, toml_file)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            data = tomllib.loads(Path(file_path).read_text())
        except tomllib.TOMLDecodeError as error:
            raise InputError("config", str(file_path), f"not TOML: {error}") from None
        if "config" in data:
            raise InputError(
                "config", str(file_path), "a settings file cannot name another (key 'config')"
            )
        return _resolve_paths(data, self._fields_of, Path(file_path).parent)


def _resolve_paths(data: dict[str, Any], model: type[BaseModel], folder: Path) -> dict[str, Any]:
    """``data`` with each relative path of a ``Path`` field of ``model`` (nested models
    too) joined to ``folder``."""
    out = dict(data)
    for name, info in model.model_fields.items():
        if name not in out:
            continue
        value = out[name]
        kinds = _annotation_types(info.annotation)
        if Path in kinds and isinstance(value, str) and not Path(value).is_absolute():
            out[name] = str(folder / value)
        nested = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
        if nested and isinstance(value, dict):
            out[name] = _resolve_paths(value, nested[0], folder)
    return out


def _annotation_types(annotation: Any) -> tuple[Any, ...]:
    """The types of an annotation: ``Path | None`` → (Path, NoneType)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)
