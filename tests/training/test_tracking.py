"""MLflow tracking, registry and the promotion gate, on a real SQLite store (no mocks)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from mlflow.tracking import MlflowClient

from features.errors import InputError, NotFoundError
from models.knn import ItemKNNRecommender
from models.popularity import PopularityRecommender
from models.recommender import Recommender
from training.promotion import promote, rollback
from training.tracking import (
    CHAMPION,
    LoggedRecommender,
    configure,
    load_champion,
    log_recommender_run,
    mlflow_metric_name,
    tracking_uri,
)

N_USERS, N_ITEMS = 30, 25


@pytest.fixture(scope="module")
def interactions() -> sp.csr_matrix:
    rng = np.random.default_rng(7)
    dense = (rng.random((N_USERS, N_ITEMS)) < 0.25) * rng.uniform(1, 3, (N_USERS, N_ITEMS))
    return sp.csr_matrix(dense, dtype=np.float32)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tailor_home")


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[MlflowClient]:
    """One store for the module (creating a SQLite store takes a second or two)."""
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield configure(home)
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def knn(interactions: sp.csr_matrix) -> ItemKNNRecommender:
    return ItemKNNRecommender(k=10).fit(interactions)


@pytest.fixture(scope="module")
def logged(client: MlflowClient, knn: ItemKNNRecommender) -> LoggedRecommender:
    return log_recommender_run(
        client,
        knn,
        registered_name="knn",
        run_name="knn-test",
        config={"als": {"factors": 8, "alpha": 10.0}, "ks": [5, 10], "mode": "new"},
        data_window={"as_of": datetime(2026, 11, 28, tzinfo=UTC), "test_days": 7},
        metrics={"ndcg@10": 0.31, "users": 30},
        curves={"recall": {5: 0.2, 10: 0.3}},
        comparison={
            "ndcg": {"knn": {5: 0.25, 10: 0.31}, "popularity": {5: 0.1, 10: 0.12}},
        },
        feature_importance={"cf_score": 12.0, "recency": 4.5, "price_ratio": 1.0},
        tags={"purpose": "test"},
    )


def _items(model: Recommender, users: np.ndarray, history: sp.csr_matrix, n: int) -> np.ndarray:
    return model.recommend(users, history, n=n)[0]


# ---------------------------------------------------------------------- store
def test_tracking_uri_is_sqlite_under_home(tmp_path):
    uri = tracking_uri(tmp_path / "home")
    assert uri == f"sqlite:///{(tmp_path / 'home' / 'mlflow' / 'mlflow.db').resolve()}"
    assert (tmp_path / "home" / "mlflow" / "artifacts").is_dir()


def test_artifacts_stay_under_home(client, logged, home):
    root = (home / "mlflow" / "artifacts").as_uri()
    run = client.get_run(logged.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "recommenders"
    assert experiment.artifact_location == f"{root}/recommenders"
    assert run.info.artifact_uri.startswith(experiment.artifact_location)
    model_uri = client.get_model_version_download_uri("knn", str(logged.version))
    assert model_uri.startswith(experiment.artifact_location)


# ---------------------------------------------------------------------- logging
def test_run_has_params_window_metrics_and_tags(client, logged):
    data = client.get_run(logged.run_id).data
    assert data.params["model.class"] == ItemKNNRecommender.name
    assert data.params["model.k"] == "10"
    assert data.params["config.als.factors"] == "8"
    assert data.params["config.ks"] == "[5, 10]"
    assert data.params["data.as_of"] == "2026-11-28T00:00:00+00:00"
    assert data.tags["data.test_days"] == "7"
    assert data.tags["purpose"] == "test"
    assert data.metrics["ndcg_at_10"] == pytest.approx(0.31)
    assert data.metrics["recall_at_5"] == pytest.approx(0.2)
    assert data.metrics["recall_at_10"] == pytest.approx(0.3)


def test_run_has_config_and_figures(client, logged, tmp_path):
    top = {f.path for f in client.list_artifacts(logged.run_id)}
    assert {"config.json", "feature_importance.json", "figures"} <= top
    figures = {f.path for f in client.list_artifacts(logged.run_id, "figures")}
    assert figures == {
        "figures/curves.png",
        "figures/ndcg_vs_k.png",
        "figures/feature_importance.png",
    }
    local = Path(client.download_artifacts(logged.run_id, "config.json", str(tmp_path)))
    assert json.loads(local.read_text())["als"] == {"factors": 8, "alpha": 10.0}


def test_version_is_registered_with_its_run(client, logged):
    version = client.get_model_version("knn", str(logged.version))
    assert version.run_id == logged.run_id
    assert version.tags["tailor.model_class"] == ItemKNNRecommender.name


def test_pyfunc_predicts_the_raw_models_items(logged, knn, interactions):
    pyfunc = mlflow.pyfunc.load_model(logged.model_uri)
    users = np.array([0, 3, 11, 29])
    frame = pd.DataFrame(
        {
            "user": users,
            "n": [5, 5, 5, 5],
            "history": [interactions[u].indices.tolist() for u in users],
        }
    )
    out = pyfunc.predict(frame)
    assert list(out.columns) == ["request", "user", "rank", "item", "score"]
    # The pyfunc's history is a list of items: strengths are all 1.
    history = interactions[users].copy()
    history.data[:] = 1.0
    expected = _items(knn, users, history, 5)
    for row, user in enumerate(users):
        got = out[out["request"] == row].sort_values("rank")
        assert (got["user"] == user).all()
        assert got["item"].tolist() == [i for i in expected[row] if i >= 0]


def test_pyfunc_honours_n_per_row_and_defaults(logged):
    pyfunc = mlflow.pyfunc.load_model(logged.model_uri)
    out = pyfunc.predict(pd.DataFrame({"user": [1, 2], "n": [2, 4]}))
    assert out.groupby("request").size().tolist() == [2, 4]


def test_an_active_run_is_logged_into(client, interactions):
    model = PopularityRecommender().fit(interactions)
    experiment = client.get_experiment_by_name("recommenders")
    assert experiment is not None
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        logged = log_recommender_run(client, model, registered_name="pop", metrics={"ndcg@10": 0.1})
        assert mlflow.active_run() is not None
    assert logged.run_id == run.info.run_id


def test_colliding_metric_names_are_refused(client, interactions):
    model = PopularityRecommender().fit(interactions)
    with pytest.raises(InputError, match="ndcg_at_10"):
        log_recommender_run(
            client, model, registered_name="bad", metrics={"ndcg@10": 0.1, "ndcg_at_10": 0.2}
        )


def test_metric_names_are_made_mlflow_safe():
    assert mlflow_metric_name("ndcg@10") == "ndcg_at_10"
    assert mlflow_metric_name("hit rate/segment:a#b") == "hit rate/segment:a_b"


# ---------------------------------------------------------------------- promotion
@pytest.fixture(scope="module")
def candidates(client, interactions) -> list[tuple[LoggedRecommender, Recommender]]:
    """Four versions of one registered model, with ndcg@10 0.30, 0.35, 0.32, 0.05."""
    models: list[Recommender] = [
        PopularityRecommender().fit(interactions),
        ItemKNNRecommender(k=5).fit(interactions),
        PopularityRecommender(by="users").fit(interactions),
        ItemKNNRecommender(k=2).fit(interactions),
    ]
    out = []
    for model, value in zip(models, [0.30, 0.35, 0.32, 0.05], strict=True):
        logged = log_recommender_run(
            client, model, registered_name="gate", metrics={"ndcg@10": value}
        )
        out.append((logged, model))
    return out


def test_no_champion_is_not_found(client, logged):
    # "knn" has a version but is never promoted.
    with pytest.raises(NotFoundError, match="knn"):
        load_champion(client, "knn")
    with pytest.raises(NotFoundError, match="no_such_model"):
        load_champion(client, "no_such_model")


def test_the_gate_promotes_only_better_candidates(client, candidates, interactions):
    (v1, _), (v2, best), (v3, _), (v4, _) = candidates

    first = promote(client, "gate", v1.version, metric="ndcg@10", floor=0.1)
    assert first.promoted and first.champion_version is None
    assert client.get_model_version_by_alias("gate", CHAMPION).version == v1.version

    better = promote(client, "gate", v2.version, metric="ndcg@10", floor=0.1)
    assert better.promoted
    assert (better.champion_version, better.champion_value) == (v1.version, pytest.approx(0.30))

    worse = promote(client, "gate", v3.version, metric="ndcg@10", floor=0.1)
    assert not worse.promoted
    assert "0.32" in worse.reason and "0.35" in worse.reason and "ndcg@10" in worse.reason
    assert client.get_model_version_by_alias("gate", CHAMPION).version == v2.version
    tags = client.get_model_version("gate", str(v3.version)).tags
    assert tags["tailor.promotion"] == "rejected"
    assert tags["tailor.promotion_reason"] == worse.reason

    below = promote(client, "gate", v4.version, metric="ndcg@10", floor=0.1)
    assert not below.promoted and "floor" in below.reason

    # Lower is better: 0.32 beats 0.35 by 8.6 %, short of the 10 % asked for.
    small_gain = promote(
        client,
        "gate",
        v3.version,
        metric="ndcg@10",
        floor=0.5,
        higher_is_better=False,
        min_relative_gain=0.10,
    )
    assert not small_gain.promoted and "+8.57%" in small_gain.reason
    assert client.get_model_version_by_alias("gate", CHAMPION).version == v2.version

    model, version = load_champion(client, "gate")
    assert version.version == v2.version
    users = np.arange(N_USERS)
    np.testing.assert_array_equal(
        _items(model, users, interactions, 5), _items(best, users, interactions, 5)
    )


def test_a_missing_metric_is_an_input_error(client, candidates):
    with pytest.raises(InputError, match="map@10"):
        promote(client, "gate", candidates[0][0].version, metric="map@10", floor=0.0)


def test_rollback_puts_each_previous_champion_back_in_turn(client, interactions):
    model = PopularityRecommender().fit(interactions)
    versions = [
        log_recommender_run(client, model, registered_name="rollback", metrics={"ndcg@10": v})
        for v in (0.2, 0.3, 0.4)
    ]
    with pytest.raises(NotFoundError, match="no champion"):
        rollback(client, "rollback")
    for logged in versions:
        assert promote(client, "rollback", logged.version, metric="ndcg@10", floor=0.1).promoted
    numbers = [int(logged.version) for logged in versions]

    def champion() -> int:
        return int(client.get_model_version_by_alias("rollback", CHAMPION).version)

    assert champion() == numbers[2]
    done = rollback(client, "rollback")
    assert (done.from_version, done.to_version, champion()) == (numbers[2], numbers[1], numbers[1])
    tags = client.get_model_version("rollback", str(numbers[2])).tags
    assert tags["tailor.promotion"] == f"rolled back to {numbers[1]}"
    assert rollback(client, "rollback").to_version == numbers[0] == champion()
    with pytest.raises(NotFoundError, match="first champion"):
        rollback(client, "rollback")
    # A promotion after a rollback is remembered like any other.
    assert promote(client, "rollback", numbers[2], metric="ndcg@10", floor=0.1).promoted
    assert rollback(client, "rollback").to_version == numbers[0]
