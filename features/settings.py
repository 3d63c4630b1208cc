"""One settings object for every entry point: defaults, ``TAILOR_*`` variables, ``tailor.toml``.

Built once by an entry point (the CLI, the service) and passed down; nothing else
reads the environment.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    """Validated configuration; a bad value fails at start-up naming the field."""

    model_config = SettingsConfigDict(
        env_prefix="TAILOR_",
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
