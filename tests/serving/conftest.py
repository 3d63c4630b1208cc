"""A fresh copy per test of the session's trained home (``trained_home``, in
``tests/conftest.py``), and settings for it."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli.settings import Settings
from serving.settings import ServingConfig
from simulation import DEMO_RULES_FILE

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture
def home(trained_home: Path, tmp_path: Path) -> Path:
    """A private copy: tests write events and decisions into their own online stores.
    (The MLflow database keeps pointing at the session's artifacts, read-only.)"""
    copy = tmp_path / "home"
    shutil.copytree(trained_home, copy, ignore=shutil.ignore_patterns("online", "demo"))
    return copy


def settings_for(home: Path, **serving: object) -> Settings:
    options: dict[str, object] = {
        "api_keys": {"test-admin-key": ["decide", "ingest", "admin"]},
        "rules_file": DEMO_RULES_FILE,
        "fallback_epsilon": 0.0,
    }
    options.update(serving)
    return Settings(home=home, serving=ServingConfig(**options))  # type: ignore[arg-type]


def posted_event(
    event_id: str,
    customer: str,
    *,
    kind: str = "product_view",
    item: str = "i000001",
    at: datetime | None = None,
    **fields: object,
) -> dict[str, object]:
    """One event as a client posts it to ``/events`` (``at`` defaults to now)."""
    return {
        "event_id": event_id,
        "ts": (at or datetime.now(UTC)).isoformat(),
        "event_type": kind,
        "customer_id": customer,
        "item_id": item,
        **fields,
    }
