"""Every setting, composed: what ``tailor`` reads and checks before any job runs.

Each section belongs to the package it configures (``features.settings``,
``training.settings``, ``serving.settings``); a settings file with a key no package
knows fails here, naming it, before a job or the service starts.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from serving.settings import ServiceSettings
from training.settings import RecommenderSettings, RetrainSettings, SelectorConfig


class Settings(ServiceSettings):
    """All the settings: the service's, and training's ``[recommender]``,
    ``[selectors]`` and ``[retrain]``."""

    # Besides what ServiceSettings sets: a key no package knows is an error.
    model_config = SettingsConfigDict(extra="forbid")

    recommender: RecommenderSettings = Field(
        default_factory=RecommenderSettings, description="Recommender training settings."
    )
    selectors: SelectorConfig = Field(
        default_factory=SelectorConfig, description="Selector training settings."
    )
    retrain: RetrainSettings = Field(
        default_factory=RetrainSettings, description="`tailor retrain` settings."
    )
