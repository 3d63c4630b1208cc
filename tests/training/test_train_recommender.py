"""``tailor train recommender`` twice on one store: the gate compares like with like."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from models.registry import tracking_uri
from tests.commands import run_tailor


def _tailor(*args: str, home: Path) -> str:
    done = run_tailor(*args, home=home)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MlflowClient, str]:
    root = tmp_path_factory.mktemp("gate")
    home, data = root / "home", root / "data"
    _tailor(
        "simulate",
        "--customers",
        "400",
        "--days",
        "20",
        "--seed",
        "5",
        "--out",
        str(data),
        home=home,
    )
    for kind in ("customers", "catalog", "events"):
        _tailor("ingest", str(data / f"{kind}.csv"), "--kind", kind, home=home)
    _tailor("features", "build", "--as-of", "2030-01-01T00:00:00Z", home=home)
    first = _tailor("train", "recommender", "--tune-budget", "1", home=home)
    uri = tracking_uri(home)
    return home, MlflowClient(uri, registry_uri=uri), first


def test_the_first_champion_must_beat_popularity(trained):
    _, client, first = trained
    assert "promoted: no champion yet" in first
    assert "popularity on the same split" in first
    champion = client.get_model_version_by_alias("tailor-recommender", "champion")
    metrics = client.get_run(champion.run_id).data.metrics
    assert metrics["ndcg_at_10"] > metrics["popularity.ndcg_at_10"]


def test_the_champion_is_rescored_on_the_candidates_split(trained):
    """The champion's run claims an NDCG it never had on this data: the gate ignores the
    claim and compares both models on the candidate's own split."""
    home, client, _ = trained
    champion = client.get_model_version_by_alias("tailor-recommender", "champion")
    client.log_metric(champion.run_id, "ndcg_at_10", 0.999)
    second = _tailor("train", "recommender", "--tune-budget", "1", "--seed", "1", home=home)
    assert "champion (re-scored)" in second
    candidate = client.get_model_version("tailor-recommender", "2")
    metrics = client.get_run(candidate.run_id).data.metrics
    rescored = metrics["champion.ndcg_at_10"]
    assert 0 < rescored < 0.9
    reason = candidate.tags["tailor.promotion_reason"]
    assert "re-scored on this run's split" in reason and "0.999" not in reason
    assert f"{rescored:.6g}" in reason
    promoted = candidate.tags["tailor.promotion"] == "promoted"
    assert promoted == (metrics["ndcg_at_10"] > rescored)
