"""The ``tailor train selector --slot …`` job: logged campaigns → selector → MLflow → gate.

Fits the outcome model and estimates it off-policy on rows it did not learn from —
the later campaigns, or customer folds with cross-fitted predictions
(``training.selector_job``) — and registers the selector that should serve: the
learned policy when it beats the logging policy, the best constant policy and the
current champion (loaded from the registry and re-estimated on the same rows);
otherwise the constant policy of the best variant. Either way the served policy
explores ``selectors.epsilon`` with exact propensities, so its own log can evaluate
every variant later. Every setting that changes the result is logged on the run.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, Schema, TensorSpec

from features.data.store import EventStore
from features.errors import InputError
from features.segments import SegmentSet
from features.settings import FeatureConfig
from models.policy import default_content
from models.registry import load_version
from models.selector import CustomerDesign, Selector, candidate_scores
from training.promotion import set_champion
from training.selector_job import (
    SelectorData,
    SelectorEvaluation,
    SplitPlan,
    build_selector_data,
    customer_folds,
    evaluate_selector,
    plan_split,
    select_feature_set,
    served_policy,
    slot_outcome_model,
    store_features_at,
)
from training.settings import SelectorConfig
from training.tracking import (
    champion_version,
    configure,
    default_pip_requirements,
    ensure_experiment,
    parent_tags,
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
    split: SplitPlan
    notes: list[str]


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
    selectors: SelectorConfig | None = None,
    defaults: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> SelectorOutcome:
    """Fit, evaluate off-policy, log, register and gate a selector for ``slot``.

    Parameters
    ----------
    selectors : SelectorConfig, optional
        Reward, population, window, split, exploration, seed (default: the defaults).
    defaults : dict of str to str, optional
        The rules' default content per slot: what serving gives customers without
        consent to personalisation, and so what the gate evaluates for them.
    """
    settings = selectors or SelectorConfig()
    say = progress or (lambda message: None)
    features_at = store_features_at(store, config, SegmentSet(()))
    requested = settings.offer_reward if slot == "offer" else settings.subject_reward
    data = build_selector_data(
        store.read("events"),
        store.read("content"),
        store.read("customers"),
        features_at,
        slot=slot,
        reward=requested,
        window=timedelta(hours=settings.attribution_window_hours),
        margin_rate=settings.margin_rate,
        population=settings.offer_population,
        min_positive_rewards=settings.min_positive_rewards,
    )
    for note in data.notes:
        say(f"{slot}: {note}")
    plan = plan_split(data.table, settings)
    holdout = plan.holdout
    learnable = data.learnable
    say(f"{slot}: {len(data.table):,} logged decisions; hold-out: {plan.reason}")
    if plan.kind == "campaign":
        fit_rows = ~holdout
        folds = customer_folds(data.table["customer_id"], settings.folds, settings.seed)
        best, losses = select_feature_set(
            data, folds, fit_rows, seed=settings.seed, with_scores=False
        )
        model = slot_outcome_model(slot, best.columns, ensemble=5, random_state=settings.seed).fit(
            data.features[fit_rows & learnable], data.rewards[fit_rows & learnable]
        )
        members = candidate_scores(
            model, data.table[holdout], data.content, data.candidates, data.design
        )
    else:
        best, losses = select_feature_set(
            data,
            plan.fold,
            np.ones(len(data.table), dtype=bool),
            seed=settings.seed,
            with_scores=True,
        )
        if best.members is None:
            raise AssertionError("cross-fitting scores every row")
        members = best.members
        model = slot_outcome_model(slot, best.columns, ensemble=5, random_state=settings.seed).fit(
            data.features[learnable], data.rewards[learnable]
        )
    if len(losses) > 1:
        shown = ", ".join(f"{name} {loss:.5f}" for name, loss in losses.items())
        say(f"{slot}: feature set {best.name!r} (cross-validated loss: {shown})")
    losses = {k: v for k, v in losses.items() if np.isfinite(v)}

    client = configure(home)
    name = registered_name(slot)
    champion, champion_note = _current_champion(client, name, data)
    if champion_note:
        say(f"{slot}: {champion_note}")
    default = default_content(defaults or {}, slot, data.candidates)
    try:
        evaluation = evaluate_selector(
            members,
            data,
            holdout,
            config=settings,
            default=default,
            champion=champion,
            random_state=settings.seed,
        )
    except InputError as error:
        if champion is None or error.field != "champion":
            raise
        champion_note = f"the champion is not compared: {error}"
        say(f"{slot}: {champion_note}")
        champion = None
        evaluation = evaluate_selector(
            members, data, holdout, config=settings, default=default, random_state=settings.seed
        )
    learned = evaluation.promoted == "learned"
    policy = served_policy(settings, None if learned else evaluation.best_single)
    selector = Selector(
        slot, data.reward, model, policy, data.candidates, data.content, data.design
    )
    promoted_estimate = evaluation.estimates["DR"] if learned else evaluation.best_single_estimate
    champion_estimate = evaluation.champion_estimate
    beats_champion = champion_estimate is None or (
        learned or promoted_estimate.value > champion_estimate.value
    )
    say(f"{slot}: {evaluation.reason}")

    if plan.kind == "campaign":
        predicted = model.predict(data.features[holdout & learnable])
        observed = data.rewards[holdout & learnable]
    else:
        logged = pd.Index(data.candidates).get_indexer(
            pd.Index(data.table["content_id"].astype(str))
        )
        scored = learnable & (logged >= 0)
        predicted = members.mean(axis=0)[scored, logged[scored]]  # out of fold
        observed = data.rewards[scored]
    table = reliability(predicted, observed)
    calibration_error = float(
        np.average(np.abs(table["predicted"] - table["observed"]), weights=table["n"])
    )
    experiment_id = ensure_experiment(client, EXPERIMENT)
    with mlflow.start_run(
        experiment_id=experiment_id, tags=parent_tags(), run_name=f"selector-{slot}"
    ) as run:
        mlflow.log_params(
            {
                "slot": slot,
                "reward": data.reward,
                "reward_requested": requested,
                "population": data.population,
                "population_requested": settings.offer_population if slot == "offer" else "all",
                "attribution_window_hours": settings.attribution_window_hours,
                "margin_rate": settings.margin_rate,
                "split": plan.kind,
                "split_requested": settings.split,
                "holdout_share": settings.holdout_share,
                "folds": plan.folds,
                "min_holdout_campaigns": settings.min_holdout_campaigns,
                "min_holdout_rows": settings.min_holdout_rows,
                "min_positive_rewards": settings.min_positive_rewards,
                "seed": settings.seed,
                "feature_set": best.name,
                "policy": policy.kind,
                "policy_content": policy.content_id or "",
                "epsilon": policy.epsilon,
                "temperature": policy.temperature,
                "default_content": default,
                **{f"model.{k}": v for k, v in model.get_params().items()},
            }
        )
        metrics = {
            "logging_value": evaluation.logging_value,
            "best_single_value": evaluation.best_single_estimate.value,
            "promoted_value": promoted_estimate.value,
            "calibration_error": calibration_error,
            "decisions": float(len(data.table)),
            "evaluated_decisions": float(evaluation.rows),
            **{f"feature_set_loss.{k}": v for k, v in losses.items()},
            **{f"constant.{c}.DR": e.value for c, e in evaluation.singles.items()},
        }
        if champion_estimate is not None:
            metrics["champion.DR"] = champion_estimate.value
        for estimator, estimate in evaluation.estimates.items():
            metrics[f"learned.{estimator}"] = estimate.value
            metrics[f"learned.{estimator}.ci_low"] = estimate.ci_low
            metrics[f"learned.{estimator}.ci_high"] = estimate.ci_high
        mlflow.log_metrics(metrics)
        mlflow.set_tags(
            {
                "tailor.gate": evaluation.reason[:5000],
                "tailor.best_single": evaluation.best_single,
                "tailor.split": plan.reason[:5000],
                "tailor.notes": " | ".join([*data.notes, champion_note])[:5000],
            }
        )
        figure, axis = plt.subplots(figsize=(5, 5))
        axis.plot([0, table["predicted"].max()], [0, table["predicted"].max()], "k--", lw=1)
        axis.plot(table["predicted"], table["observed"], "o-")
        axis.set(
            xlabel="predicted reward",
            ylabel="observed reward",
            title=f"{slot} outcome model: reliability on held-out rows",
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
                # One decision with every raw customer column the selector reads; only
                # the decision id is required (an unknown feature is NaN, as in training).
                input_example=_input_example(data.design),
                signature=ModelSignature(inputs=_input_schema(data.design)),
                registered_model_name=name,
            )
        logger.debug("selector run %s", run.info.run_id)
    version = int(info.registered_model_version or 0)
    verdict = "learned policy" if learned else f"constant best variant ({evaluation.best_single})"
    explores = f" exploring {policy.epsilon:.0%}" if policy.epsilon else ""
    if beats_champion:
        set_champion(client, name, version)
        reason = f"{verdict}{explores} promoted: " + evaluation.reason
    else:
        assert champion_estimate is not None
        reason = (
            f"not promoted: {verdict}{explores} ({promoted_estimate.value:.4f}) does not beat "
            f"the champion re-estimated on the same rows ({champion_estimate.value:.4f}); "
            + evaluation.reason
        )
    client.set_model_version_tag(name, str(version), "tailor.promotion", reason[:5000])
    return SelectorOutcome(
        evaluation, selector, version, beats_champion, reason, calibration_error, plan, data.notes
    )


def _current_champion(
    client: MlflowClient, name: str, data: SelectorData
) -> tuple[Selector | None, str]:
    """The registered champion selector, when it is comparable with this run."""
    version = champion_version(client, name)
    if version is None:
        return None, ""
    if version.run_id:
        judged = client.get_run(version.run_id).data.params.get("reward")
        # Values are comparable only under the same reward definition.
        if judged != data.reward:
            return None, (
                f"the champion (version {version.version}) was judged by {judged!r}, this run "
                f"by {data.reward!r}: not compared"
            )
    loaded = load_version(client, name, version.version)
    if not isinstance(loaded, Selector):
        return None, f"the champion (version {version.version}) is not a selector: not compared"
    return loaded, f"champion version {version.version} re-estimated on this run's rows"


def _input_schema(design: CustomerDesign) -> Schema:
    """The pyfunc's inputs: the decision id (required) and the raw customer columns."""
    columns: list[ColSpec | TensorSpec] = [
        ColSpec("string", "decision_id"),
        ColSpec("string", "country", required=False),
    ]
    columns += [ColSpec("double", c, required=False) for c in design.numeric]
    columns += [ColSpec("string", c, required=False) for c, _ in design.categories]
    columns += [ColSpec("double", c, required=False) for c in design.priors]
    return Schema(columns)


def _input_example(design: CustomerDesign) -> pd.DataFrame:
    """One decision with every raw customer column ``design`` reads."""
    example: dict[str, list[object]] = {"decision_id": ["example-1"], "country": ["US"]}
    example |= {c: [0.0] for c in design.numeric}
    example |= {c: [levels[0]] for c, levels in design.categories}
    example |= {c: [0.0] for c in design.priors}
    return pd.DataFrame(example)
