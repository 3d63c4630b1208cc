"""Shared fixtures: a fresh store per test, a fixed clock, the shared datasets, and a
trained home (store, snapshot, registered champions) built once per session by the
real ``tailor demo --no-serve``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.server import build_home
from features.data.store import EventStore

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    return EventStore(tmp_path / "store")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("trained") / "home"
    build_home(home, 400, days=14, seed=3)
    return home
