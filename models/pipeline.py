"""The two-stage recommender as one artifact: candidate generators, reranker, index.

Saved as a folder: ``generators/<name>/`` (each a recommender artifact),
``reranker/`` (LightGBM text + manifest), ``index.npz`` (user and item ids,
item category codes and prices) and ``manifest.json`` — no pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.errors import InputError, NotFoundError
from models.candidates import (
    DECAYS,
    Decay,
    Index,
    category_popularity_candidates,
    generator_candidates,
    own_history_candidates,
    pair_features,
    ranked_lists,
    union_candidates,
)
from models.recommender import Recommender, load_recommender
from models.reranker import LambdaRankReranker

ARTIFACT_FORMAT = 1


@dataclass
class RecommenderPipeline:
    """Generators + reranker over one id index, with the settings that built them."""

    name: ClassVar[str] = "recommender_pipeline"

    generators: dict[str, Recommender]
    reranker: LambdaRankReranker | None
    index: Index
    categories: np.ndarray
    prices: np.ndarray | None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def decay(self) -> Decay:
        """How the pipeline's features age interactions (artifacts written before the
        setting existed measured age from ``as_of``)."""
        value = str(self.settings.get("decay", "as_of"))
        if value not in DECAYS:
            raise InputError("settings.decay", value, f"expected one of {DECAYS}")
        return cast(Decay, value)

    def get_params(self) -> dict[str, Any]:
        """The settings and each stage's parameters (JSON-serialisable)."""
        params: dict[str, Any] = dict(self.settings)
        for name, model in self.generators.items():
            params[f"generator.{name}"] = model.get_params()
        if self.reranker is not None:
            params["reranker"] = self.reranker.get_params()
        return params

    def rank(
        self,
        users: np.ndarray,
        history: sp.csr_matrix,
        recent: sp.csr_matrix,
        log: pd.DataFrame,
        *,
        as_of: pd.Timestamp,
        n: int,
        model_users: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The two-stage ranking of ``users``: candidates from every generator, pair
        features from ``log`` before ``as_of``, the reranker's order.

        Parameters
        ----------
        users : numpy.ndarray of int
            Rows of ``history`` (the index's users).
        history, recent : scipy.sparse.csr_matrix, users × items of the index
            Decayed interactions and the few most recent items
            (:func:`models.candidates.interaction_matrix`, ``recent_history``).
        log : pandas.DataFrame
            ``user_id, item_id, ts, event_type``: what the pair features read.
        model_users : numpy.ndarray of int, optional
            The generators' rows of ``users`` (default: the same); ``-1`` scores a
            user from ``history`` alone, as one unseen at fit time.

        Returns
        -------
        ids, scores : numpy.ndarray, shape (len(users), n)
            Item columns best first (``-1`` padded) and their reranker scores.
        """
        candidates = generate_candidates(
            self.generators,
            users,
            history,
            recent,
            self.categories,
            k=int(self.settings.get("candidates_per_generator", 50)),
            mode=str(self.settings.get("mode", "all")),
            model_users=model_users,
        )
        featured = pair_features(
            candidates,
            log,
            self.index,
            self.categories,
            as_of=as_of,
            prices=self.prices,
            half_life_days=float(self.settings.get("half_life_days", 14.0)),
            decay=self.decay,
        )
        if self.reranker is not None and len(featured):
            scores = self.reranker.predict(featured)
        else:
            scores = np.zeros(len(featured))
        ids = ranked_lists(featured, scores, users, n)
        lookup = pd.Series(scores, index=pd.MultiIndex.from_arrays([featured["u"], featured["i"]]))
        rows = np.repeat(users, n)
        wanted = pd.MultiIndex.from_arrays([rows, ids.ravel()])
        found = lookup.reindex(wanted).to_numpy(dtype=np.float64).reshape(ids.shape)
        return ids, np.where(ids >= 0, found, -np.inf)

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, model in self.generators.items():
            model.save(path / "generators" / name)
        if self.reranker is not None:
            self.reranker.save(path / "reranker")
        arrays: dict[str, np.ndarray] = {
            "user_ids": self.index.user_ids.astype(str),
            "item_ids": self.index.item_ids.astype(str),
            "categories": self.categories,
        }
        if self.prices is not None:
            arrays["prices"] = self.prices
        with open(path / "index.npz", "wb") as fh:
            np.savez(fh, allow_pickle=False, **arrays)
        manifest = {
            "format": ARTIFACT_FORMAT,
            "class": "recommender_pipeline",
            "generators": sorted(self.generators),
            "reranker": self.reranker is not None,
            "settings": self.settings,
            "n_users": len(self.index.user_ids),
            "n_items": len(self.index.item_ids),
        }
        (path / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: Path) -> RecommenderPipeline:
        path = Path(path)
        if not (path / "manifest.json").exists():
            raise NotFoundError(f"no recommender pipeline at {path} (manifest.json missing)")
        manifest = json.loads((path / "manifest.json").read_text())
        if manifest.get("class") != "recommender_pipeline":
            raise InputError("class", manifest.get("class"), "expected recommender_pipeline")
        if manifest.get("format") != ARTIFACT_FORMAT:
            raise InputError("format", manifest.get("format"), f"expected {ARTIFACT_FORMAT}")
        generators = {
            name: load_recommender(path / "generators" / name) for name in manifest["generators"]
        }
        reranker = LambdaRankReranker.load(path / "reranker") if manifest["reranker"] else None
        with np.load(path / "index.npz", allow_pickle=False) as data:
            index = Index(data["user_ids"], data["item_ids"])
            categories = data["categories"]
            prices = data["prices"] if "prices" in data.files else None
        for name, generator in generators.items():
            # Generator rows are index rows (rank() passes one for the other): files
            # from before and after a rewrite (an erasure) read together must fail
            # rather than give one customer another's factors.
            if generator.user_ids_ is not None and not np.array_equal(
                generator.user_ids_.astype(str), index.user_ids.astype(str)
            ):
                raise InputError(
                    f"generators.{name}",
                    f"{len(generator.user_ids_)} users",
                    f"{path}: the generator and the index ({len(index.user_ids)} users) "
                    "disagree on the users; load it again",
                )
        return cls(generators, reranker, index, categories, prices, manifest["settings"])


def load_artifact(path: Path) -> Recommender | RecommenderPipeline:
    """Load whichever model artifact ``path`` holds: a recommender or a pipeline."""
    manifest = Path(path) / "manifest.json"
    if not manifest.exists():
        raise NotFoundError(f"no model artifact at {path} (manifest.json missing)")
    if json.loads(manifest.read_text()).get("class") == RecommenderPipeline.name:
        return RecommenderPipeline.load(path)
    return load_recommender(path)


def generate_candidates(
    generators: dict[str, Recommender],
    users: np.ndarray,
    history: sp.csr_matrix,
    recent: sp.csr_matrix,
    categories: np.ndarray,
    *,
    k: int,
    mode: str,
    model_users: np.ndarray | None = None,
) -> pd.DataFrame:
    """The reranker's candidates: each generator's top ``k``, item-kNN around the
    few most recent items (the session's intent), the popular items of the user's top
    category and, in ``all`` mode, the user's own items. ``model_users``: as in
    :func:`models.candidates.generator_candidates`."""
    exclude = history if mode == "new" else None
    parts = [
        generator_candidates(
            name, model, users, history, k=k, exclude=exclude, model_users=model_users
        )
        for name, model in generators.items()
    ]
    if "item_knn" in generators:
        parts.append(
            generator_candidates(
                "recent_knn",
                generators["item_knn"],
                users,
                recent,
                k=k,
                exclude=exclude,
                model_users=model_users,
            )
        )
    parts.append(category_popularity_candidates(users, history, categories, k=k, exclude=exclude))
    if mode == "all":
        parts.append(own_history_candidates(users, history, k=k))
    return union_candidates(parts)
