"""Matrix factorisation recommenders backed by ``implicit``: ALS (default) and BPR.

Scores are ``user_factors[users] @ item_factors.T`` — one BLAS call per batch. A
user unknown at fit time (row ``-1``) gets factors solved from their history
(ALS) or the mean user (BPR), so a returning customer with new history is never
scored as nobody.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

# Imported before any thread limit is taken: threadpoolctl only limits the BLAS
# libraries already loaded, and implicit may load its own.
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from threadpoolctl import threadpool_limits

from models.recommender import Recommender, register


class FactorModel(Recommender):
    """Shared state and scoring of the factor models."""

    user_factors_: np.ndarray
    item_factors_: np.ndarray

    def _implicit_model(self) -> Any:
        """The unfitted implicit model this recommender wraps."""
        raise NotImplementedError

    def _fit(self, matrix: sp.csr_matrix) -> None:
        # implicit checks BLAS threads when the model is created: limit before that.
        with threadpool_limits(1, "blas"):
            model = self._implicit_model()
            model.fit(matrix, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        vectors = self._user_vectors(users, history)
        return vectors @ self.item_factors_.T

    def _user_vectors(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        known = (users >= 0) & (users < self.n_users_)
        vectors = np.empty((len(users), self.item_factors_.shape[1]), dtype=np.float32)
        vectors[known] = self.user_factors_[users[known]]
        if (~known).any():
            vectors[~known] = self._cold_vectors(history[np.flatnonzero(~known)])
        return vectors

    def _cold_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        mean = self.user_factors_.mean(axis=0) if len(self.user_factors_) else 0.0
        return np.broadcast_to(mean, (history.shape[0], self.item_factors_.shape[1])).copy()

    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors_ = arrays["user_factors"].astype(np.float32)
        self.item_factors_ = arrays["item_factors"].astype(np.float32)


@register
class ALSRecommender(FactorModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) via ``implicit``.

    Parameters
    ----------
    factors : int
        Latent dimensions.
    regularization : float
        L2 penalty.
    alpha : float
        Confidence scale: confidence = 1 + alpha · interaction strength.
    iterations : int
        ALS sweeps.
    random_state : int
        Seed of the factor initialisation.
    num_threads : int
        Threads for implicit's solver (0: all cores); BLAS is held at one thread.
    """

    name = "als"

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 15,
        random_state: int = 0,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _implicit_model(self) -> Any:
        return AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.random_state,
            num_threads=self.num_threads,
        )

    def _cold_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        """Least-squares user factors for histories unseen at fit time (one solve)."""
        v = self.item_factors_.astype(np.float64)
        gram = v.T @ v
        eye = self.regularization * np.eye(v.shape[1])
        out = np.zeros((history.shape[0], v.shape[1]), dtype=np.float32)
        for i in range(history.shape[0]):  # cold users in a batch are few
            start, stop = history.indptr[i], history.indptr[i + 1]
            if start == stop:
                continue
            idx = history.indices[start:stop]
            conf = self.alpha * history.data[start:stop].astype(np.float64)
            vi = v[idx]
            a = gram + (vi.T * conf) @ vi + eye
            b = (vi.T * (1.0 + conf)).sum(axis=1)
            out[i] = np.linalg.solve(a, b)
        return out


@register
class BPRRecommender(FactorModel):
    """Bayesian personalised ranking (Rendle et al. 2009) via ``implicit``.

    Parameters
    ----------
    factors : int
        Latent dimensions (implicit adds one for the item bias).
    learning_rate, regularization : float
        SGD step and L2 penalty.
    iterations : int
        Epochs.
    random_state : int
        Seed of initialisation and sampling.
    num_threads : int
        Threads (0: all cores). SGD threads race (hogwild), so a fit is repeatable
        from ``random_state`` only with ``num_threads=1``.
    """

    name = "bpr"

    def __init__(
        self,
        *,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int = 0,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _implicit_model(self) -> Any:
        return BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=self.random_state,
            num_threads=self.num_threads,
        )
