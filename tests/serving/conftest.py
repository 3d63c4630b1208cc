"""A trained home (store, snapshot, registered champions) built once per session by the
real ``tailor demo --no-serve``, and a fresh copy of it per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from features.settings import ServingConfig, Settings
from features.simulator import DEMO_RULES_FILE

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("trained") / "home"
    env = {**os.environ, "TAILOR_HOME": str(home), "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.cli",
            "demo",
            "--no-serve",
            "--customers",
            "400",
            "--days",
            "14",
            "--seed",
            "3",
            "--tune-budget",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return home


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
