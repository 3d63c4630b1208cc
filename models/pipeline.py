"""The two-stage recommender as one artifact: candidate generators, reranker, index.

Saved as a folder: ``generators/<name>/`` (each a recommender artifact),
``reranker/`` (LightGBM text + manifest), ``index.npz`` (user and item ids,
item category codes and prices) and ``manifest.json`` — no pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from features.errors import InputError, NotFoundError
from models.candidates import Index
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

    def get_params(self) -> dict[str, Any]:
        """The settings and each stage's parameters (JSON-serialisable)."""
        params: dict[str, Any] = dict(self.settings)
        for name, model in self.generators.items():
            params[f"generator.{name}"] = model.get_params()
        if self.reranker is not None:
            params["reranker"] = self.reranker.get_params()
        return params

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
        return cls(generators, reranker, index, categories, prices, manifest["settings"])


def load_artifact(path: Path) -> Recommender | RecommenderPipeline:
    """Load whichever model artifact ``path`` holds: a recommender or a pipeline."""
    manifest = Path(path) / "manifest.json"
    if not manifest.exists():
        raise NotFoundError(f"no model artifact at {path} (manifest.json missing)")
    if json.loads(manifest.read_text()).get("class") == RecommenderPipeline.name:
        return RecommenderPipeline.load(path)
    return load_recommender(path)
