"""MLflow "models from code" definition of a recommender as a pyfunc model.

:func:`training.tracking.log_recommender_run` passes this file's *path* to
``mlflow.pyfunc.log_model(python_model=...)``; MLflow copies it into the logged
model and executes it when the model is loaded, so the last line
(``set_model``) is what registers the model object. Nothing imports this module
for any other reason.

The weights are not pickled: the logged model carries the recommender's own saved
directory (``model.npz`` + ``manifest.json``) as the artifact named
:data:`ARTIFACT_KEY`, and :meth:`RecommenderPyfunc.load_context` reads it back with
:func:`models.recommender.load_recommender`.

Input (one row per request): ``user`` (int, the row of the training matrix, ``-1``
for a user unknown at fit time), optionally ``n`` (int, items wanted; default
:data:`DEFAULT_N`) and ``history`` (list of item indices the user interacted with:
scores item-kNN / EASE, and those items are never recommended). Output, long format:
one row per recommended item with ``request`` (the input row's position), ``user``,
``rank`` (0 = best), ``item`` and ``score``; rows with fewer candidates than ``n``
simply have fewer output rows.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
import scipy.sparse as sp
from mlflow.pyfunc import PythonModel, PythonModelContext

from features.errors import InputError
from models.pipeline import RecommenderPipeline, load_artifact
from models.recommender import Recommender

ARTIFACT_KEY = "recommender"
DEFAULT_N = 10
OUTPUT_COLUMNS = ("request", "user", "rank", "item", "score")


class RecommenderPyfunc(PythonModel):
    """Pyfunc wrapper around a saved :class:`models.recommender.Recommender`."""

    recommender: Recommender

    def load_context(self, context: PythonModelContext) -> None:
        """Load the recommender from the artifact directory MLflow downloaded."""
        model = load_artifact(context.artifacts[ARTIFACT_KEY])
        # A two-stage pipeline answers here with its first stage (ALS candidates):
        # reranking needs the customer's live event history, which only the
        # Tailor service has.
        self.recommender = (
            model.generators["als"] if isinstance(model, RecommenderPipeline) else model
        )

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Top items for each input row.

        Parameters
        ----------
        context : mlflow.pyfunc.PythonModelContext or None
            Unused (the recommender is loaded in :meth:`load_context`).
        model_input : pandas.DataFrame
            Columns ``user`` (int), optional ``n`` (int >= 1) and ``history``
            (sequence of item indices, or missing).
        params : dict, optional
            Unused.

        Returns
        -------
        pandas.DataFrame
            Columns ``request``, ``user``, ``rank``, ``item`` (int64) and
            ``score`` (float32), best first within each request.
        """
        return recommend_frame(self.recommender, model_input)


def recommend_frame(recommender: Recommender, frame: pd.DataFrame) -> pd.DataFrame:
    """Run :meth:`Recommender.recommend` for the rows of ``frame`` (see the module doc)."""
    if "user" not in frame.columns:
        raise InputError("user", list(frame.columns), "the input needs a 'user' column")
    users = frame["user"].to_numpy(dtype=np.int64)
    if "n" in frame.columns:
        wanted = frame["n"].fillna(DEFAULT_N).to_numpy(dtype=np.int64)
    else:
        wanted = np.full(len(users), DEFAULT_N, dtype=np.int64)
    if len(wanted) and wanted.min() < 1:
        raise InputError("n", int(wanted.min()), "must be at least 1")
    history = _history_matrix(frame, recommender.n_items_)
    n_max = int(wanted.max()) if len(wanted) else DEFAULT_N
    ids, scores = recommender.recommend(users, history, n=n_max)
    rank = np.broadcast_to(np.arange(n_max), ids.shape)
    keep = (ids >= 0) & (rank < wanted[:, None])
    rows = np.broadcast_to(np.arange(len(users))[:, None], ids.shape)
    return pd.DataFrame(
        {
            "request": rows[keep].astype(np.int64),
            "user": np.broadcast_to(users[:, None], ids.shape)[keep],
            "rank": rank[keep].astype(np.int64),
            "item": ids[keep],
            "score": scores[keep],
        },
        columns=list(OUTPUT_COLUMNS),
    )


def _history_matrix(frame: pd.DataFrame, n_items: int) -> sp.csr_matrix:
    """CSR (len(frame), n_items) of ones at each row's ``history`` items."""
    if "history" not in frame.columns:
        return sp.csr_matrix((len(frame), n_items), dtype=np.float32)
    lists = [
        np.asarray([] if value is None or _is_missing(value) else value, dtype=np.int64)
        for value in frame["history"]
    ]
    lengths = np.array([len(items) for items in lists], dtype=np.int64)
    cols = np.concatenate(lists) if lists else np.empty(0, dtype=np.int64)
    if len(cols) and (cols.min() < 0 or cols.max() >= n_items):
        raise InputError("history", int(cols.max()), f"item indices must be in [0, {n_items})")
    rows = np.repeat(np.arange(len(frame)), lengths)
    matrix = sp.csr_matrix(
        (np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(frame), n_items)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _is_missing(value: object) -> bool:
    return isinstance(value, float) and np.isnan(value)


mlflow.models.set_model(RecommenderPyfunc())
