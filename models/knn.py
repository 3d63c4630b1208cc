"""Item-kNN: score = history × item-item similarity (cosine or BM25-weighted cosine)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from features.errors import InputError
from models.recommender import Recommender, register


@register
class ItemKNNRecommender(Recommender):
    """Item-item collaborative filtering with the k nearest neighbours of each item.

    Parameters
    ----------
    k : int
        Neighbours kept per item.
    similarity : {"cosine", "bm25"}
        Cosine on raw strengths, or on BM25-weighted ones (damps heavy users).
    shrink : float
        Added to the cosine denominator (shrinks similarities built on few users).
    """

    name = "item_knn"

    def __init__(self, *, k: int = 100, similarity: str = "cosine", shrink: float = 0.0) -> None:
        self.k = k
        self.similarity = similarity
        self.shrink = shrink

    similarity_: sp.csr_matrix

    def _fit(self, matrix: sp.csr_matrix) -> None:
        if self.similarity == "bm25":
            from implicit.nearest_neighbours import bm25_weight

            weighted = sp.csr_matrix(bm25_weight(matrix, K1=100, B=0.8), dtype=np.float32)
        elif self.similarity == "cosine":
            weighted = matrix
        else:
            raise InputError("similarity", self.similarity, "expected 'cosine' or 'bm25'")
        items = weighted.T.tocsr()
        norms = np.sqrt(np.asarray(items.multiply(items).sum(axis=1)).ravel())
        inverse = np.divide(1.0, norms + self.shrink, where=norms > 0, out=np.zeros_like(norms))
        normed = sp.diags(inverse.astype(np.float32)) @ items
        sim = (normed @ normed.T).tocsr()
        sim.setdiag(0)
        sim.eliminate_zeros()
        self.similarity_ = _keep_top_k(sim, self.k)

    def _scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        return np.asarray((history @ self.similarity_).toarray(), dtype=np.float32)

    def _item_vectors(self) -> sp.csr_matrix:
        return self.similarity_

    def similar_items(self, items: np.ndarray, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours by the learned similarity itself (not cosine of its rows)."""
        from models.recommender import top_k

        self._check_fitted()
        items = np.asarray(items, dtype=np.int64)
        block = self.similarity_[items].toarray().astype(np.float32)
        block[block <= 0] = -np.inf
        block[np.arange(len(items)), items] = -np.inf
        top = top_k(block, min(n, self.n_items_))
        scores = np.take_along_axis(block, top, axis=1)
        valid = np.isfinite(scores)
        return np.where(valid, top, -1), np.where(valid, scores, -np.inf).astype(np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        s = self.similarity_
        return {"data": s.data, "indices": s.indices, "indptr": s.indptr}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.similarity_ = sp.csr_matrix(
            (arrays["data"], arrays["indices"], arrays["indptr"]),
            shape=(self.n_items_, self.n_items_),
        )


def _keep_top_k(sim: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest entries of each row (vectorised over the CSR arrays)."""
    counts = np.diff(sim.indptr)
    if (counts <= k).all():
        return sim
    rows = np.repeat(np.arange(sim.shape[0]), counts)
    # Order entries by row, then by value descending; rank within the row.
    order = np.lexsort((-sim.data, rows))
    rank = np.arange(len(order)) - np.repeat(sim.indptr[:-1], counts)
    keep = order[rank < k]
    kept = sp.csr_matrix(
        (sim.data[keep], (rows[keep], sim.indices[keep])), shape=sim.shape, dtype=np.float32
    )
    kept.sort_indices()
    return kept
