"""Faults: a corrupt or missing model artifact at start and at reload, an unreadable
snapshot, a store that cannot be written — each keeps what was serving (or serves
fallbacks), says why, and corrupts nothing."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pytest

from models.registry import registry_client, tracking_uri
from serving.bundles import RECOMMENDER_NAME
from serving.core import DecisionCore
from serving.errors import ReloadFailed
from serving.events import StoreUnavailable
from serving.schemas import RecommendRequest
from tests.serving.conftest import posted_event, settings_for
from tests.serving.test_core import _core, _quiet_customer


def _register_broken(home: Path, tmp_path: Path, *, missing: bool) -> str:
    """A new champion whose artifacts are corrupt (or gone): a real registry entry."""
    client = registry_client(tracking_uri(home))
    source = client.get_model_version_download_uri(RECOMMENDER_NAME, "1")
    copy = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(tmp_path / "broken"), tracking_uri=client.tracking_uri
        )
    )
    damaged = 0
    for path in copy.rglob("*"):
        if path.is_file() and path.suffix in (".npz", ".txt", ".json") and path.name != "MLmodel":
            path.write_bytes(b"\x00garbage" * 3)
            damaged += 1
    assert damaged
    version = client.create_model_version(RECOMMENDER_NAME, source=str(copy), run_id=None)
    client.set_registered_model_alias(RECOMMENDER_NAME, "champion", version.version)
    if missing:
        shutil.rmtree(copy)
    return str(version.version)


@pytest.mark.parametrize("missing", [False, True])
def test_a_broken_champion_at_reload_keeps_the_previous_one(home, tmp_path, missing):
    core = _core(home)
    customer = _quiet_customer(home)
    before = core.recommend(RecommendRequest(customer_id=customer, n=5, decision_id="f1"))
    assert before.strategy == "model" and before.model_version == "1"
    broken = _register_broken(home, tmp_path, missing=missing)
    with pytest.raises(ReloadFailed, match=f"recommender {broken} failed to load"):
        core.reload_or_raise()
    status = core.status()
    assert status.models[RECOMMENDER_NAME] == "1" and status.state == "degraded"
    assert any(f"recommender {broken} failed to load" in r for r in status.reasons)
    after = core.recommend(RecommendRequest(customer_id=customer, n=5, decision_id="f1"))
    assert after.strategy == "model" and after.items == before.items
    assert core.ready()


def test_a_broken_champion_at_start_serves_fallbacks_and_says_why(home, tmp_path):
    broken = _register_broken(home, tmp_path, missing=False)
    core = DecisionCore(settings_for(home))
    status = core.reload()
    assert status.models[RECOMMENDER_NAME] is None
    assert any(f"recommender {broken} failed to load" in r for r in status.reasons)
    answer = core.recommend(RecommendRequest(customer_id=_quiet_customer(home), n=5))
    assert answer.strategy == "fallback:popular" and len(answer.items) == 5
    assert core.ready(), "popular items can still be served"


def test_an_unreadable_new_snapshot_keeps_the_loaded_one(home):
    core = _core(home)
    customer = _quiet_customer(home)
    loaded = core.status().snapshot
    assert loaded is not None
    later = (
        home / "features" / f"as_of={(datetime.now(UTC) + timedelta(days=1)):%Y-%m-%dT%H:%M:%SZ}"
    )
    shutil.copytree(home / "features" / loaded, later)
    (later / "customers.parquet").write_bytes(b"not parquet")
    with pytest.raises(ReloadFailed, match="snapshot not loaded, the previous one stays"):
        core.reload_or_raise()
    assert core.status().snapshot == loaded
    answer = core.recommend(RecommendRequest(customer_id=customer, n=5))
    assert answer.strategy == "model"


def test_an_unwritable_event_log_refuses_events_and_turns_readiness_off(home, monkeypatch):
    """The read-only disk is injected at the log's write (tests run as root, for whom
    no file is read-only); everything above it is the real path."""
    core = _core(home)
    customer = _quiet_customer(home)
    event = posted_event("fault-1", customer)
    real_append = core.events_log.append

    def read_only(*args, **kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(core.events_log, "append", read_only)
    with pytest.raises(StoreUnavailable, match="cannot be written"):
        core.ingest_events([event])
    ready, reasons = core.readiness()
    assert not ready and any("readonly" in r for r in reasons)
    monkeypatch.setattr(core.events_log, "append", real_append)
    assert core.ingest_events([event]).accepted == 1
    assert core.readiness()[0], "a write that succeeds again makes it ready again"
