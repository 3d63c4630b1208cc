"""Shared fixtures: a fresh store per test, a fixed clock, the shared datasets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from features.store import EventStore

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    return EventStore(tmp_path / "store")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA
