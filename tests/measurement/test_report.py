"""The KPI report: drift measured against hand-computed values, and ``tailor report``
on a home with a holdout, read as a marketer would."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from cli.main import main
from features.data.decision_log import DecisionLog, DecisionRecord
from features.data.online_log import OnlineEventLog
from measurement import kpi_report
from measurement.drift import drift_table, population_stability, score_drift


def test_population_stability_by_hand():
    reference = np.repeat(np.arange(10.0), 100)  # ten equal deciles
    assert population_stability(reference, reference) == pytest.approx(0.0)
    current = np.zeros(500)  # everyone in the first decile now
    floor = 1e-4
    expected = (1 - 0.1) * math.log(1 / 0.1) + 9 * (floor - 0.1) * math.log(floor / 0.1)
    assert population_stability(reference, current) == pytest.approx(expected)


def test_a_shifted_feature_is_flagged_and_a_steady_one_is_not():
    rng = np.random.default_rng(0)
    before = pd.DataFrame({"steady": rng.normal(size=5000), "moved": rng.normal(size=5000)})
    now = pd.DataFrame({"steady": rng.normal(size=5000), "moved": rng.normal(1.0, 1, 5000)})
    table = drift_table(before, now).set_index("feature")
    assert table.loc["moved", "drifted"] and not table.loc["steady", "drifted"]
    assert table.index[0] == "moved"  # most drifted first
    assert table.loc["steady", "psi"] < 0.05


def test_score_drift_compares_the_two_latest_snapshots_per_slot():
    rows = []
    for snapshot, shift, ts in (("s1", 0.0, 1.0), ("s2", 0.0, 2.0), ("s3", 2.0, 3.0)):
        for i in range(400):
            rows.append(
                {
                    "versions": {"snapshot": snapshot},
                    "slot": "offer",
                    "candidates": [["a", shift + (i % 40) / 40, 0.5], ["b", None, 0.5]],
                    "ts": ts,
                }
            )
    table, note = score_drift(pd.DataFrame(rows))
    assert "s2 against s3" in note
    assert table.set_index("feature").loc["score:offer", "drifted"]


def _home(home, n=2000):
    online = home / "online"
    rng = np.random.default_rng(5)
    records, events = [], []
    now = datetime.now(UTC)
    for i in range(n):
        held = i % 10 == 0
        customer = f"c{i}"
        records.append(
            DecisionRecord(
                f"d{i}",
                "choose",
                customer,
                "offer",
                "holdout" if held else "model",
                "offer-a",
                1.0,
                [],
                {"snapshot": "s1", "selector": None if held else "3"},
                {"campaign_id": "june"},
            )
        )
        if rng.random() < (0.02 if held else 0.12):
            events.append(
                {
                    "event_id": f"e{i}",
                    "event_type": "email_click",
                    "customer_id": customer,
                    "campaign_id": "june",
                    "ts": (now + timedelta(minutes=5)).isoformat(),
                }
            )
    DecisionLog(online / "decisions.db").append(records)
    log = OnlineEventLog(online / "events.db")
    log.append(events, now=now, max_future_skew=timedelta(days=1))
    log.close()


def test_tailor_report_tells_whether_personalisation_pays(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    _home(home)
    monkeypatch.setenv("TAILOR_HOME", str(home))
    out = tmp_path / "kpi.html"
    assert main(["report", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Personalisation pays" in printed
    page = out.read_text()
    assert "Personalisation pays" in page
    assert page.count("<img") == 4  # three figures by policy, one by version
    assert "one snapshot only" in page or "no drift" in page
    run_id = re.search(r"MLflow run: (\w+)", printed).group(1)

    from training.tracking import configure

    metrics = configure(home).get_run(run_id).data.metrics
    assert metrics["overall.recipients"] == 2000
    assert metrics["holdout_lift.click_ci_low"] > 0


def test_the_report_estimates_the_content_policies_off_policy():
    from tests.measurement.test_policies import TRUE, _log

    log = _log(n=20_000)
    table = log.assign(
        ts=pd.Timestamp("2026-05-01", tz="UTC"),
        customer_id=log["decision_id"],
        revenue=0.0,
    )
    report = kpi_report.build(table, title="off-policy")
    estimates = report.off_policy["offer"].set_index(["policy", "estimator"])
    row = estimates.loc[("always offer-b", "SNIPS")]
    assert row.ci_low <= TRUE["offer-b"] <= row.ci_high
    page = kpi_report.page(report).html()
    assert "estimated off-policy" in page and "greedy champion" in page
