"""Ranking metrics against hand-computed values, ties and empty cases included."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from features.errors import InputError
from models.recommender import top_k
from training.metrics import hits_matrix, ranking_metrics


def rel(rows: list[list[int]], n_items: int = 6) -> sp.csr_matrix:
    data = [(u, i) for u, items in enumerate(rows) for i in items]
    r, c = zip(*data, strict=True) if data else ([], [])
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), n_items))


def test_single_user_by_hand():
    # Recommended [3, 1, 4, 0], relevant {1, 0, 5}: hits at ranks 2 and 4.
    ids = np.array([[3, 1, 4, 0]])
    report = ranking_metrics(ids, rel([[1, 0, 5]]), k=4)
    assert report.precision == pytest.approx(2 / 4)
    assert report.recall == pytest.approx(2 / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert report.ndcg == pytest.approx(dcg / idcg)
    # AP@4 = (P@2 + P@4) / min(3, 4) = (1/2 + 2/4) / 3
    assert report.map == pytest.approx((0.5 + 0.5) / 3)
    assert report.hit_rate == 1.0
    assert report.coverage == pytest.approx(4 / 6)


def test_perfect_and_empty_lists():
    perfect = ranking_metrics(np.array([[2, 5, 0]]), rel([[5, 2]]), k=3)
    assert perfect.ndcg == pytest.approx(1.0) and perfect.map == pytest.approx(1.0)
    assert perfect.recall == 1.0 and perfect.precision == pytest.approx(2 / 3)
    padded = ranking_metrics(np.array([[-1, -1, -1]]), rel([[1]]), k=3)
    assert (padded.ndcg, padded.recall, padded.hit_rate, padded.coverage) == (0, 0, 0, 0)


def test_users_without_relevant_items_are_left_out_not_zero():
    ids = np.array([[1, 2], [1, 2]])
    report = ranking_metrics(ids, rel([[1], []]), k=2)
    assert report.users == 1 and report.users_without_relevant == 1
    assert report.hit_rate == 1.0  # not 0.5
    nobody = ranking_metrics(ids, rel([[], []]), k=2)
    assert math.isnan(nobody.ndcg) and nobody.users == 0


def test_k_cuts_the_list_and_means_over_users():
    ids = np.array([[0, 1, 2], [3, 4, 5]])
    report = ranking_metrics(ids, rel([[2], [3]]), k=2)
    # user 0's hit is at rank 3, beyond k=2; user 1 hits at rank 1.
    assert report.hit_rate == pytest.approx(0.5)
    assert report.ndcg == pytest.approx(0.5)
    assert report.recall == pytest.approx(0.5)
    assert report.as_dict()["ndcg@2"] == report.ndcg


def test_ties_are_broken_by_item_index_so_metrics_are_deterministic():
    scores = np.array([[0.5, 0.9, 0.9, 0.1]], dtype=np.float32)
    ids = top_k(scores, 2)
    assert ids.tolist() == [[1, 2]]
    assert ranking_metrics(ids, rel([[2]], n_items=4), k=2).ndcg == pytest.approx(1 / math.log2(3))


def test_novelty_from_training_popularity():
    train = rel([[0], [0], [0], [1]], n_items=2)  # item 0: 3 of 4 users, item 1: 1 of 4
    report = ranking_metrics(np.array([[1], [1], [1], [1]]), rel([[1]] * 4, 2), k=1, train=train)
    assert report.novelty == pytest.approx(-math.log2((1 + 1) / (4 + 1)))


def test_bad_arguments():
    with pytest.raises(InputError, match="k=5"):
        ranking_metrics(np.array([[1, 2]]), rel([[1]]), k=5)
    with pytest.raises(InputError, match="ids"):
        hits_matrix(np.array([[9]]), rel([[1]]))
