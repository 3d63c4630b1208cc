"""LightGBM LambdaRank reranker over (user, candidate item) rows.

The feature list is data: it is stored with the model and checked when the model
predicts, so a train / serve mismatch fails loudly (naming the missing features)
instead of scoring garbage. The booster is saved in LightGBM's own text format
beside a JSON manifest — no pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Self

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.errors import InputError, NotFoundError
from models.estimator import Estimator

ARTIFACT_FORMAT = 1


class LambdaRankReranker(Estimator):
    """Learning-to-rank with LightGBM's LambdaRank objective (a scikit-learn estimator).

    Parameters
    ----------
    n_estimators : int
        Boosting rounds.
    learning_rate : float
        Shrinkage.
    num_leaves : int
        Leaves per tree.
    min_child_samples : int
        Minimum rows per leaf.
    eval_at : int
        NDCG cut-off the objective emphasises (``lambdarank_truncation_level``).
    random_state : int
        Seed.
    num_threads : int
        LightGBM threads (0: default).

    Attributes
    ----------
    booster_ : lightgbm.Booster
        The fitted (or loaded) model.
    feature_names_ : list of str
        The feature columns, in the booster's order.
    """

    def __init__(
        self,
        *,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        eval_at: int = 10,
        random_state: int = 0,
        num_threads: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.eval_at = eval_at
        self.random_state = random_state
        self.num_threads = num_threads

    booster_: lgb.Booster
    feature_names_: list[str]

    def fit(self, features: pd.DataFrame, labels: np.ndarray, groups: np.ndarray) -> Self:
        """Fit on rows grouped by user.

        Parameters
        ----------
        features : pandas.DataFrame, shape (n_rows, n_features)
            Numeric features; NaN means missing (LightGBM routes it).
        labels : numpy.ndarray, shape (n_rows,)
            Relevance grade per row (0 = not relevant).
        groups : numpy.ndarray of int, shape (n_groups,)
            Row count of each consecutive user group; sums to n_rows.
        """
        labels = np.asarray(labels)
        groups = np.asarray(groups, dtype=np.int64)
        if len(features) != len(labels):
            raise InputError("labels", len(labels), f"expected {len(features)} rows")
        if groups.sum() != len(features):
            raise InputError("groups", int(groups.sum()), f"must sum to {len(features)} rows")
        if not (labels > 0).any():
            raise InputError("labels", "all zero", "no relevant row to learn from")
        feature_names = [str(c) for c in features.columns]
        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [self.eval_at],
            "lambdarank_truncation_level": max(self.eval_at, 20),
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "seed": self.random_state,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
            "num_threads": self.num_threads,
        }
        data = lgb.Dataset(
            features.to_numpy(dtype=np.float64),
            label=labels,
            group=groups,
            feature_name=feature_names,
            free_raw_data=True,
        )
        self.booster_ = lgb.train(params, data, num_boost_round=self.n_estimators)
        self.feature_names_ = feature_names
        return self

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Scores, shape (n_rows,); higher ranks first. Columns are matched by name."""
        self._check_fitted()
        missing = [f for f in self.feature_names_ if f not in features.columns]
        if missing:
            raise InputError("features", missing, "missing columns the reranker was trained on")
        values = features[self.feature_names_].to_numpy(dtype=np.float64)
        return np.asarray(self.booster_.predict(values), dtype=np.float64)

    def feature_importance(self) -> dict[str, float]:
        """Total gain per feature."""
        self._check_fitted()
        gains = self.booster_.feature_importance(importance_type="gain")
        return dict(zip(self.feature_names_, map(float, gains), strict=True))

    def save(self, path: Path) -> Path:
        """Write ``booster.txt`` and ``manifest.json`` under ``path``."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(path / "booster.txt"))
        manifest = {
            "format": ARTIFACT_FORMAT,
            "class": "lambdarank_reranker",
            "params": self.get_params(),
            "features": self.feature_names_,
        }
        (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> LambdaRankReranker:
        """Read a reranker written by :meth:`save`."""
        path = Path(path)
        if not (path / "manifest.json").exists():
            raise NotFoundError(f"no reranker at {path} (manifest.json missing)")
        manifest = json.loads((path / "manifest.json").read_text())
        if manifest.get("format") != ARTIFACT_FORMAT:
            raise InputError("format", manifest.get("format"), f"expected {ARTIFACT_FORMAT}")
        model = cls(**manifest["params"])
        model.booster_ = lgb.Booster(model_file=str(path / "booster.txt"))
        model.feature_names_ = list(manifest["features"])
        if model.booster_.feature_name() != model.feature_names_:
            raise InputError(
                "features", model.booster_.feature_name(), "booster and manifest disagree"
            )
        return model
