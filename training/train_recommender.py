"""The ``tailor train recommender`` job: snapshot → two-stage model → MLflow → registry → gate.

I/O lives here (the store, the snapshot folder, MLflow); the modelling is
:func:`training.recommend_job.run_recommender_job`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow

from features.snapshot import latest_snapshot, load_snapshot
from features.store import EventStore
from models.candidates import interaction_log_from_store
from training.recommend_job import (
    JobResult,
    RecommenderJobConfig,
    run_recommender_job,
)
from training.tracking import (
    LoggedRecommender,
    PromotionDecision,
    configure,
    ensure_experiment,
    log_recommender_run,
    mlflow_metric_name,
    promote,
)

logger = logging.getLogger(__name__)
REGISTERED_NAME = "tailor-recommender"
EXPERIMENT = "recommenders"


@dataclass
class TrainOutcome:
    """What one training run produced and decided."""

    result: JobResult
    logged: LoggedRecommender
    decision: PromotionDecision


def train_recommender(
    *,
    home: Path,
    store: EventStore,
    features_dir: Path,
    config: RecommenderJobConfig,
    registered_name: str = REGISTERED_NAME,
    metric: str = "ndcg@10",
    floor: float = 0.0,
    min_relative_gain: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Train on the latest snapshot's data, log everything, register, and run the gate."""
    snapshot = load_snapshot(latest_snapshot(features_dir))
    log, items = interaction_log_from_store(store, snapshot)
    if progress is not None:
        progress(
            f"{len(log):,} interactions of {log['user_id'].nunique():,} consenting customers "
            f"before {snapshot.as_of.isoformat()}"
        )
    result = run_recommender_job(log, items, config, progress=progress)

    client = configure(home)
    experiment_id = ensure_experiment(client, EXPERIMENT)
    reports = result.reports
    metrics = {
        f"{model}.{name}": value
        for model, by_k in reports.items()
        for report in by_k.values()
        for name, value in report.as_dict().items()
    }
    metrics.update(
        {
            f"slice.{slice_name}.{model}.{name}": value
            for slice_name, models in result.slices.items()
            for model, report in models.items()
            for name, value in report.as_dict().items()
            if name.startswith(("ndcg", "recall"))
        }
    )
    metrics.update(reports["reranker"][config.ks[0]].as_dict())  # the registered model's own
    for k in config.ks[1:]:
        metrics.update(reports["reranker"][k].as_dict())
    comparison = {
        metric_name: {
            model: {k: getattr(report, metric_name) for k, report in by_k.items()}
            for model, by_k in reports.items()
        }
        for metric_name in ("ndcg", "recall", "precision", "map", "coverage")
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name="recommender"):
        for i, trial in enumerate(result.tuning):
            with mlflow.start_run(run_name=f"als-trial-{i}", nested=True):
                mlflow.log_params({k: v for k, v in trial.items() if k != "ndcg@10"})
                mlflow.log_metric(mlflow_metric_name("ndcg@10"), trial["ndcg@10"])
        logged = log_recommender_run(
            client,
            result.pipeline(),
            registered_name=registered_name,
            experiment=EXPERIMENT,
            config=config.model_dump(mode="json"),
            data_window={
                "as_of": snapshot.as_of.isoformat(),
                "first_event": str(log["ts"].min()),
                "interactions": len(log),
                "customers": int(log["user_id"].nunique()),
                "test_users": result.test_users,
            },
            metrics=metrics,
            comparison=comparison,
            feature_importance=result.feature_importance,
        )
    decision = promote(
        client,
        registered_name,
        logged.version,
        metric=metric,
        floor=floor,
        min_relative_gain=min_relative_gain,
    )
    return TrainOutcome(result, logged, decision)
