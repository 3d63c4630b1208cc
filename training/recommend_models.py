"""The models a recommender run fits: candidate generators, baselines, ALS tuning, the reranker.

The pieces of :func:`training.recommend_job.run_recommender_job` that build models from
its configuration: the two candidate generators (ALS, item-kNN), the single models every
run is compared with, the candidates the generators give, a seeded random search over
ALS's parameters on the inner split, and the LambdaRank reranker fitted on the label
period.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.candidates import Index
from models.ease import EASE_MAX_ITEMS, EASERecommender
from models.factorization import ALSRecommender, BPRRecommender
from models.knn import ItemKNNRecommender
from models.pipeline import generate_candidates
from models.popularity import PopularityRecommender
from models.recommender import Recommender
from models.reranker import LambdaRankReranker
from training.metrics import ranking_metrics
from training.recommend_config import RecommenderJobConfig

logger = logging.getLogger(__name__)


def _generators(als_params: dict[str, Any], config: RecommenderJobConfig) -> dict[str, Recommender]:
    return {
        "als": ALSRecommender(**als_params, random_state=config.seed),
        "item_knn": ItemKNNRecommender(k=100, similarity="bm25"),
    }


def _baselines(
    config: RecommenderJobConfig, index: Index, generators: dict[str, Recommender]
) -> dict[str, Recommender]:
    models: dict[str, Recommender] = {
        "popularity": PopularityRecommender(),
        "item_knn": generators["item_knn"],
        "als": generators["als"],
        "bpr": BPRRecommender(factors=64, iterations=100, random_state=config.seed, num_threads=1),
    }
    if len(index.item_ids) <= EASE_MAX_ITEMS:
        models["ease"] = EASERecommender(l2=200.0)
    return models


def _candidates(
    generators: dict[str, Recommender],
    users: np.ndarray,
    history: sp.csr_matrix,
    recent: sp.csr_matrix,
    categories: np.ndarray,
    config: RecommenderJobConfig,
) -> pd.DataFrame:
    return generate_candidates(
        generators,
        users,
        history,
        recent,
        categories,
        k=config.candidates_per_generator,
        mode=config.mode,
    )


def _fit_reranker(
    features: pd.DataFrame, labels: np.ndarray, config: RecommenderJobConfig
) -> LambdaRankReranker | None:
    frame = features.assign(_label=labels)
    useful = frame.groupby("u")["_label"].transform("max") > 0
    frame = frame[useful.to_numpy()]
    if frame.empty:
        logger.warning("no relevant candidate in the label period: no reranker")
        return None
    groups = frame.groupby("u", sort=True).size().to_numpy()
    columns = [c for c in frame.columns if c not in ("u", "i", "_label")]
    model = LambdaRankReranker(**config.reranker, random_state=config.seed)
    return model.fit(frame[columns], frame["_label"].to_numpy(), groups)


def _tune_als(
    matrix: sp.csr_matrix,
    relevant: sp.csr_matrix,
    users: np.ndarray,
    config: RecommenderJobConfig,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Seeded random search over ALS factors, regularisation, alpha, iterations."""
    base = dict(config.als)
    if config.tune_budget == 0 or len(users) == 0:
        return base, []
    rng = np.random.default_rng(config.seed)
    space: dict[str, list[float]] = {
        "factors": [16, 32, 64, 128],
        "regularization": [0.005, 0.01, 0.05, 0.1, 0.5],
        "alpha": [1.0, 5.0, 10.0, 20.0, 40.0],
        "iterations": [10, 15, 25],
    }
    trials = [base] + [
        {name: _plain(values[int(rng.integers(len(values)))]) for name, values in space.items()}
        for _ in range(config.tune_budget - 1)
    ]
    exclude = matrix[users] if config.mode == "new" else None
    results = []
    for params in trials:
        model = ALSRecommender(**params, random_state=config.seed).fit(matrix)
        ids, _ = model.recommend(users, matrix[users], n=10, exclude=exclude)
        ndcg = ranking_metrics(ids, relevant[users], 10).ndcg
        results.append({**{k: _plain(v) for k, v in params.items()}, "ndcg@10": ndcg})
    best = max(results, key=lambda r: r["ndcg@10"])
    return {k: v for k, v in best.items() if k != "ndcg@10"}, results


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
