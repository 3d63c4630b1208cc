"""One contract, run against every recommender (STYLE: a planted structure recovered)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from features.errors import InputError, NotFoundError
from models.ease import EASERecommender
from models.factorization import ALSRecommender, BPRRecommender
from models.knn import ItemKNNRecommender
from models.popularity import PopularityRecommender
from models.recommender import Recommender, load_recommender, top_k

N_USERS, N_ITEMS, BLOCK = 80, 40, 20


def planted_blocks(seed: int = 0) -> sp.csr_matrix:
    """Two user groups, each interacting only with its own half of the catalogue."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for user in range(N_USERS):
        block = 0 if user < N_USERS // 2 else BLOCK
        items = block + rng.choice(BLOCK, size=8, replace=False)
        rows += [user] * len(items)
        cols += items.tolist()
    data = rng.uniform(1.0, 3.0, size=len(rows))
    return sp.csr_matrix((data, (rows, cols)), shape=(N_USERS, N_ITEMS), dtype=np.float32)


FACTORIES = {
    "als": lambda: ALSRecommender(factors=8, iterations=10, regularization=0.1),
    "bpr": lambda: BPRRecommender(factors=8, iterations=200, learning_rate=0.05, num_threads=1),
    "item_knn_cosine": lambda: ItemKNNRecommender(k=30),
    "item_knn_bm25": lambda: ItemKNNRecommender(k=30, similarity="bm25"),
    "ease": lambda: EASERecommender(l2=10.0),
}
PERSONALISED = list(FACTORIES)


@pytest.fixture(scope="module")
def interactions() -> sp.csr_matrix:
    return planted_blocks()


@pytest.fixture(scope="module", params=PERSONALISED)
def fitted(request, interactions) -> Recommender:
    return FACTORIES[request.param]().fit(interactions)


class TestContract:
    def test_planted_blocks_are_recovered(self, fitted, interactions):
        users = np.arange(N_USERS)
        ids, _ = fitted.recommend(users, interactions, n=5)
        own_block = np.where(users < N_USERS // 2, 0, 1)[:, None]
        in_block = (ids // BLOCK) == own_block
        assert in_block.mean() >= 0.95, in_block.mean()

    def test_seen_items_are_never_returned_when_filtered(self, fitted, interactions):
        users = np.arange(N_USERS)
        ids, scores = fitted.recommend(users, interactions, n=15)
        seen = interactions.toarray() > 0
        returned = np.zeros_like(seen)
        valid = ids >= 0
        returned[np.repeat(users, ids.shape[1])[valid.ravel()], ids[valid]] = True
        assert not (returned & seen).any()
        assert np.all(np.diff(np.where(valid, scores, -np.inf), axis=1) <= 1e-6)

    def test_without_filtering_seen_items_may_come_back(self, fitted, interactions):
        ids, _ = fitted.recommend(np.arange(N_USERS), interactions, n=5, exclude=None)
        seen = interactions.toarray() > 0
        assert seen[np.arange(N_USERS)[:, None], ids].mean() > 0.25

    def test_business_filter_is_honoured(self, fitted, interactions):
        allowed = np.zeros(N_ITEMS, dtype=bool)
        allowed[::3] = True  # e.g. in stock
        ids, _ = fitted.recommend(np.arange(N_USERS), interactions, n=5, allowed=allowed)
        assert allowed[ids[ids >= 0]].all()

    def test_exclude_only_purchases(self, fitted, interactions):
        purchases = sp.csr_matrix(([1.0], ([0], [3])), shape=interactions.shape, dtype=np.float32)
        ids, _ = fitted.recommend(
            np.array([0]), interactions[[0]], n=N_ITEMS, exclude=purchases[[0]]
        )
        assert 3 not in ids[0] and (ids[0] >= 0).sum() == N_ITEMS - 1

    def test_save_load_gives_identical_output(self, fitted, interactions, tmp_path):
        users = np.arange(N_USERS)
        before = fitted.recommend(users, interactions, n=7)
        loaded = load_recommender(fitted.save(tmp_path / "model"))
        after = loaded.recommend(users, interactions, n=7)
        assert type(loaded) is type(fitted)
        assert loaded.get_params() == fitted.get_params()
        np.testing.assert_array_equal(before[0], after[0])
        np.testing.assert_array_equal(before[1], after[1])
        np.testing.assert_array_equal(
            fitted.similar_items(np.arange(5), 4)[0], loaded.similar_items(np.arange(5), 4)[0]
        )

    def test_artifact_has_no_pickle(self, fitted, tmp_path):
        path = fitted.save(tmp_path / "m")
        with np.load(path / "model.npz", allow_pickle=False) as data:
            assert all(data[name].dtype != object for name in data.files)

    def test_similar_items_stay_in_block(self, fitted):
        ids, _ = fitted.similar_items(np.array([0, 1, 25, 30]), n=3)
        assert (ids[:2] < BLOCK).mean() >= 0.8 and (ids[2:] >= BLOCK).mean() >= 0.8
        assert 0 not in ids[0] and 25 not in ids[2]

    def test_batches_agree_with_one_block(self, fitted, interactions):
        users = np.arange(N_USERS)
        one = fitted.recommend(users, interactions, n=5, batch_size=N_USERS)
        many = fitted.recommend(users, interactions, n=5, batch_size=7)
        np.testing.assert_array_equal(one[0], many[0])

    def test_deterministic_given_random_state(self, fitted, interactions):
        again = type(fitted)(**fitted.get_params()).fit(interactions)
        users = np.arange(10)
        np.testing.assert_array_equal(
            fitted.recommend(users, interactions[:10], n=5)[0],
            again.recommend(users, interactions[:10], n=5)[0],
        )


def test_cold_user_with_history_gets_block_items(interactions):
    als = FACTORIES["als"]().fit(interactions)
    history = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 0], [21, 22, 23])), shape=(1, N_ITEMS))
    ids, _ = als.recommend(np.array([-1]), history, n=5)
    assert (ids[0] >= BLOCK).all()


def test_popularity_ranks_by_total_strength():
    matrix = sp.csr_matrix(np.array([[1, 0, 2], [1, 0, 2], [0, 5, 0]], dtype=np.float32))
    pop = PopularityRecommender().fit(matrix)
    ids, scores = pop.recommend(np.array([0]), matrix[[0]], n=3)
    assert ids[0].tolist() == [1, -1, -1]  # 0 and 2 were seen
    by_users = PopularityRecommender(by="users").fit(matrix)
    ids, _ = by_users.recommend(np.array([2]), matrix[[2]], n=2)
    assert ids[0].tolist() == [0, 2]  # 2 users each; tie broken by index


def test_ease_refuses_a_catalogue_too_large():
    with pytest.raises(InputError, match="max_items"):
        EASERecommender(max_items=10).fit(sp.csr_matrix((3, 11), dtype=np.float32))


def test_bad_input_names_the_field(interactions):
    model = ItemKNNRecommender()
    with pytest.raises(NotFoundError, match="not fitted"):
        model.recommend(np.array([0]), interactions[[0]])
    model.fit(interactions)
    with pytest.raises(InputError, match="n=0"):
        model.recommend(np.array([0]), interactions[[0]], n=0)
    with pytest.raises(InputError, match="allowed"):
        model.recommend(np.array([0]), interactions[[0]], allowed=np.ones(3, dtype=bool))
    with pytest.raises(InputError, match="history"):
        model.recommend(np.array([0, 1]), interactions[[0]])
    with pytest.raises(InputError, match="non-negative"):
        ItemKNNRecommender().fit(-interactions)


def test_top_k_orders_and_breaks_ties_by_index():
    scores = np.array([[0.1, 0.9, 0.9, -np.inf, 0.5]], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [[1, 2, 4]]
    assert top_k(scores, 5).tolist() == [[1, 2, 4, 0, 3]]


def test_id_index_is_kept_and_saved(interactions, tmp_path):
    users = np.array([f"c{i:03d}" for i in range(N_USERS)])
    items = np.array([f"sku-{i}" for i in range(N_ITEMS)])
    model = ItemKNNRecommender().fit(interactions, user_ids=users, item_ids=items)
    assert model.user_rows(["c005", "nobody"]).tolist() == [5, -1]
    assert model.item_rows(np.array(["sku-39", "sku-0"])).tolist() == [39, 0]
    loaded = load_recommender(model.save(tmp_path / "m"))
    assert loaded.item_rows(["sku-7"]).tolist() == [7]
    with pytest.raises(InputError, match="item_ids"):
        ItemKNNRecommender().fit(interactions, item_ids=items[:3])
    with pytest.raises(NotFoundError, match="without user_ids"):
        ItemKNNRecommender().fit(interactions).user_rows(["c001"])


def test_business_filter_in_stock_and_category_allow_list(interactions):
    from models.recommender import business_filter

    in_stock = np.arange(N_ITEMS) % 2 == 0
    categories = np.where(np.arange(N_ITEMS) < BLOCK, "shoes", "bags")
    allowed = business_filter(
        N_ITEMS, in_stock=in_stock, categories=categories, allowed_categories={"bags"}
    )
    assert allowed.sum() == BLOCK // 2 and not allowed[:BLOCK].any()
    model = ALSRecommender(factors=8, iterations=5).fit(interactions)
    ids, _ = model.recommend(np.arange(4), interactions[:4], n=5, allowed=allowed)
    assert allowed[ids[ids >= 0]].all()
    with pytest.raises(InputError, match="categories"):
        business_filter(N_ITEMS, allowed_categories={"bags"})
