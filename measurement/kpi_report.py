"""``tailor report``: the page a marketer reads to see whether personalisation pays.

In order: the verdict on personalisation (the holdout against everyone else, when
there is a holdout); the figures of the whole period by served policy and by model
version; click rate, conversion rate and revenue per recipient over time by policy
and by model version; the same figures by segment; the content policies estimated
off-policy from the logged propensities; and the drift of customer
features and of the service's scores between the two latest snapshots, each
drifted one flagged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from features.errors import InputError
from measurement.kpi import kpis
from measurement.page import Page
from measurement.policies import incrementality, off_policy
from measurement.stats import RateComparison

KPI_FORMATS = {
    "open_rate": "{:.2%}",
    "click_rate": "{:.2%}",
    "conversion_rate": "{:.2%}",
    "revenue_per_recipient": "{:,.2f}",
}
OPE_FORMATS = {
    "value": "{:.2%}",
    "ci_low": "{:.2%}",
    "ci_high": "{:.2%}",
    "effective_sample_size": "{:,.0f}",
}
DRIFT_FORMATS = {
    "psi": "{:.3f}",
    "ks_statistic": "{:.3f}",
    "ks_p_value": "{:.2g}",
    "mean_before": "{:,.3g}",
    "mean_now": "{:,.3g}",
}


@dataclass(frozen=True)
class KpiReport:
    """The report's figures (also what the tests and the MLflow run read)."""

    title: str
    overall: pd.DataFrame
    by_policy: pd.DataFrame
    by_version: pd.DataFrame
    by_segment: pd.DataFrame | None
    daily_by_policy: pd.DataFrame
    daily_by_version: pd.DataFrame
    lift: RateComparison | None
    lift_note: str
    feature_drift: pd.DataFrame | None
    score_drift: pd.DataFrame | None
    drift_note: str
    off_policy: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Per slot of content choices: the served and other policies estimated off-policy
    from the logged propensities (``measurement.policies.off_policy``)."""
    off_policy_notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            f"overall.{k}": float(v) for k, v in self.overall.iloc[0].items() if k in KPI_FORMATS
        }
        out["overall.recipients"] = int(self.overall["recipients"].iloc[0])
        out["overall.decisions"] = int(self.overall["decisions"].iloc[0])
        if self.lift is not None:
            out["holdout_lift.click"] = self.lift.difference
            out["holdout_lift.click_ci_low"] = self.lift.ci_low
            out["holdout_lift.click_ci_high"] = self.lift.ci_high
        if self.feature_drift is not None:
            out["drift.features_flagged"] = int(self.feature_drift["drifted"].sum())
        return out


def build(
    table: pd.DataFrame,
    *,
    title: str,
    segmented: pd.DataFrame | None = None,
    feature_drift: pd.DataFrame | None = None,
    score_drift: pd.DataFrame | None = None,
    drift_note: str = "",
    every: str = "1D",
    level: float = 0.95,
) -> KpiReport:
    """The figures of a report on ``table`` (decisions ⋈ outcomes); ``segmented`` is the
    same table with one row per decision and segment (``measurement.kpi.with_segments``)."""
    if table.empty:
        raise InputError("decisions", 0, "no decision in the period: nothing to report")
    lift, lift_note = None, ""
    try:
        lift = incrementality(table, level=level)
    except InputError as error:
        lift_note = error.reason
    estimates: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    logged = {"slot", "candidates", "propensity", "content_id"} <= set(table.columns)
    for slot in sorted(set(table["slot"]) - {"recommend"}) if logged else []:
        try:
            estimates[slot] = off_policy(table[table["slot"] == slot], level=level)
        except InputError as error:
            notes.append(f"{slot}: {error.reason}")
    return KpiReport(
        title=title,
        overall=kpis(table, every=None),
        by_policy=kpis(table, by="policy", every=None),
        by_version=kpis(table, by="model_version", every=None),
        by_segment=None if segmented is None else kpis(segmented, by="segment", every=None),
        daily_by_policy=kpis(table, by="policy", every=every),
        daily_by_version=kpis(table, by="model_version", every=every),
        lift=lift,
        lift_note=lift_note,
        feature_drift=feature_drift,
        score_drift=score_drift,
        drift_note=drift_note,
        off_policy=estimates,
        off_policy_notes=notes,
    )


def page(report: KpiReport) -> Page:
    """The HTML page of ``report``."""
    out = Page(report.title)
    out.text(verdict(report), kind="verdict")
    out.heading("The whole period")
    out.table(report.overall, formats=KPI_FORMATS)
    out.heading("By served policy")
    out.text(
        "Each policy serves different customers (rules and consent choose them), so "
        "these rates describe; only the holdout comparison above measures.",
        kind="note",
    )
    out.table(report.by_policy, formats=KPI_FORMATS)
    out.heading("By model version")
    out.table(report.by_version, formats=KPI_FORMATS)
    for figure in ("click_rate", "conversion_rate", "revenue_per_recipient"):
        out.figure(
            _over_time(report.daily_by_policy, "policy", figure),
            alt=f"{figure} over time by policy",
        )
    out.figure(
        _over_time(report.daily_by_version, "model_version", "click_rate"),
        alt="click rate over time by model version",
    )
    if report.by_segment is not None:
        out.heading("By segment")
        out.text("A customer in several segments counts in each.", kind="note")
        out.table(report.by_segment, formats=KPI_FORMATS)
    if report.off_policy or report.off_policy_notes:
        out.heading("Content policies, estimated off-policy")
        out.text(
            "From the propensities the service logged with each choice: what each policy "
            "would have earned on the same customers (click rate) — the logged one as "
            "served, the champion without exploration, uniform exploration and every "
            "constant content. A small effective sample size means a wide interval.",
            kind="note",
        )
        for slot, estimates in report.off_policy.items():
            out.text(f"Slot {slot}:")
            out.table(estimates, formats=OPE_FORMATS)
        for note in report.off_policy_notes:
            out.text(note, kind="note")
    out.heading("Drift")
    if report.drift_note:
        out.text(report.drift_note, kind="note")
    for name, drift in (
        ("Customer features", report.feature_drift),
        ("Scores", report.score_drift),
    ):
        if drift is None:
            continue
        flagged = drift[drift["drifted"]]
        out.text(
            f"{name}: {len(flagged)} of {len(drift)} flagged"
            + (f" ({', '.join(flagged['feature'].head(8))})" if len(flagged) else "")
            + ".",
        )
        out.table(drift.head(25), formats=DRIFT_FORMATS)
    return out


def verdict(report: KpiReport) -> str:
    overall = report.overall.iloc[0]
    text = (
        f"{int(overall['recipients']):,} recipients ({int(overall['decisions']):,} decisions): "
        f"click rate {overall['click_rate']:.2%}, "
        f"conversion rate {overall['conversion_rate']:.2%}, revenue per recipient "
        f"{overall['revenue_per_recipient']:,.2f}. "
    )
    lift = report.lift
    if lift is None:
        return text + f"Personalisation's lift is not measured: {report.lift_note}."
    level = lift.level
    if lift.ci_low > 0:
        judged = "pays: personalised customers click more than the holdout"
    elif lift.ci_high < 0:
        judged = "does not pay: the holdout clicks more"
    else:
        judged = "is not yet distinguishable from the holdout"
    return text + (
        f"Personalisation {judged} ({lift.difference:+.2%} in click rate, {level:.0%} "
        f"interval {lift.ci_low:+.2%} to {lift.ci_high:+.2%}, p {lift.p_value:.3g})."
    )


def _over_time(frame: pd.DataFrame, by: str, figure: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for value, rows in frame.groupby(by):
        ax.plot(rows["period"], rows[figure], marker="o", markersize=3, label=str(value))
    ax.set_title(f"{figure.replace('_', ' ')} by {by.replace('_', ' ')}")
    ax.set_ylabel(figure.replace("_", " "))
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


EXPERIMENT_NAME = "reports"


def log_run(report: KpiReport, *, client: Any, page_path: Any) -> str:
    """An MLflow run of experiment ``reports``: the headline figures and the page."""
    from training.tracking import ensure_experiment, mlflow_metric_name

    run = client.create_run(ensure_experiment(client, EXPERIMENT_NAME), run_name=report.title)
    run_id: str = run.info.run_id
    for key, value in report.summary().items():
        client.log_metric(run_id, mlflow_metric_name(key), float(value))
    client.log_artifact(run_id, str(page_path))
    for name, frame in (
        ("by_policy", report.by_policy),
        ("by_version", report.by_version),
        ("daily_by_policy", report.daily_by_policy),
        ("feature_drift", report.feature_drift),
        ("score_drift", report.score_drift),
        *((f"off_policy_{slot}", frame) for slot, frame in report.off_policy.items()),
    ):
        if frame is not None:
            client.log_text(run_id, frame.to_csv(index=False), f"{name}.csv")
    client.set_terminated(run_id)
    return run_id
