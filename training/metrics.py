"""Ranking metrics over batches of recommendation lists, vectorised.

Conventions (one protocol for every model, so numbers compare):

* ``ids`` is (n_users, n) item indices, best first, ``-1`` for padding;
  ``relevant`` is a users × items sparse matrix (any stored value > 0 is relevant).
* Users with no relevant item are left out of every per-user mean (their metric is
  undefined, not zero); how many were left out is reported.
* recall@k = hits in the top k / number of relevant items;
  precision@k = hits / k; hit rate@k = share of users with at least one hit;
  NDCG@k with binary gains, ``1 / log2(rank + 1)``, ideal = all relevant first;
  MAP@k = mean over users of Σ precision@i · rel_i / min(|relevant|, k).
* coverage@k = distinct recommended items / catalogue size (over all users);
  novelty@k = mean self-information ``-log2(p(i))`` of recommended items, p(i) the
  share of training users who interacted with i.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from features.errors import InputError


@dataclass(frozen=True)
class RankingReport:
    """Mean metrics at one k."""

    k: int
    users: int
    users_without_relevant: int
    precision: float
    recall: float
    ndcg: float
    map: float
    hit_rate: float
    coverage: float
    novelty: float

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Flat ``{"ndcg@10": …}`` mapping, e.g. for MLflow."""
        k = self.k
        return {
            f"{prefix}precision@{k}": self.precision,
            f"{prefix}recall@{k}": self.recall,
            f"{prefix}ndcg@{k}": self.ndcg,
            f"{prefix}map@{k}": self.map,
            f"{prefix}hit_rate@{k}": self.hit_rate,
            f"{prefix}coverage@{k}": self.coverage,
            f"{prefix}novelty@{k}": self.novelty,
        }


def hits_matrix(ids: np.ndarray, relevant: sp.spmatrix) -> np.ndarray:
    """Boolean (n_users, n): whether each recommended item is relevant to its user."""
    ids = np.asarray(ids, dtype=np.int64)
    rel = sp.csr_matrix(relevant)
    if ids.ndim != 2 or ids.shape[0] != rel.shape[0]:
        raise InputError("ids", ids.shape, f"expected ({rel.shape[0]}, n)")
    if ids.size and ids.max() >= rel.shape[1]:
        raise InputError("ids", int(ids.max()), f"item index beyond {rel.shape[1] - 1}")
    rows = np.repeat(np.arange(ids.shape[0]), ids.shape[1])
    cols = ids.ravel()
    valid = cols >= 0
    out = np.zeros(ids.size, dtype=bool)
    if valid.any():
        values = np.asarray(rel[rows[valid], cols[valid]]).ravel()
        out[valid] = values > 0
    return out.reshape(ids.shape)


def ranking_metrics(
    ids: np.ndarray,
    relevant: sp.spmatrix,
    k: int,
    *,
    train: sp.spmatrix | None = None,
) -> RankingReport:
    """All ranking metrics at ``k`` (see the module docstring for definitions).

    Parameters
    ----------
    ids : numpy.ndarray of int, shape (n_users, n), n >= k
        Recommendations, best first, ``-1`` padded.
    relevant : scipy.sparse matrix, shape (n_users, n_items)
        Held-out relevant items per user.
    k : int
        Cut-off.
    train : scipy.sparse matrix, optional
        Training interactions, for novelty (item popularity); novelty is NaN without it.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if k < 1 or ids.shape[1] < k:
        raise InputError("k", k, f"must be in [1, {ids.shape[1]}] (the list length)")
    rel = sp.csr_matrix(relevant)
    rel.eliminate_zeros()
    top = ids[:, :k]
    hits = hits_matrix(top, rel)
    n_relevant = np.diff(rel.indptr)
    evaluable = n_relevant > 0
    n_hits = hits.sum(axis=1)

    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal_counts = np.minimum(n_relevant, k)
    cumulative = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = cumulative[ideal_counts]
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    average_precision = (precision_at_i * hits).sum(axis=1) / np.maximum(ideal_counts, 1)

    def mean(values: np.ndarray) -> float:
        return float(values[evaluable].mean()) if evaluable.any() else float("nan")

    recommended = top[top >= 0]
    n_items = rel.shape[1]
    coverage = len(np.unique(recommended)) / n_items if n_items else float("nan")
    novelty = float("nan")
    if train is not None and len(recommended):
        train_csc = sp.csc_matrix(train)
        users_per_item = np.diff(train_csc.indptr).astype(np.float64)
        share = (users_per_item + 1.0) / (train_csc.shape[0] + 1.0)  # +1: never -log2(0)
        novelty = float(-np.log2(share[recommended]).mean())

    with np.errstate(divide="ignore", invalid="ignore"):
        return RankingReport(
            k=k,
            users=int(evaluable.sum()),
            users_without_relevant=int((~evaluable).sum()),
            precision=mean(n_hits / k),
            recall=mean(n_hits / np.maximum(n_relevant, 1)),
            ndcg=mean(np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)),
            map=mean(average_precision),
            hit_rate=mean((n_hits > 0).astype(np.float64)),
            coverage=coverage,
            novelty=novelty,
        )
