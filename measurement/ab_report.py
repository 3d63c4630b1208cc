"""``tailor ab-report``'s output: a terminal table, an HTML page with plots, an MLflow run.

Each shows the same figures of one :class:`measurement.experiment.Experiment`: per
arm the recipients, rates and revenue per recipient with intervals; per comparison
with the control the differences, their tests, the power and the always-valid
p-value; and a one-line reading a marketer can act on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from measurement.experiment import RATES, Experiment
from measurement.page import Page, bars_with_intervals, text_table

EXPERIMENT_NAME = "ab-tests"
_PCT = "{:.2%}"
_MONEY = "{:,.2f}"


def arms_frame(experiment: Experiment) -> pd.DataFrame:
    """One row per arm: recipients, each rate with its interval, revenue per recipient."""
    rows = []
    for arm in experiment.arms:
        row: dict[str, Any] = {
            "arm": arm.name + (" (control)" if arm.name == experiment.control else ""),
            "recipients": arm.recipients,
            "customers": arm.customers,
        }
        for rate in RATES:
            interval = arm.rates[rate]
            row[f"{rate} rate"] = interval.rate
            row[f"{rate} CI"] = f"{interval.ci_low:.2%} – {interval.ci_high:.2%}"
        row["revenue / recipient"] = arm.revenue_per_recipient
        low, high = arm.revenue_interval
        row["revenue CI"] = f"{low:,.2f} – {high:,.2f}"
        rows.append(row)
    return pd.DataFrame(rows)


def comparisons_frame(experiment: Experiment) -> pd.DataFrame:
    """One row per arm against the control: differences, p-values, power, sequential p."""
    rows = []
    for c in experiment.comparisons:
        row: dict[str, Any] = {"arm": f"{c.arm} vs {c.control}"}
        for rate in RATES:
            compared = c.rates[rate]
            row[f"{rate} diff"] = compared.difference
            row[f"{rate} p"] = compared.p_value
        row["revenue diff"] = c.revenue.difference
        row["revenue p"] = c.revenue.p_value
        row[f"MDE ({experiment.primary})"] = c.minimum_detectable_effect
        row[f"power at +{experiment.lift:.0%}"] = c.power
        row["always-valid p"] = c.always_valid_p
        rows.append(row)
    return pd.DataFrame(rows)


ARM_FORMATS = {f"{rate} rate": _PCT for rate in RATES} | {"revenue / recipient": _MONEY}
COMPARISON_FORMATS = (
    {f"{rate} diff": "{:+.2%}" for rate in RATES}
    | {f"{rate} p": "{:.3g}" for rate in RATES}
    | {"revenue diff": "{:+,.2f}", "revenue p": "{:.3g}", "always-valid p": "{:.3g}"}
    | {"power at": "{:.0%}"}
)


def reading(experiment: Experiment) -> list[str]:
    """A sentence per comparison: what the primary rate says, peeking allowed."""
    alpha = 1 - experiment.level
    lines = []
    for c in experiment.comparisons:
        compared = c.rates[experiment.primary]
        direction = "higher" if compared.difference > 0 else "lower"
        if c.always_valid_p < alpha:
            verdict = (
                f"{c.arm} has a {direction} {experiment.primary} rate than {c.control} "
                f"({compared.difference:+.2%}, interval {compared.ci_low:+.2%} to "
                f"{compared.ci_high:+.2%}); significant at {alpha:.0%} even read "
                "before the end (always-valid p "
                f"{c.always_valid_p:.3g})."
            )
        elif compared.p_value < alpha:
            verdict = (
                f"{c.arm} vs {c.control}: {compared.difference:+.2%} in {experiment.primary} "
                f"rate, p {compared.p_value:.3g} at the planned end only — if the test was "
                "read before its planned size, wait (always-valid p "
                f"{c.always_valid_p:.3g})."
            )
        else:
            verdict = (
                f"{c.arm} vs {c.control}: no significant difference in {experiment.primary} "
                f"rate ({compared.difference:+.2%}, interval {compared.ci_low:+.2%} to "
                f"{compared.ci_high:+.2%}); differences under "
                f"{c.minimum_detectable_effect:.2%} could not be detected at this size."
            )
        lines.append(verdict)
    return lines


def text_report(experiment: Experiment, title: str) -> str:
    """The terminal version."""
    comparisons = comparisons_frame(experiment)
    formats = _comparison_formats(comparisons)
    parts = [
        title,
        "",
        text_table(arms_frame(experiment), formats=ARM_FORMATS),
        "",
        text_table(comparisons, formats=formats),
        "",
        *reading(experiment),
    ]
    return "\n".join(parts)


def html_report(experiment: Experiment, title: str, *, note: str = "") -> Page:
    """The HTML version, with a plot of each rate per arm and the sequential p-values."""
    page = Page(title)
    for line in reading(experiment):
        page.text(line, kind="verdict")
    if note:
        page.text(note, kind="note")
    page.heading("Arms")
    page.table(arms_frame(experiment), formats=ARM_FORMATS)
    comparisons = comparisons_frame(experiment)
    page.heading(f"Against the control ({experiment.control})")
    page.table(comparisons, formats=_comparison_formats(comparisons))
    page.text(
        "Rates: Wilson intervals; differences: Newcombe intervals and pooled z-tests; "
        f"χ² across all arms: {_chi_text(experiment)}. Revenue per recipient: "
        f"{experiment.comparisons[0].revenue.method if experiment.comparisons else 'welch'}. "
        f"MDE: the smallest {experiment.primary}-rate difference detectable with 80 % "
        f"power at {1 - experiment.level:.0%} significance at the arms' sizes. The "
        "always-valid p-value (mixture SPRT, mixture variance "
        f"{experiment.mixture_variance:.3g}) may be read at any time without inflating "
        "the error rate; the plain p-values only at the planned end.",
        kind="note",
    )
    page.heading("Rates per arm")
    for rate in RATES:
        page.figure(_rate_figure(experiment, rate), alt=f"{rate} rate per arm")
    page.heading("Revenue per recipient")
    page.figure(_revenue_figure(experiment), alt="revenue per recipient per arm")
    page.heading("Reading before the end")
    page.figure(_looks_figure(experiment), alt="always-valid p-value per look")
    return page


def log_run(
    experiment: Experiment, *, client: Any, title: str, params: dict[str, Any], page_path: Path
) -> str:
    """An MLflow run of experiment ``ab-tests``: params, the figures as metrics, the page."""
    from training.tracking import ensure_experiment, mlflow_metric_name

    experiment_id = ensure_experiment(client, EXPERIMENT_NAME)
    run = client.create_run(experiment_id, run_name=title)
    run_id: str = run.info.run_id
    for key, value in params.items():
        client.log_param(run_id, key, str(value))
    for key, value in experiment.summary().items():
        if value is not None and value == value and abs(float(value)) != float("inf"):
            client.log_metric(run_id, mlflow_metric_name(key), float(value))
    client.log_artifact(run_id, str(page_path))
    client.log_text(run_id, experiment.looks.to_csv(index=False), "looks.csv")
    client.log_text(run_id, json.dumps(reading(experiment), indent=2), "reading.json")
    client.set_terminated(run_id)
    return run_id


def _comparison_formats(frame: pd.DataFrame) -> dict[str, str]:
    formats = dict(COMPARISON_FORMATS)
    for column in frame.columns:
        if column.startswith("MDE"):
            formats[column] = "{:.2%}"
        if column.startswith("power at"):
            formats[column] = "{:.0%}"
    return formats


def _chi_text(experiment: Experiment) -> str:
    return ", ".join(
        f"{rate} χ²={chi.statistic:.2f} (df {chi.dof}, p {chi.p_value:.3g})"
        for rate, chi in experiment.chi_square.items()
    )


def _rate_figure(experiment: Experiment, rate: str) -> Figure:
    arms = experiment.arms
    return bars_with_intervals(
        [a.name for a in arms],
        [a.rates[rate].rate for a in arms],
        [a.rates[rate].ci_low for a in arms],
        [a.rates[rate].ci_high for a in arms],
        title=f"{rate} rate ({experiment.level:.0%} intervals)",
        ylabel=f"{rate} rate",
    )


def _revenue_figure(experiment: Experiment) -> Figure:
    arms = experiment.arms
    return bars_with_intervals(
        [a.name for a in arms],
        [a.revenue_per_recipient for a in arms],
        [a.revenue_interval[0] for a in arms],
        [a.revenue_interval[1] for a in arms],
        title=f"revenue per recipient ({experiment.level:.0%} intervals)",
        ylabel="revenue per recipient",
    )


def _looks_figure(experiment: Experiment) -> Figure:
    figure, ax = plt.subplots(figsize=(6.5, 3.2))
    looks = experiment.looks
    for arm in sorted(set(looks["arm"]) - {experiment.control}):
        rows = looks[looks["arm"] == arm]
        ax.step(rows["look"], rows["always_valid_p"], where="post", label=f"{arm}")
    ax.axhline(1 - experiment.level, color="#b33", linestyle="--", label="significance")
    ax.set_yscale("log")
    ax.set_ylabel("always-valid p")
    ax.set_title(f"{experiment.primary} rate against {experiment.control}, look by look")
    ax.legend(loc="lower left", fontsize=8)
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure
