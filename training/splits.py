"""Temporal train / test splits of interaction logs, and the matrices they feed.

Two protocols, both by time so a model never trains on the future:

* **per user**: each user's last ``test_share`` of interactions (by time) are the
  test set; users with fewer than two interactions stay wholly in training;
* **global cut-off**: everything before ``cutoff`` trains, everything at or after
  tests (users first seen after the cut-off are cold).

Two evaluation modes on top of a split:

* ``"new"`` — the classic CF protocol: items a user had in training are neither
  relevant nor recommendable;
* ``"all"`` — any test item is relevant, seen or not (an item viewed but not bought
  may well be the right email), and nothing is filtered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.errors import InputError

Mode = Literal["new", "all"]
REQUIRED = ("user_id", "item_id", "ts")


@dataclass
class Split:
    """A split, as matrices over one shared user and item index.

    Attributes
    ----------
    train, test : scipy.sparse.csr_matrix of float32, shape (n_users, n_items)
        Summed interaction weights.
    relevant : scipy.sparse.csr_matrix, shape (n_users, n_items)
        Test items that count as hits under ``mode``.
    exclude : scipy.sparse.csr_matrix or None
        What recommend must filter under ``mode`` (training items in "new", nothing in "all").
    user_ids, item_ids : numpy.ndarray of str
        Row and column ids.
    mode : str
        "new" or "all".
    """

    train: sp.csr_matrix
    test: sp.csr_matrix
    relevant: sp.csr_matrix
    exclude: sp.csr_matrix | None
    user_ids: np.ndarray
    item_ids: np.ndarray
    mode: Mode

    @property
    def test_users(self) -> np.ndarray:
        """Rows with at least one relevant test item."""
        return np.flatnonzero(np.diff(self.relevant.indptr) > 0)

    def cold_users(self) -> np.ndarray:
        """Test users with no training interaction."""
        users = self.test_users
        return users[np.diff(self.train.indptr)[users] == 0]


def _check(log: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in log.columns]
    if missing:
        raise InputError("interactions", list(log.columns), f"missing columns {missing}")
    if "weight" not in log.columns:
        return log.assign(weight=1.0)
    return log.assign(weight=log["weight"].fillna(1.0))


def per_user_split(
    log: pd.DataFrame, *, test_share: float = 0.2
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's last ``test_share`` of interactions (at least one) go to test.

    Ties in time are broken by the log's row order, so the split is reproducible.
    """
    if not 0 < test_share < 1:
        raise InputError("test_share", test_share, "must be strictly between 0 and 1")
    log = _check(log).reset_index(drop=True)
    order = log.sort_values(["user_id", "ts"], kind="stable").index.to_numpy()
    ordered = log.loc[order]
    rank = ordered.groupby("user_id").cumcount().to_numpy()
    size = ordered.groupby("user_id")["ts"].transform("size").to_numpy()
    n_test = np.where(size >= 2, np.maximum(1, np.floor(size * test_share)), 0)
    is_test = rank >= size - n_test
    return ordered[~is_test].reset_index(drop=True), ordered[is_test].reset_index(drop=True)


def global_split(log: pd.DataFrame, *, cutoff: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Interactions before ``cutoff`` train; at or after it, test."""
    log = _check(log)
    before = (log["ts"] < pd.Timestamp(cutoff)).to_numpy()
    return log[before].reset_index(drop=True), log[~before].reset_index(drop=True)


def build_split(train: pd.DataFrame, test: pd.DataFrame, *, mode: Mode = "new") -> Split:
    """Matrices of a split over the union of their users and items (sorted ids)."""
    if mode not in ("new", "all"):
        raise InputError("mode", mode, "expected 'new' or 'all'")
    train, test = _check(train), _check(test)
    user_ids = np.unique(
        np.concatenate([train["user_id"].astype(str), test["user_id"].astype(str)])
    )
    item_ids = np.unique(
        np.concatenate([train["item_id"].astype(str), test["item_id"].astype(str)])
    )
    train_m = _matrix(train, user_ids, item_ids)
    test_m = _matrix(test, user_ids, item_ids)
    relevant = (test_m > 0).astype(np.float32).tocsr()
    if mode == "new":
        seen = (train_m > 0).astype(np.float32)
        relevant = (relevant - relevant.multiply(seen)).tocsr()
        relevant.eliminate_zeros()
        exclude: sp.csr_matrix | None = train_m
    else:
        exclude = None
    return Split(train_m, test_m, relevant, exclude, user_ids, item_ids, mode)


def _matrix(log: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray) -> sp.csr_matrix:
    rows = np.searchsorted(user_ids, log["user_id"].astype(str).to_numpy())
    cols = np.searchsorted(item_ids, log["item_id"].astype(str).to_numpy())
    matrix = sp.csr_matrix(
        (log["weight"].to_numpy(dtype=np.float32), (rows, cols)),
        shape=(len(user_ids), len(item_ids)),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix
