"""EASE (Steck 2019): a closed-form item-item model, B = I − P · diag(1/diag(P)), P = (XᵀX + λI)⁻¹.

Dense n_items × n_items, so only for catalogues that fit in memory (``max_items``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from features.errors import InputError
from models.recommender import Recommender, register

EASE_MAX_ITEMS = 20_000
"""Most items EASE takes: its item × item matrix is dense (20,000² float32 is 1.6 GB)."""


@register
class EASERecommender(Recommender):
    """Embarrassingly shallow autoencoder.

    Parameters
    ----------
    l2 : float
        Ridge penalty λ.
    max_items : int
        Refuse larger catalogues (the item × item matrix is dense float32).
    """

    name = "ease"

    def __init__(self, *, l2: float = 200.0, max_items: int = EASE_MAX_ITEMS) -> None:
        self.l2 = l2
        self.max_items = max_items

    weights_: np.ndarray

    def _fit(self, matrix: sp.csr_matrix) -> None:
        n = matrix.shape[1]
        if n > self.max_items:
            raise InputError(
                "n_items", n, f"EASE needs a dense {n}×{n} matrix; max_items is {self.max_items}"
            )
        gram = (matrix.T @ matrix).toarray().astype(np.float64)
        gram[np.diag_indices(n)] += self.l2
        p = np.linalg.inv(gram)
        weights = -p / np.diag(p)[None, :]
        weights[np.diag_indices(n)] = 0.0
        self.weights_ = weights.astype(np.float32)

    def _scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        return np.asarray(history @ self.weights_, dtype=np.float32)

    def _item_vectors(self) -> np.ndarray:
        return self.weights_.T

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.weights_ = arrays["weights"].astype(np.float32)
