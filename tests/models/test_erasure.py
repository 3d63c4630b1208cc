"""Erasing users from trained models: they become unknown (a cold start), everyone
else keeps exactly their recommendations, and the erased model saves and loads."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from features.errors import InputError
from models.candidates import (
    Index,
    interaction_matrix,
    item_categories,
    item_prices,
    pair_features,
    recent_history,
)
from models.ease import EASERecommender
from models.erasure import erase_users, erased_copy, users_known
from models.factorization import ALSRecommender, BPRRecommender
from models.knn import ItemKNNRecommender
from models.pipeline import RecommenderPipeline, generate_candidates
from models.popularity import PopularityRecommender
from models.recommender import Recommender, load_recommender
from models.reranker import LambdaRankReranker

N_USERS, N_ITEMS, BLOCK = 60, 30, 15
START = pd.Timestamp("2026-10-01", tz="UTC")
ERASED = ["c0000007", "c0000042"]


def user_id(u: int) -> str:
    return f"c{u:07d}"


def synthetic_log(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two groups of customers, each browsing and buying in its own half of the
    catalogue over 30 days; items with a category (the half) and a price."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, N_USERS + 1):
        block = 0 if u <= N_USERS // 2 else BLOCK
        for item in block + rng.choice(BLOCK, size=8, replace=False):
            kind = rng.choice(["product_view", "add_to_cart", "purchase"], p=[0.6, 0.25, 0.15])
            at = START + pd.Timedelta(minutes=int(rng.integers(0, 30 * 24 * 60)))
            rows.append((user_id(u), f"i{item:03d}", at, str(kind)))
    log = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "event_type"])
    items = pd.DataFrame(
        {
            "item_id": [f"i{i:03d}" for i in range(N_ITEMS)],
            "category": ["a" if i < BLOCK else "b" for i in range(N_ITEMS)],
            "price": rng.uniform(5, 50, N_ITEMS).round(2),
        }
    )
    return log.sort_values("ts", ignore_index=True), items


def fit_pipeline(log: pd.DataFrame, items: pd.DataFrame) -> RecommenderPipeline:
    """A small two-stage pipeline (ALS + item-kNN, LambdaRank) fitted as the job fits
    one: generators on the whole log with the index's ids, the reranker on the
    candidates of the last week's buyers."""
    index = Index.build(log, items)
    categories = item_categories(items, index)
    prices = item_prices(items, index)
    cut = log["ts"].max() - pd.Timedelta(days=7)
    before, after = log[log["ts"] < cut], log[log["ts"] >= cut]
    matrix = interaction_matrix(before, index, as_of=cut)
    generators: dict[str, Recommender] = {
        "als": ALSRecommender(factors=8, iterations=10, regularization=0.1, num_threads=1),
        "item_knn": ItemKNNRecommender(k=20),
    }
    for model in generators.values():
        model.fit(matrix, user_ids=index.user_ids, item_ids=index.item_ids)
    users = np.flatnonzero(np.diff(matrix.indptr) > 0)
    recent = recent_history(before, index, as_of=cut)
    candidates = generate_candidates(
        generators, users, matrix, recent, categories, k=10, mode="all"
    )
    features = pair_features(candidates, before, index, categories, as_of=cut, prices=prices)
    coded = index.encode(after)
    relevant = sp.csr_matrix(
        (np.ones(len(coded)), (coded["u"], coded["i"])), shape=matrix.shape
    ).tocsr()
    labels = (
        np.asarray(relevant[features["u"].to_numpy(), features["i"].to_numpy()]).ravel() > 0
    ).astype(int)
    columns = [c for c in features.columns if c not in ("u", "i")]
    reranker = LambdaRankReranker(n_estimators=20, min_child_samples=5, num_threads=1).fit(
        features[columns], labels, features.groupby("u").size().to_numpy()
    )
    return RecommenderPipeline(
        generators, reranker, index, categories, prices, {"candidates_per_generator": 10}
    )


def rank_by_id(
    pipeline: RecommenderPipeline, log: pd.DataFrame, people: list[str], n: int = 5
) -> dict[str, list[str]]:
    """Each person's top n item ids from the pipeline, as of the end of ``log``."""
    as_of = log["ts"].max() + pd.Timedelta(seconds=1)
    index = pipeline.index
    history = interaction_matrix(log, index, as_of=as_of)
    recent = recent_history(log, index, as_of=as_of)
    rows = np.searchsorted(index.user_ids, people)
    assert (index.user_ids[rows] == people).all()
    ids, _ = pipeline.rank(rows, history, recent, log, as_of=as_of, n=n)
    return {
        p: [str(index.item_ids[i]) for i in r if i >= 0] for p, r in zip(people, ids, strict=True)
    }


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthetic_log()


@pytest.fixture(scope="module")
def matrix(data) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    log, items = data
    index = Index.build(log, items)
    as_of = log["ts"].max() + pd.Timedelta(seconds=1)
    return interaction_matrix(log, index, as_of=as_of), index.user_ids, index.item_ids


FACTORIES: dict[str, Callable[[], Recommender]] = {
    "als": lambda: ALSRecommender(factors=8, iterations=10, regularization=0.1, num_threads=1),
    "bpr": lambda: BPRRecommender(factors=8, iterations=50, num_threads=1),
    "item_knn": lambda: ItemKNNRecommender(k=20),
    "ease": lambda: EASERecommender(l2=10.0),
    "popularity": lambda: PopularityRecommender(),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_erased_users_are_unknown_and_everyone_else_is_scored_as_before(name, matrix, tmp_path):
    interactions, user_ids, item_ids = matrix
    model = FACTORIES[name]().fit(interactions, user_ids=user_ids, item_ids=item_ids)
    others = [u for u in user_ids if u not in ERASED]
    history = interactions[model.user_rows(others)]
    before_ids, before_scores = model.recommend(model.user_rows(others), history, n=5)
    factors = getattr(model, "user_factors_", None)
    erased_rows = model.user_rows(ERASED)

    assert erase_users(model, ERASED) == 2

    assert (model.user_rows(ERASED) == -1).all(), "a recommendation for them is a cold start"
    assert model.user_ids_ is not None
    assert model.n_users_ == len(user_ids) - 2 == len(model.user_ids_)
    assert users_known(model, ERASED) == set()
    after_ids, after_scores = model.recommend(model.user_rows(others), history, n=5)
    np.testing.assert_array_equal(after_ids, before_ids)
    np.testing.assert_array_equal(after_scores, before_scores)
    if factors is not None:  # their factor rows are gone, not just unreachable
        assert len(model.user_factors_) == len(user_ids) - 2
        for row in erased_rows:
            assert not np.isclose(model.user_factors_, factors[row]).all(axis=1).any()
    # Round trip: the erased model is what is saved and loaded.
    loaded = load_recommender(model.save(tmp_path / name))
    assert (loaded.user_rows(ERASED) == -1).all()
    loaded_ids, loaded_scores = loaded.recommend(loaded.user_rows(others), history, n=5)
    np.testing.assert_array_equal(loaded_ids, before_ids)
    np.testing.assert_array_equal(loaded_scores, before_scores)


def test_ids_are_matched_whole_never_as_substrings(matrix):
    interactions, user_ids, item_ids = matrix
    model = FACTORIES["als"]().fit(interactions, user_ids=user_ids, item_ids=item_ids)
    # "c000001" is a prefix of c0000010..c0000019, "0000007" a suffix of c0000007.
    assert erase_users(model, ["c000001", "0000007", "c00000070"]) == 0
    assert model.n_users_ == len(user_ids)
    np.testing.assert_array_equal(model.user_ids_, user_ids)


def test_a_bare_string_or_an_empty_id_is_refused(matrix):
    interactions, user_ids, item_ids = matrix
    model = FACTORIES["item_knn"]().fit(interactions, user_ids=user_ids, item_ids=item_ids)
    with pytest.raises(InputError, match="ids"):
        erase_users(model, "c0000007")
    with pytest.raises(InputError, match="empty"):
        erase_users(model, ["c0000007", ""])
    assert model.n_users_ == len(user_ids)


def test_a_model_fitted_without_ids_names_no_one(matrix):
    interactions, _, _ = matrix
    model = FACTORIES["als"]().fit(interactions)
    factors = model.user_factors_
    assert erase_users(model, ERASED) == 0
    assert model.user_factors_ is factors


def test_an_erased_copy_leaves_the_original_serving_as_it_was(matrix):
    interactions, user_ids, item_ids = matrix
    model = FACTORIES["als"]().fit(interactions, user_ids=user_ids, item_ids=item_ids)
    assert model.user_ids_ is not None
    factors, ids = model.user_factors_.copy(), model.user_ids_.copy()
    copy, found = erased_copy(model, [*ERASED, "c9999999"])
    assert found == set(ERASED)
    assert copy is not model and (copy.user_rows(ERASED) == -1).all()
    np.testing.assert_array_equal(model.user_factors_, factors)
    np.testing.assert_array_equal(model.user_ids_, ids)
    assert copy.item_factors_ is model.item_factors_, "what does not change is shared"
    again, found = erased_copy(copy, ERASED)
    assert again is copy and found == set(), "nothing to erase: no copy"


def test_a_pipeline_forgets_them_in_its_index_and_every_generator(data, tmp_path):
    log, items = data
    pipeline = fit_pipeline(log, items)
    # Ranked from a log without their events (as the event store is after an erasure),
    # so the item-level features are the same before and after.
    rest = log[~log["user_id"].isin(ERASED)]
    others = sorted(set(rest["user_id"]))
    before = rank_by_id(pipeline, rest, others)
    assert all(before.values()), "everyone has a ranking to compare"

    assert erase_users(pipeline, ERASED) == 2

    assert not set(ERASED) & set(pipeline.index.user_ids)
    for name, generator in pipeline.generators.items():
        assert (generator.user_rows(ERASED) == -1).all(), name
        np.testing.assert_array_equal(generator.user_ids_, pipeline.index.user_ids)
    assert rank_by_id(pipeline, rest, others) == before
    loaded = RecommenderPipeline.load(pipeline.save(tmp_path / "pipeline"))
    assert not set(ERASED) & set(loaded.index.user_ids)
    assert rank_by_id(loaded, rest, others) == before


def test_files_from_before_and_after_an_erasure_do_not_load_together(data, tmp_path):
    log, items = data
    pipeline = fit_pipeline(log, items)
    old = pipeline.save(tmp_path / "old")
    erase_users(pipeline, ERASED)
    new = pipeline.save(tmp_path / "new")
    # A reader that got the new index but an old generator must not pair them up.
    torn = tmp_path / "torn"
    shutil.copytree(old, torn)
    shutil.copy(new / "index.npz", torn / "index.npz")
    with pytest.raises(InputError, match="disagree on the users"):
        RecommenderPipeline.load(torn)
    # Nor a generator's new manifest with its old arrays.
    shutil.copy(new / "generators" / "als" / "manifest.json", old / "generators" / "als")
    assert json.loads((old / "generators" / "als" / "manifest.json").read_text())["n_users"] == (
        N_USERS - 2
    )
    with pytest.raises(InputError, match="manifest n_users"):
        load_recommender(old / "generators" / "als")
