"""One contract, run against every estimator in ``models``: scikit-learn's.

``clone`` gives an unfitted copy with the same parameters, which refits to the same
answers (``random_state`` is the only randomness); ``check_is_fitted`` tells a fitted
estimator from an unfitted one, and a failed fit leaves it unfitted; ``set_params``
changes what ``fit`` does; ``save`` → ``load`` answers identically. ``legacy/`` holds
artifacts written before the estimators took the contract (by commit 4bacc2e: each
case's ``make().fit(*data())`` saved to ``legacy/<case>/``, its ``answers`` to
``legacy/<case>.npz``): they still load, answer as they did, and a fit today writes
the same files.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from features.errors import NotFoundError
from models.ease import EASERecommender
from models.factorization import ALSRecommender, BPRRecommender
from models.knn import ItemKNNRecommender
from models.popularity import PopularityRecommender
from models.recommender import Recommender, load_recommender
from models.reranker import LambdaRankReranker
from models.selector import OutcomeModel
from tests.models.test_recommenders import planted_blocks
from tests.models.test_reranker import planted

LEGACY = Path(__file__).parent / "legacy"


def interactions() -> tuple[sp.csr_matrix]:
    return (planted_blocks(),)


def recommender_answers(model: Recommender) -> list[np.ndarray]:
    """Scores of every user (the last five as users unseen at fit time, scored from
    their history), the top five of each, and each item's five most similar."""
    (matrix,) = interactions()
    users = np.arange(matrix.shape[0])
    users[-5:] = -1
    ids, scores = model.recommend(users, matrix, n=5)
    similar, _ = model.similar_items(np.arange(matrix.shape[1]), n=5)
    return [model.score(users, matrix), ids, scores, similar]


def rankings() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    return planted(users=40, per_user=10)


def reranker_answers(model: LambdaRankReranker) -> list[np.ndarray]:
    features, _, _ = rankings()
    return [model.predict(features), np.array(list(model.feature_importance().values()))]


def outcomes() -> tuple[pd.DataFrame, np.ndarray]:
    """Reward likely where ``a`` is 1 and ``b`` positive; ``ignored`` is not a model column."""
    rng = np.random.default_rng(0)
    n = 600
    a = rng.integers(0, 2, n)
    b = rng.normal(size=n)
    rewards = (rng.random(n) < 0.1 + 0.5 * a * (b > 0)).astype(float)
    return pd.DataFrame({"a": a, "b": b, "ignored": rng.normal(size=n)}), rewards


def outcome_answers(model: OutcomeModel) -> list[np.ndarray]:
    features, _ = outcomes()
    return [model.predict_members(features)]


@dataclass(frozen=True)
class Case:
    """An estimator under the contract and how to exercise it.

    ``make``: an unfitted estimator with small settings; ``data``: the arguments of its
    ``fit``; ``answers``: what a fitted one returns; ``load``: reads back what ``save``
    wrote; ``set_params(**change)`` before ``fit`` makes ``changed(fitted)`` true, which
    it is not after ``make()``'s own fit.
    """

    make: Callable[[], Any]
    data: Callable[[], tuple[Any, ...]]
    answers: Callable[[Any], list[np.ndarray]]
    load: Callable[[Path], Any]
    change: dict[str, Any]
    changed: Callable[[Any], bool]


RECOMMENDER = {"data": interactions, "answers": recommender_answers, "load": load_recommender}
CASES = {
    "als": Case(
        lambda: ALSRecommender(factors=4, iterations=3, num_threads=1),
        **RECOMMENDER,
        change={"factors": 6},
        changed=lambda model: model.item_factors_.shape[1] == 6,
    ),
    "bpr": Case(
        lambda: BPRRecommender(factors=4, iterations=20, num_threads=1),
        **RECOMMENDER,
        change={"factors": 6},
        changed=lambda model: model.item_factors_.shape[1] == 6 + 1,  # implicit's item bias
    ),
    "item_knn": Case(
        lambda: ItemKNNRecommender(k=5, similarity="bm25"),
        **RECOMMENDER,
        change={"k": 2},
        changed=lambda model: np.diff(model.similarity_.indptr).max() == 2,
    ),
    "ease": Case(
        lambda: EASERecommender(l2=10.0),
        **RECOMMENDER,
        # A strong ridge shrinks every item-item weight towards zero.
        change={"l2": 1e6},
        changed=lambda model: np.abs(model.weights_).max() < 1e-3,
    ),
    "popularity": Case(
        lambda: PopularityRecommender(),
        **RECOMMENDER,
        change={"by": "users"},
        changed=lambda model: np.array_equal(
            model.popularity_, np.diff(planted_blocks().tocsc().indptr)
        ),
    ),
    "lambdarank_reranker": Case(
        lambda: LambdaRankReranker(
            n_estimators=5, num_leaves=4, min_child_samples=5, num_threads=1
        ),
        rankings,
        reranker_answers,
        LambdaRankReranker.load,
        change={"n_estimators": 2},
        changed=lambda model: model.booster_.num_trees() == 2,
    ),
    "outcome_model": Case(
        lambda: OutcomeModel(n_estimators=5, num_leaves=4, ensemble=2, columns=["a", "b"]),
        outcomes,
        outcome_answers,
        OutcomeModel.load,
        change={"ensemble": 3, "columns": ["b"]},
        changed=lambda model: len(model.boosters_) == 3 and model.feature_names_ == ["b"],
    ),
}


def assert_same_answers(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(CASES))
class TestEstimatorContract:
    def test_params_are_the_keyword_only_constructor_arguments(self, name):
        model = CASES[name].make()
        assert isinstance(model, BaseEstimator)
        signature = inspect.signature(type(model).__init__)
        arguments = [p for p in signature.parameters.values() if p.name != "self"]
        assert all(p.kind is p.KEYWORD_ONLY for p in arguments)
        params = model.get_params()
        assert sorted(params) == sorted(p.name for p in arguments)
        # The parameters are all it takes to build the same estimator again.
        assert type(model)(**params).get_params() == params

    def test_unfitted_until_fit(self, name):
        case = CASES[name]
        model = case.make()
        with pytest.raises(NotFittedError):
            check_is_fitted(model)
        with pytest.raises(NotFoundError, match="not fitted"):
            case.answers(model)
        assert model.fit(*case.data()) is model
        check_is_fitted(model)

    def test_clone_is_an_unfitted_copy_that_refits_to_the_same_answers(self, name):
        case = CASES[name]
        fitted = case.make().fit(*case.data())
        copy = clone(fitted)
        assert type(copy) is type(fitted) and copy.get_params() == fitted.get_params()
        with pytest.raises(NotFittedError):
            check_is_fitted(copy)
        check_is_fitted(fitted)
        assert_same_answers(case.answers(copy.fit(*case.data())), case.answers(fitted))

    def test_set_params_changes_what_fit_does(self, name):
        case = CASES[name]
        model = case.make()
        copy = clone(model)
        assert copy.set_params(**case.change) is copy
        assert copy.get_params() == {**model.get_params(), **case.change}
        assert case.changed(copy.fit(*case.data()))
        # The original keeps its own parameters: its fit is not changed.
        assert not case.changed(model.fit(*case.data()))

    def test_save_load_answers_identically(self, name, tmp_path):
        case = CASES[name]
        fitted = case.make().set_params(**case.change).fit(*case.data())
        loaded = case.load(fitted.save(tmp_path / "model"))
        assert type(loaded) is type(fitted) and loaded.get_params() == fitted.get_params()
        check_is_fitted(loaded)
        assert_same_answers(case.answers(loaded), case.answers(fitted))

    def test_an_artifact_saved_before_the_contract_still_loads(self, name, tmp_path):
        case = CASES[name]
        with np.load(LEGACY / f"{name}.npz", allow_pickle=False) as data:
            expected = [data[f"answer_{i}"] for i in range(len(data.files))]
        loaded = case.load(LEGACY / name)
        check_is_fitted(loaded)
        assert loaded.get_params() == case.make().get_params()
        assert_same_answers(case.answers(loaded), expected)
        # A fit today writes the same files and the same manifest, and answers the same.
        refit = clone(loaded).fit(*case.data())
        path = refit.save(tmp_path / "model")
        assert sorted(p.name for p in path.iterdir()) == sorted(
            p.name for p in LEGACY.glob(f"{name}/*")
        )
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest == json.loads((LEGACY / name / "manifest.json").read_text())
        for got, want in zip(case.answers(refit), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def with_text_feature(data: tuple[Any, ...]) -> tuple[Any, ...]:
    """The same fit arguments with a feature column of text, which fails the fit only
    once the labels have been checked."""
    features, *rest = data
    return (features.assign(b="n/a", noise="n/a"), *rest)


@pytest.mark.parametrize(
    ("name", "params", "data", "error"),
    [
        ("ease", {"max_items": 10}, interactions, "max_items"),
        ("popularity", {"by": "nobody"}, interactions, "by"),
        ("lambdarank_reranker", {}, lambda: with_text_feature(rankings()), "n/a"),
        ("outcome_model", {}, lambda: with_text_feature(outcomes()), "n/a"),
        ("outcome_model", {"columns": ["a", "nowhere"]}, outcomes, "nowhere"),
    ],
)
def test_a_failed_fit_leaves_the_estimator_unfitted(name, params, data, error):
    """Learned state is set once the fit has succeeded, or not at all."""
    model = CASES[name].make().set_params(**params)
    with pytest.raises(ValueError, match=error):  # InputError is a ValueError
        model.fit(*data())
    with pytest.raises(NotFittedError):
        check_is_fitted(model)
