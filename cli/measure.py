"""``tailor ab-report`` and ``tailor report``: what the decisions served earned.

``ab-report`` reads an experiment: the decision log and the outcome events of the home are joined
(``measurement.outcomes``), narrowed to the experiment (a slot, a campaign, a
period), split into arms and compared with a control (``measurement.experiment``).
The answer is printed as a table, written as an HTML page with plots, and logged as
a run of the MLflow experiment ``ab-tests``. ``report`` is the KPI page: figures
over time by policy, model version and segment, personalisation against the holdout,
and the drift of features and scores between the two latest snapshots (a run of the
MLflow experiment ``reports``).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cli.settings import Settings

BY = ("variant", "version", "policy", "segment")


def _when(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_parser(sub: Any) -> None:
    ab = sub.add_parser(
        "ab-report",
        help="an A/B test or holdout read from the decisions served and their outcomes",
        description=(
            "Arms: the content chosen for a slot (variant), the model version that "
            "served (version: champion against challenger), the served policy (policy: "
            "personalised against the holdout), or two segments (segment). Per arm: "
            "recipients, open / click / conversion rates and revenue per recipient with "
            "intervals; against the control: differences with tests, power, the minimum "
            "detectable effect and always-valid p-values safe to read before the end."
        ),
    )
    ab.add_argument("--by", required=True, choices=BY, help="what the arms are (required)")
    ab.add_argument(
        "--slot",
        default=None,
        help="the decisions of one slot (subject, offer, recommend); needed when the "
        "period holds several (default: the only slot there is)",
    )
    ab.add_argument(
        "--campaign",
        default=None,
        help="the decisions of one campaign id (default: every campaign)",
    )
    ab.add_argument("--since", type=_when, default=None, help="ISO time (default: the start)")
    ab.add_argument("--until", type=_when, default=None, help="ISO time, excluded (default: now)")
    ab.add_argument(
        "--control",
        default=None,
        help="the arm compared against (default: holdout for --by policy, else the largest)",
    )
    ab.add_argument(
        "--segments",
        default=None,
        metavar="A,B",
        help="for --by segment (required there): two segment names of the latest feature "
        "snapshot (default: none)",
    )
    ab.add_argument(
        "--primary",
        default="click",
        choices=("open", "click", "conversion"),
        help="the rate of the power, the MDE and the sequential test",
    )
    ab.add_argument("--level", type=float, default=0.95, help="confidence level")
    ab.add_argument("--lift", type=float, default=0.1, help="relative lift whose power is reported")
    ab.add_argument(
        "--revenue-test",
        default="welch",
        choices=("welch", "bootstrap"),
        help="test of revenue per recipient",
    )
    ab.add_argument(
        "--look-every", default="1D", help="how often the sequential test looks (pandas freq)"
    )
    ab.add_argument(
        "--mixture-variance",
        type=float,
        default=None,
        help="τ² of the always-valid p-values: about the square of the effect sought "
        "(default: the squared MDE at the arms' sizes)",
    )
    ab.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the HTML report (default: TAILOR_HOME/reports/ab-BY-TIME.html)",
    )


def add_report_parser(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="KPI report: figures over time by policy, version and segment; holdout; drift",
    )
    report.add_argument("--since", type=_when, default=None, help="ISO time (default: the start)")
    report.add_argument(
        "--until", type=_when, default=None, help="ISO time, excluded (default: now)"
    )
    report.add_argument("--every", default="1D", help="period of the time series (pandas freq)")
    report.add_argument(
        "--psi-threshold", type=float, default=0.2, help="PSI above which a feature is flagged"
    )
    report.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the HTML report (default: TAILOR_HOME/reports/kpi-TIME.html)",
    )


def _joined(settings: Settings, decisions: Any) -> Any:
    """The decisions with their outcomes, by the settings' attribution rule."""
    from datetime import timedelta

    from measurement.outcomes import decision_outcomes
    from measurement.sources import as_people, read_outcome_events

    first = datetime.fromtimestamp(float(decisions["ts"].min()), UTC)
    events = read_outcome_events(settings.store_dir, settings.online_dir, since=first)
    events = as_people(events, settings.features_dir)
    return decision_outcomes(
        decisions,
        events,
        window=timedelta(hours=settings.selectors.attribution_window_hours),
        margin_rate=settings.selectors.margin_rate,
    )


def run_report(args: argparse.Namespace, settings: Settings) -> int:
    from features.errors import InputError
    from features.snapshot import load_snapshot, snapshot_folders
    from measurement import kpi_report
    from measurement.drift import drift_table, score_drift
    from measurement.kpi import with_segments
    from measurement.sources import read_decisions

    decisions = read_decisions(settings.online_dir, since=args.since, until=args.until)
    if decisions.empty:
        raise InputError("decisions", 0, "no decision in the period asked for")
    table = _joined(settings, decisions)
    folders = snapshot_folders(settings.features_dir)
    segmented, feature_drift, drift_note = None, None, ""
    if folders:
        latest = load_snapshot(folders[-1])
        segmented = with_segments(table, latest.segments)
        if len(folders) > 1:
            before = load_snapshot(folders[-2])
            feature_drift = drift_table(
                before.customers, latest.customers, threshold=args.psi_threshold
            )
            drift_note = f"Customer features: {folders[-2].name} against {folders[-1].name}."
        else:
            drift_note = "Customer features: one snapshot only; no drift to show."
    scores, score_note = score_drift(decisions, threshold=args.psi_threshold)
    first = datetime.fromtimestamp(float(decisions["ts"].min()), UTC)
    last = datetime.fromtimestamp(float(decisions["ts"].max()), UTC)
    title = f"Tailor report: {first:%Y-%m-%d} – {last:%Y-%m-%d}"
    report = kpi_report.build(
        table,
        title=title,
        segmented=segmented,
        feature_drift=feature_drift,
        score_drift=scores,
        drift_note=" ".join(part for part in (drift_note, score_note) if part),
        every=args.every,
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = args.out or settings.home / "reports" / f"kpi-{stamp}.html"
    kpi_report.page(report).write(out)
    from measurement.page import text_table
    from training.tracking import configure

    print(title)
    print(kpi_report.verdict(report))
    print()
    print(text_table(report.by_policy, formats=kpi_report.KPI_FORMATS))
    run_id = kpi_report.log_run(report, client=configure(settings.home), page_path=out)
    print(f"\nreport: {out}\nMLflow run: {run_id} (experiment reports)")
    return 0


def run_ab_report(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from features.errors import InputError
    from measurement.ab_report import html_report, log_run, text_report
    from measurement.experiment import analyse, segment_arms
    from measurement.sources import read_decisions

    decisions = read_decisions(settings.online_dir, since=args.since, until=args.until)
    if args.slot is not None:
        decisions = decisions[decisions["slot"] == args.slot]
    slots = sorted(decisions["slot"].unique())
    if len(slots) > 1:
        raise InputError(
            "slot", None, f"the decisions hold several slots {slots}: name one with --slot"
        )
    if args.campaign is not None:
        decisions = decisions[
            decisions["context"].map(lambda c: isinstance(c, dict) and c.get("campaign_id"))
            == args.campaign
        ]
    if decisions.empty:
        raise InputError("decisions", 0, "no decision in the period, slot and campaign asked for")
    first = datetime.fromtimestamp(float(decisions["ts"].min()), UTC)
    table = _joined(settings, decisions)
    left_out = 0
    if args.by == "segment":
        table, left_out = segment_arms(table, _segments(settings), _two(args.segments))
    experiment = analyse(
        table,
        by=args.by,
        control=args.control,
        primary=args.primary,
        level=args.level,
        lift=args.lift,
        revenue_method=args.revenue_test,
        look_every=args.look_every,
        mixture_variance=args.mixture_variance,
    )
    experiment = dataclasses.replace(experiment, left_out=left_out)
    scope = " · ".join(
        part
        for part in (
            f"slot {slots[0]}" if slots else "",
            f"campaign {args.campaign}" if args.campaign else "",
            f"{first:%Y-%m-%d} – {(args.until or datetime.now(UTC)):%Y-%m-%d}",
        )
        if part
    )
    title = f"A/B report by {args.by}: {scope}"
    note = (
        f"{len(table):,} decisions; {left_out:,} recipients in both segments or neither left out."
        if args.by == "segment"
        else f"{len(table):,} decisions with their outcomes (attribution window "
        f"{settings.selectors.attribution_window_hours:g} h)."
    )
    print(text_report(experiment, title))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = args.out or settings.home / "reports" / f"ab-{args.by}-{stamp}.html"
    html_report(experiment, title, note=note).write(out)
    from training.tracking import configure

    run_id = log_run(
        experiment,
        client=configure(settings.home),
        title=title,
        params={
            "by": args.by,
            "slot": slots[0] if slots else None,
            "campaign": args.campaign,
            "control": experiment.control,
            "primary": args.primary,
            "level": args.level,
            "decisions": len(table),
        },
        page_path=out,
    )
    print(f"\nreport: {out}\nMLflow run: {run_id} (experiment ab-tests)")
    return 0


def _two(text: str | None) -> tuple[str, str]:
    from features.errors import InputError

    names = [part.strip() for part in (text or "").split(",") if part.strip()]
    if len(names) != 2:
        raise InputError("segments", text, "--by segment needs --segments A,B (two names)")
    return names[0], names[1]


def _segments(settings: Settings) -> Any:
    from features.snapshot import latest_snapshot, load_snapshot

    return load_snapshot(latest_snapshot(settings.features_dir)).segments
