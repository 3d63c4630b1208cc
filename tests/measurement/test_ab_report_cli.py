"""``tailor ab-report`` on a home whose decision log and posted events are made by hand:
the table, the HTML page with its plots and the MLflow run, all from the same figures."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from features.data.decision_log import DecisionLog, DecisionRecord
from features.data.online_log import OnlineEventLog


def _home(home: Path, clicks: dict[str, float], n: int) -> dict[str, int]:
    online = home / "online"
    log = DecisionLog(online / "decisions.db")
    rng = np.random.default_rng(7)
    records, events, clicked = [], [], dict.fromkeys(clicks, 0)
    now = datetime.now(UTC)
    for variant, rate in clicks.items():
        for i in range(n):
            decision_id = f"d-{variant}-{i}"
            customer = f"c-{variant}-{i}"
            records.append(
                DecisionRecord(
                    decision_id,
                    "choose",
                    customer,
                    "offer",
                    "model",
                    variant,
                    0.98,
                    [],
                    {"snapshot": "s", "selector": "3"},
                    {"campaign_id": "spring"},
                )
            )
            if rng.random() < rate:
                clicked[variant] += 1
                events.append(
                    {
                        "event_id": f"e-{decision_id}",
                        "event_type": "email_click",
                        "customer_id": customer,
                        "ts": (now + timedelta(seconds=30)).isoformat(),
                        "decision_id": decision_id,
                    }
                )
    log.append(records)
    posted = OnlineEventLog(online / "events.db")
    appended = posted.append(events, now=now, max_future_skew=timedelta(days=1))
    posted.close()
    assert len(appended.accepted) == len(events)
    return clicked


def test_ab_report_prints_writes_and_logs_the_same_figures(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    clicked = _home(home, {"offer-a": 0.10, "offer-b": 0.25}, 400)
    monkeypatch.setenv("TAILOR_HOME", str(home))
    out = tmp_path / "ab.html"
    assert main(["ab-report", "--by", "variant", "--slot", "offer", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # The control is the largest arm (a tie: the first in order), offer-a.
    assert "offer-a (control)" in printed
    assert f"{clicked['offer-a'] / 400:.2%}" in printed
    assert f"{clicked['offer-b'] / 400:.2%}" in printed
    assert "offer-b has a higher click rate than offer-a" in printed
    page = out.read_text()
    assert page.count("<img") == 5 and "data:image/png;base64," in page
    assert "offer-b vs offer-a" in page
    run_id = re.search(r"MLflow run: (\w+)", printed).group(1)

    from training.tracking import configure

    run = configure(home).get_run(run_id)
    assert run.data.params["by"] == "variant"
    assert run.data.metrics["offer-b.click_rate"] == pytest.approx(clicked["offer-b"] / 400)


def test_ab_report_without_a_decision_log_fails_saying_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TAILOR_HOME", str(tmp_path / "empty"))
    assert main(["ab-report", "--by", "variant"]) != 0
    assert "no decision log" in capsys.readouterr().err
