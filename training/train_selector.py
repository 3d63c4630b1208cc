"""The ``tailor train selector --slot …`` job: logged campaigns → selector → MLflow → gate.

Fits the outcome model on the earlier campaigns, estimates on the later ones
(off-policy, ``training.selector_job.evaluate_selector``), and registers the
selector that should serve: the learned policy (epsilon-greedy) when it beats the
logging policy, the best single variant and the current champion; otherwise the
constant policy of the best variant, with the reason logged on the run.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd

from features.segments import SegmentSet
from features.settings import FeatureConfig
from features.store import EventStore
from models.selector import ALL_CUSTOMER_FEATURES, Policy, Selector, slot_model
from training.selector_job import (
    SelectorEvaluation,
    build_selector_data,
    evaluate_selector,
    store_features_at,
)
from training.tracking import (
    CHAMPION,
    champion_version,
    configure,
    default_pip_requirements,
    ensure_experiment,
)

logger = logging.getLogger(__name__)
EXPERIMENT = "selectors"
PYFUNC_CODE = Path(__file__).with_name("selector_pyfunc.py")


@dataclass
class SelectorOutcome:
    """What one selector training run produced and decided."""

    evaluation: SelectorEvaluation
    selector: Selector
    version: int
    promoted: bool
    reason: str
    calibration_error: float


def registered_name(slot: str) -> str:
    return f"tailor-selector-{slot}"


def reliability(predicted: np.ndarray, observed: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed reward per predicted-probability decile."""
    edges = np.unique(np.quantile(predicted, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, predicted, side="right") - 1, 0, len(edges) - 2)
    frame = pd.DataFrame({"bin": which, "predicted": predicted, "observed": observed})
    return frame.groupby("bin").agg(
        predicted=("predicted", "mean"), observed=("observed", "mean"), n=("observed", "size")
    )


def train_selector(
    *,
    home: Path,
    store: EventStore,
    config: FeatureConfig,
    slot: str,
    reward: str | None = None,
    holdout_share: float = 0.4,
    epsilon: float = 0.1,
    progress: Callable[[str], None] | None = None,
) -> SelectorOutcome:
    """Fit, evaluate off-policy, log, register and gate a selector for ``slot``."""
    say = progress or (lambda message: None)
    features_at = store_features_at(store, config, SegmentSet(()))
    data = build_selector_data(
        store.read("events"),
        store.read("content"),
        store.read("customers"),
        features_at,
        slot=slot,
        reward=reward,
    )
    starts = data.table.groupby("campaign_id")["ts"].transform("min")
    holdout = (starts >= starts.quantile(1 - holdout_share)).to_numpy()
    say(f"{slot}: {len(data.table):,} logged decisions; {int(holdout.sum()):,} held out")
    model = slot_model(slot, ensemble=5).fit(data.features[~holdout], data.rewards[~holdout])

    client = configure(home)
    name = registered_name(slot)
    champion = champion_version(client, name)
    champion_value = None
    if champion is not None and champion.run_id:
        champion_run = client.get_run(champion.run_id).data
        # Values are comparable only under the same reward definition.
        if champion_run.params.get("reward") == data.reward:
            champion_value = champion_run.metrics.get("promoted_value")
        else:
            say(
                f"{slot}: the champion was judged by {champion_run.params.get('reward')!r}, "
                f"this run by {data.reward!r}: not compared"
            )
    evaluation = evaluate_selector(model, data, holdout, champion_value=champion_value)
    learned = evaluation.promoted == "learned"
    policy = (
        Policy("epsilon_greedy", epsilon=epsilon)
        if learned
        else Policy("constant", content_id=evaluation.best_single)
    )
    selector = Selector(slot, data.reward, model, policy, data.candidates, data.content)
    promoted_value = (
        evaluation.estimates["DR"].value if learned else evaluation.best_single_estimate.value
    )
    beats_champion = champion_value is None or promoted_value > champion_value
    say(f"{slot}: {evaluation.reason}")

    predicted = model.predict(data.features[holdout])
    table = reliability(predicted, data.rewards[holdout])
    calibration_error = float(
        np.average(np.abs(table["predicted"] - table["observed"]), weights=table["n"])
    )
    experiment_id = ensure_experiment(client, EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"selector-{slot}") as run:
        mlflow.log_params(
            {
                "slot": slot,
                "reward": data.reward,
                "policy": policy.kind,
                "policy_content": policy.content_id or "",
                "epsilon": epsilon if learned else 0.0,
                "holdout_share": holdout_share,
                **{f"model.{k}": v for k, v in model.get_params().items()},
            }
        )
        metrics = {
            "logging_value": evaluation.logging_value,
            "best_single_value": evaluation.best_single_estimate.value,
            "promoted_value": promoted_value,
            "calibration_error": calibration_error,
            "decisions": float(len(data.table)),
        }
        for estimator, estimate in evaluation.estimates.items():
            metrics[f"learned.{estimator}"] = estimate.value
            metrics[f"learned.{estimator}.ci_low"] = estimate.ci_low
            metrics[f"learned.{estimator}.ci_high"] = estimate.ci_high
        mlflow.log_metrics(metrics)
        mlflow.set_tags(
            {"tailor.gate": evaluation.reason[:5000], "tailor.best_single": evaluation.best_single}
        )
        figure, axis = plt.subplots(figsize=(5, 5))
        axis.plot([0, table["predicted"].max()], [0, table["predicted"].max()], "k--", lw=1)
        axis.plot(table["predicted"], table["observed"], "o-")
        axis.set(
            xlabel="predicted reward",
            ylabel="observed reward",
            title=f"{slot} outcome model: reliability on held-out campaigns",
        )
        mlflow.log_figure(figure, "figures/reliability.png")
        plt.close(figure)
        with tempfile.TemporaryDirectory() as tmp:
            saved = selector.save(Path(tmp) / "selector")
            info = mlflow.pyfunc.log_model(
                name="selector",
                python_model=str(PYFUNC_CODE),
                artifacts={"selector": str(saved)},
                pip_requirements=default_pip_requirements(),
                # One decision with every raw customer column the selector reads.
                input_example=pd.DataFrame(
                    {
                        "decision_id": ["example-1"],
                        "country": ["US"],
                        **{c: [0.0] for c in ALL_CUSTOMER_FEATURES},
                        **{c: [0.0] for c in model.feature_names_ if c.startswith("prior_")},
                    }
                ),
                registered_model_name=name,
            )
        logger.debug("selector run %s", run.info.run_id)
    version = int(info.registered_model_version or 0)
    if beats_champion:
        client.set_registered_model_alias(name, CHAMPION, str(version))
        reason = (
            "learned policy promoted: " if learned else "constant best variant promoted: "
        ) + evaluation.reason
    else:
        reason = (
            f"not promoted: {promoted_value:.4f} does not beat the champion's "
            f"{champion_value:.4f}; " + evaluation.reason
        )
    client.set_model_version_tag(name, str(version), "tailor.promotion", reason[:5000])
    return SelectorOutcome(evaluation, selector, version, beats_champion, reason, calibration_error)
