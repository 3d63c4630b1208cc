"""Popularity: every user gets the items with the most (decayed, weighted) interaction."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.recommender import Recommender, register


@register
class PopularityRecommender(Recommender):
    """Items ranked by total interaction strength (or by distinct users).

    Parameters
    ----------
    by : {"strength", "users"}
        Sum of interaction strengths, or number of distinct users.
    """

    name = "popularity"

    def __init__(self, *, by: str = "strength") -> None:
        self.by = by

    popularity_: np.ndarray

    def _fit(self, matrix: sp.csr_matrix) -> None:
        from features.errors import InputError

        if self.by == "strength":
            totals = np.asarray(matrix.sum(axis=0)).ravel()
        elif self.by == "users":
            totals = np.diff(matrix.tocsc().indptr).astype(np.float64)
        else:
            raise InputError("by", self.by, "expected 'strength' or 'users'")
        self.popularity_ = totals.astype(np.float32)

    def _scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(users), self.n_items_)).copy()

    def _item_vectors(self) -> np.ndarray:
        # Not a similarity model: items "similar" to any item are the popular ones.
        return np.broadcast_to(self.popularity_[:, None], (self.n_items_, 1)).copy()

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.popularity_ = arrays["popularity"].astype(np.float32)
