"""The recommender contract: fit on a CSR matrix, recommend in batches, save / load.

In the spirit of implicit's ``RecommenderBase``: a users × items float32 CSR matrix
goes in; ``(item indices, scores)`` arrays come out; the model keeps no training
data — the caller passes each user's history rows, which scoring uses (item-kNN,
EASE) and which seen-item filtering removes. Artifacts are an ``.npz`` of arrays
(``allow_pickle=False``) and a JSON manifest; no pickle.

Batch recommendation is one dense score block per batch of users (one matrix
product), seen items masked through the CSR structure, business filters as an
item mask, and ``argpartition`` for the top n — no per-user Python loop.
"""

from __future__ import annotations

import importlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from features.errors import InputError, NotFoundError
from models.estimator import Estimator

ARTIFACT_FORMAT = 1
_REGISTRY: dict[str, type[Recommender]] = {}
BUILTIN = ("models.popularity", "models.factorization", "models.knn", "models.ease")


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a recommender loadable by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def check_interactions(interactions: sp.spmatrix, *, name: str = "interactions") -> sp.csr_matrix:
    """Validate and return a float32 CSR matrix with sorted indices."""
    if not sp.issparse(interactions):
        raise InputError(name, type(interactions).__name__, "expected a scipy sparse matrix")
    matrix = sp.csr_matrix(interactions, dtype=np.float32)
    if matrix.nnz and (not np.isfinite(matrix.data).all() or (matrix.data < 0).any()):
        raise InputError(name, "values", "must be finite and non-negative")
    matrix.sort_indices()
    return matrix


class Recommender(Estimator, ABC):
    """Base of every recommender: a scikit-learn estimator (:class:`Estimator`).

    Subclasses set ``name``, implement :meth:`_fit`, :meth:`_scores`,
    :meth:`_item_vectors` (for :meth:`similar_items`) and the two artifact hooks.
    Hyper-parameters are keyword-only ``__init__`` arguments, stored as given.
    """

    name: ClassVar[str]
    n_items_: int
    n_users_: int
    user_ids_: np.ndarray | None
    item_ids_: np.ndarray | None

    # ------------------------------------------------------------------ contract
    def fit(
        self,
        interactions: sp.spmatrix,
        *,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
    ) -> Self:
        """Fit on a users × items matrix of non-negative interaction strengths.

        ``user_ids`` / ``item_ids`` (external ids of the rows / columns) are kept,
        saved with the model, and let callers map ids to rows with
        :meth:`user_rows` and :meth:`item_rows`.
        """
        matrix = check_interactions(interactions)
        if matrix.shape[1] == 0:
            raise InputError("interactions", matrix.shape, "has no items")
        for name, ids, size in (
            ("user_ids", user_ids, matrix.shape[0]),
            ("item_ids", item_ids, matrix.shape[1]),
        ):
            if ids is not None and len(ids) != size:
                raise InputError(name, len(ids), f"expected {size} ids, one per matrix row/column")
        # The model's own state first: a fit that fails leaves the estimator unfitted.
        self._fit(matrix)
        self.n_users_, self.n_items_ = matrix.shape
        self.user_ids_ = None if user_ids is None else np.asarray(user_ids).astype(str)
        self.item_ids_ = None if item_ids is None else np.asarray(item_ids).astype(str)
        return self

    def user_rows(self, ids: np.ndarray | list[str]) -> np.ndarray:
        """Row of each external user id; ``-1`` for ids unknown at fit time."""
        return _rows(self.user_ids_, ids, "user_ids")

    def item_rows(self, ids: np.ndarray | list[str]) -> np.ndarray:
        """Column of each external item id; ``-1`` for unknown ids."""
        return _rows(self.item_ids_, ids, "item_ids")

    def score(self, users: np.ndarray, history: sp.spmatrix) -> np.ndarray:
        """Dense scores, shape (len(users), n_items), float32.

        Parameters
        ----------
        users : numpy.ndarray of int, shape (b,)
            Rows of the training matrix (``-1`` for a user unknown at fit time).
        history : scipy.sparse matrix, shape (b, n_items)
            Each user's interactions (row i belongs to ``users[i]``).
        """
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        history = check_interactions(history, name="history")
        if history.shape != (len(users), self.n_items_):
            raise InputError("history", history.shape, f"expected ({len(users)}, {self.n_items_})")
        return np.asarray(self._scores(users, history), dtype=np.float32)

    def recommend(
        self,
        users: np.ndarray,
        history: sp.spmatrix,
        n: int = 10,
        *,
        exclude: sp.spmatrix | None | str = "history",
        allowed: np.ndarray | None = None,
        batch_size: int = 1024,
        num_threads: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` items per user.

        Parameters
        ----------
        users, history
            As for :meth:`score`.
        n : int
            Items per user.
        exclude : sparse matrix, None or "history"
            Items never to return per user (same shape as ``history``):
            ``"history"`` (default) filters everything seen, ``None`` nothing, or
            pass e.g. the purchases only.
        allowed : numpy.ndarray of bool, shape (n_items,), optional
            Business filter: only these items may be returned (in stock, category
            allow-list...). Applied before the top-n, so n are returned when n exist.
        batch_size : int
            Users scored per dense block.
        num_threads : int
            Blocks scored in parallel (0: one per core).

        Returns
        -------
        ids : numpy.ndarray of int64, shape (len(users), n)
            Item indices, best first; ``-1`` pads rows with fewer than n candidates.
        scores : numpy.ndarray of float32, shape (len(users), n)
            Their scores; ``-inf`` where padded.
        """
        self._check_fitted()
        if n < 1:
            raise InputError("n", n, "must be at least 1")
        users = np.asarray(users, dtype=np.int64)
        history = check_interactions(history, name="history")
        if history.shape != (len(users), self.n_items_):
            raise InputError("history", history.shape, f"expected ({len(users)}, {self.n_items_})")
        mask = None
        if isinstance(exclude, str):
            if exclude != "history":
                raise InputError("exclude", exclude, "expected a sparse matrix, None or 'history'")
            mask = history
        elif exclude is not None:
            mask = check_interactions(exclude, name="exclude")
            if mask.shape != history.shape:
                raise InputError("exclude", mask.shape, f"expected {history.shape}")
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=bool)
            if allowed.shape != (self.n_items_,):
                raise InputError("allowed", allowed.shape, f"expected ({self.n_items_},)")
        k = min(n, self.n_items_)
        ids = np.full((len(users), n), -1, dtype=np.int64)
        scores = np.full((len(users), n), -np.inf, dtype=np.float32)

        def run(start: int) -> None:
            stop = min(start + batch_size, len(users))
            # history was validated once above; score each block directly.
            block = np.asarray(
                self._scores(users[start:stop], history[start:stop]), dtype=np.float32
            )
            if mask is not None:
                mask_rows(block, mask[start:stop])
            if allowed is not None:
                block[:, ~allowed] = -np.inf
            top = top_k(block, k)
            top_scores = np.take_along_axis(block, top, axis=1)
            valid = np.isfinite(top_scores)
            ids[start:stop, :k] = np.where(valid, top, -1)
            scores[start:stop, :k] = np.where(valid, top_scores, -np.inf)

        starts = range(0, len(users), batch_size)
        threads = min(num_threads or os.cpu_count() or 1, len(starts))
        if threads <= 1:
            for start in starts:
                run(start)
        else:
            # Batches in parallel (numpy and BLAS release the GIL); BLAS itself is
            # held to one thread so the two pools never nest.
            with threadpool_limits(1, "blas"), ThreadPoolExecutor(threads) as pool:
                list(pool.map(run, starts))
        return ids, scores

    def similar_items(self, items: np.ndarray, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most similar to each of ``items`` (cosine), itself excluded."""
        self._check_fitted()
        items = np.asarray(items, dtype=np.int64)
        if len(items) and (items.min() < 0 or items.max() >= self.n_items_):
            raise InputError("items", items.tolist(), f"indices must be in [0, {self.n_items_})")
        vectors = self._item_vectors()
        block = _cosine_rows(vectors, items)
        block[np.arange(len(items)), items] = -np.inf
        k = min(n, self.n_items_)
        top = top_k(block, k)
        top_scores = np.take_along_axis(block, top, axis=1)
        valid = np.isfinite(top_scores)
        return np.where(valid, top, -1), np.where(valid, top_scores, -np.inf).astype(np.float32)

    # ------------------------------------------------------------------ artifacts
    def save(self, path: Path) -> Path:
        """Write ``<path>/model.npz`` and ``<path>/manifest.json``; returns ``path``."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = self._arrays()
        if self.user_ids_ is not None:
            arrays["_user_ids"] = self.user_ids_
        if self.item_ids_ is not None:
            arrays["_item_ids"] = self.item_ids_
        with open(path / "model.npz", "wb") as fh:
            np.savez(fh, allow_pickle=False, **arrays)
        manifest = {
            "format": ARTIFACT_FORMAT,
            "class": self.name,
            "params": self.get_params(),
            "n_users": self.n_users_,
            "n_items": self.n_items_,
            "arrays": sorted(arrays),
        }
        (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return path

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _fit(self, matrix: sp.csr_matrix) -> None:
        """Set the model's learned attributes from ``matrix`` (``fit`` sets the shared
        ones, ``n_users_`` …, once this returns)."""

    @abstractmethod
    def _scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray: ...

    @abstractmethod
    def _item_vectors(self) -> np.ndarray | sp.csr_matrix: ...

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _restore(self, arrays: dict[str, np.ndarray]) -> None: ...

    def _keep_users(self, keep: np.ndarray) -> None:
        """Keep only the per-user rows where ``keep`` (bool, shape (n_users,)) is set —
        how an erased user leaves the model (:mod:`models.erasure`).

        Per-user state is, by convention, the learned arrays named ``user_*_`` (one
        row per user, in ``user_ids_`` order: the factor models' ``user_factors_``);
        models with none (popularity, item-kNN, EASE) keep nothing per user. New
        arrays are assigned, never written into: a copy of the model may share the
        old ones while it is serving.
        """
        for name in _user_arrays(vars(self)):
            setattr(self, name, getattr(self, name)[keep])


def load_recommender(path: Path) -> Recommender:
    """Load any recommender saved with :meth:`Recommender.save`."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise NotFoundError(f"no recommender at {path} (manifest.json missing)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != ARTIFACT_FORMAT:
        raise InputError("format", manifest.get("format"), f"expected {ARTIFACT_FORMAT}")
    for module in BUILTIN:
        importlib.import_module(module)
    cls = _REGISTRY.get(manifest["class"])
    if cls is None:
        raise InputError("class", manifest["class"], f"expected one of {sorted(_REGISTRY)}")
    model = cls(**manifest["params"])
    with np.load(path / "model.npz", allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    model.n_users_ = int(manifest["n_users"])
    model.n_items_ = int(manifest["n_items"])
    model.user_ids_ = arrays.pop("_user_ids", None)
    model.item_ids_ = arrays.pop("_item_ids", None)
    model._restore(arrays)
    # Files from before and after a rewrite (an erasure) read together disagree on the
    # users: fail (and load again) rather than give one customer another's rows.
    rows = {"_user_ids": model.user_ids_} | {n: vars(model)[n] for n in _user_arrays(vars(model))}
    for name, values in rows.items():
        if values is not None and len(values) != model.n_users_:
            raise InputError(
                name, len(values), f"{path}: expected {model.n_users_} rows (manifest n_users)"
            )
    return model


def recommender_names() -> frozenset[str]:
    """The ``class`` of every loadable recommender (as its manifest names it)."""
    for module in BUILTIN:
        importlib.import_module(module)
    return frozenset(_REGISTRY)


# ---------------------------------------------------------------------- helpers
def _user_arrays(attributes: Mapping[str, object]) -> list[str]:
    """The learned per-user arrays among ``attributes``: ``user_*_`` ndarrays."""
    return [
        name
        for name, value in attributes.items()
        if name.startswith("user_")
        and name.endswith("_")
        and name != "user_ids_"
        and isinstance(value, np.ndarray)
    ]


def _rows(known: np.ndarray | None, ids: np.ndarray | list[str], name: str) -> np.ndarray:
    if known is None:
        raise NotFoundError(f"the model was fitted without {name}; pass them to fit()")
    return pd.Index(known).get_indexer(pd.Index(np.asarray(ids).astype(str))).astype(np.int64)


def business_filter(
    n_items: int,
    *,
    in_stock: np.ndarray | None = None,
    categories: np.ndarray | None = None,
    allowed_categories: list[str] | set[str] | None = None,
) -> np.ndarray:
    """Item mask for :meth:`Recommender.recommend`'s ``allowed``: in stock only, and/or
    only items whose category is in ``allowed_categories``."""
    mask = np.ones(n_items, dtype=bool)
    if in_stock is not None:
        stock = np.asarray(in_stock)
        if stock.shape != (n_items,):
            raise InputError("in_stock", stock.shape, f"expected ({n_items},)")
        mask &= stock.astype(bool)
    if allowed_categories is not None:
        if categories is None:
            raise InputError("categories", None, "needed to apply a category allow-list")
        cats = np.asarray(categories).astype(str)
        if cats.shape != (n_items,):
            raise InputError("categories", cats.shape, f"expected ({n_items},)")
        mask &= np.isin(cats, sorted(map(str, allowed_categories)))
    return mask


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest values per row, best first (ties: lower index)."""
    if k >= scores.shape[1]:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    else:
        # Selecting the last k in place is ~3x faster than partitioning a negated copy.
        part = np.argpartition(scores, -k, axis=1)[:, -k:]
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    return np.take_along_axis(part, order, axis=1)


def mask_rows(block: np.ndarray, mask: sp.csr_matrix) -> None:
    """Set block[i, j] = -inf wherever mask[i, j] is stored (vectorised over the CSR)."""
    rows = np.repeat(np.arange(mask.shape[0]), np.diff(mask.indptr))
    block[rows, mask.indices] = -np.inf


def _cosine_rows(vectors: np.ndarray | sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    if sp.issparse(vectors):
        matrix = sp.csr_matrix(vectors, dtype=np.float32)
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        normed = sp.diags(1.0 / norms) @ matrix
        return np.asarray((normed[items] @ normed.T).toarray(), dtype=np.float32)
    dense = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(dense, axis=1)
    norms[norms == 0] = 1.0
    normed = dense / norms[:, None]
    return np.asarray(normed[items] @ normed.T, dtype=np.float32)
