"""The loop closed on the simulated store: the service chooses the subject line and
the offer of a few campaigns, the simulated customers answer with the store's own
planted models (:class:`simulation.Responder`), their outcomes come back through
``POST /events``, and what the reports estimate is checked against the planted truth.

The truth of each send is :meth:`simulation.Responder.expected` of the content the
service chose: the estimate of the champion's click rate must cover the mean true
click probability of the sends it chose, and the holdout comparison must cover the
true difference between the personalised sends and the holdout's.

Time. The service decides on the real clock, which a test cannot move, and the
Responder draws a send's outcomes up to the attribution window (72 h) after the send,
strictly after it. So simulated days are compressed: every campaign is sent at the
moment it is decided (``sent_at`` is the first whole second after ``/choose``
answered both slots, never before the logged decision), and its whole response (up
to 72 h ahead) is posted at once before the next campaign is decided, so the next
campaign's decisions see the last one's outcomes. ``/events`` quarantines events
stamped more than ``max_future_skew`` ahead of now (a clock error, 1 day by
default); that would drop every open later than a day after its send (the open delay
is log-normal around 3 h: about 2 % of clicks), and the estimates would sit below
the truth by the censored share. The server therefore runs with ``max_future_skew``
of 4 days, so every outcome the Responder draws is posted and the truth needs no
censoring. ``tailor report`` runs after the server stops, at once: it does not
censor by the report's time either.

Randomness. The Responder draws a send's outcome from its seed, the customer, the
campaign and the send time, and the send time is the real clock's: the outcomes
differ from run to run. The coverage assertions therefore use 99.9 % intervals (a
true 95 % interval misses one run in twenty); the 95 % intervals the reports print
are reported beside them. The attribution (each decision credited with exactly the
outcomes posted for its send) is checked exactly.

Recipients. A campaign mails each resolved person once (the first of their records
the service knows, ``GET /customers/{id}``'s ``canonical_id``), only where the
service says ``sendable``, and not again after an unsubscribe: measurement keys a
send by (person, campaign), so a person mailed on two records in one campaign would
be one send to it.

Sizes. About 360 recipients (400 records, less the 31 without e-mail consent and the
second records of persons), five campaigns: about 1,800 sends, 30 % of them the
holdout's. That estimates a click rate near 7 % within about ±1.5 points, but the
planted uplift of personalisation here (about +1.4 points of click rate) is about one
standard error of the holdout comparison: it would take some six times the sends to
tell it from zero, so the test asserts coverage only.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from bench.server import Server
from measurement.outcomes import decision_outcomes
from measurement.policies import incrementality, served_rates
from measurement.sources import read_decisions, read_outcome_events
from simulation import DEMO_RULES_FILE, Responder, SimulationConfig, simulate
from tests.commands import run_tailor

KEY = "test-served-days-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
SLOTS = ("subject", "offer")
CAMPAIGNS = 5
HOLDOUT_SHARE = 0.3
SEED = 11
ASSERTED_LEVEL = 0.999
REPORTED_LEVEL = 0.95
EVENTS_PER_CALL = 2000
WINDOW = timedelta(hours=72)


@dataclass(frozen=True)
class Served:
    """What the campaigns served and what the reports made of it.

    ``sends``: one row per e-mail (``customer_id`` the record mailed, ``campaign_id``,
    per slot ``<slot>_decision``, ``<slot>_strategy``, ``<slot>_version``,
    ``<slot>_content``; ``true_click`` and ``default_click``, the true click
    probability of the content sent and of the slots' default content; ``clicks``,
    ``opens``, ``purchases``: the outcome events posted). ``table``: the decisions ⋈
    outcomes as ``tailor report`` joins them, with the send's columns beside each
    decision. ``report``: ``tailor report``'s completed process; ``page`` its HTML;
    ``champions``: the model versions ``/status`` said it served.
    """

    sends: pd.DataFrame
    table: pd.DataFrame
    report: Any
    page: Path
    champions: dict[str, str | None]
    seconds: float


def _post(client: httpx.Client, path: str, body: object) -> dict[str, Any]:
    response = client.post(path, json=body, headers=HEADERS)
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    answer: dict[str, Any] = response.json()
    return answer


def _recipients(client: httpx.Client, customer_ids: list[str]) -> tuple[list[str], dict[str, int]]:
    """One record per person the service knows and may mail; the counts of the others."""
    chosen: dict[str, str] = {}
    skipped = {"unknown": 0, "not_sendable": 0, "second_record": 0}
    for customer in sorted(customer_ids):
        response = client.get(f"/customers/{customer}", headers=HEADERS)
        if response.status_code == 404:
            skipped["unknown"] += 1
            continue
        assert response.status_code == 200, response.text[:500]
        view = response.json()
        if not view["sendable"]:
            skipped["not_sendable"] += 1
        elif view["canonical_id"] in chosen:
            skipped["second_record"] += 1
        else:
            chosen[view["canonical_id"]] = customer
    return sorted(chosen.values()), skipped


def _campaign(
    client: httpx.Client,
    responder: Responder,
    campaign_id: str,
    recipients: list[str],
    defaults: dict[str, str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
    """Decide one campaign and draw its response: (sends, events, unsubscribed)."""
    sends: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    left: set[str] = set()
    for customer in recipients:
        answers = {
            slot: _post(
                client,
                "/choose",
                {"customer_id": customer, "slot": slot, "context": {"campaign_id": campaign_id}},
            )
            for slot in SLOTS
        }
        if not all(a["sendable"] for a in answers.values()):
            continue  # not mailed: its decisions stay logged without a send (the first test fails)
        sent_at = datetime.fromtimestamp(math.ceil(time.time()), UTC)
        subject, offer = answers["subject"]["content_id"], answers["offer"]["content_id"]
        drawn = responder.respond(
            customer,
            campaign_id,
            sent_at,
            subject,
            offer,
            {slot: a["decision_id"] for slot, a in answers.items()},
            {slot: a["propensity"] for slot, a in answers.items()},
        )
        kinds = [e["event_type"] for e in drawn]
        truth = responder.expected(customer, sent_at, subject, offer)
        baseline = responder.expected(customer, sent_at, defaults["subject"], defaults["offer"])
        row: dict[str, Any] = {
            "customer_id": customer,
            "campaign_id": campaign_id,
            "true_click": truth.click,
            "default_click": baseline.click,
            "opens": kinds.count("email_open"),
            "clicks": kinds.count("email_click"),
            "purchases": kinds.count("purchase"),
        }
        for slot, answer in answers.items():
            row[f"{slot}_decision"] = answer["decision_id"]
            row[f"{slot}_strategy"] = answer["strategy"]
            row[f"{slot}_version"] = answer["model_version"]
            row[f"{slot}_content"] = answer["content_id"]
        sends.append(row)
        events += drawn
        if "unsubscribe" in kinds:
            left.add(customer)
    return sends, events, left


def _post_events(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), EVENTS_PER_CALL):
        batch = events[start : start + EVENTS_PER_CALL]
        answer = _post(client, "/events", {"events": batch})
        assert answer["rejected"] == [], answer["rejected"][:3]
        assert answer["accepted"] + answer["duplicates"] == len(batch)


@pytest.fixture(scope="module")
def served(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    started = time.monotonic()
    # The store the home was built from: its config is in the demo's truth.json.
    truth = json.loads((trained_home / "demo" / "data" / "truth.json").read_text())
    store = simulate(SimulationConfig.model_validate(truth["config"]))
    responder = Responder(store, seed=SEED)
    defaults = yaml.safe_load(DEMO_RULES_FILE.read_text())["defaults"]

    home = tmp_path_factory.mktemp("served-days") / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("online", "demo"))
    env = {
        "TAILOR_SERVING__HOLDOUT_SHARE": str(HOLDOUT_SHARE),
        "TAILOR_MAX_FUTURE_SKEW": "P4D",  # see the module docstring: Time
    }
    server = Server(home, keys={KEY: ["decide", "ingest"]}, env=env, ready_timeout=180)
    try:
        client = server.client
        recipients, skipped = _recipients(client, store.customers["customer_id"].tolist())
        sends: list[dict[str, Any]] = []
        unsubscribed: set[str] = set()
        for c in range(CAMPAIGNS):
            mailed = [r for r in recipients if r not in unsubscribed]
            rows, drawn, left = _campaign(client, responder, f"served-{c + 1}", mailed, defaults)
            _post_events(client, drawn)  # before the next campaign decides
            sends += rows
            unsubscribed |= left
        status = client.get("/status", headers=HEADERS).json()
    finally:
        server.stop()
    sends_frame = pd.DataFrame(sends)

    online = home / "online"
    decisions = read_decisions(online)
    first = datetime.fromtimestamp(float(decisions["ts"].min()), UTC)
    events = read_outcome_events(home / "store", online, since=first)
    joined = decision_outcomes(decisions, events, window=WINDOW)
    by_decision = pd.concat(
        [
            sends_frame.rename(columns={f"{slot}_decision": "decision_id"}).drop(
                columns=[f"{o}_decision" for o in SLOTS if o != slot]
            )
            for slot in SLOTS
        ],
        ignore_index=True,
    )
    table = joined.merge(
        by_decision.rename(columns={"customer_id": "record_id", "campaign_id": "sent_campaign"}),
        on="decision_id",
        how="left",
        validate="one_to_one",
    )

    page = home.parent / "kpi.html"
    report = run_tailor("report", "--out", str(page), home=home, timeout=300)
    seconds = time.monotonic() - started
    clicks = int(sends_frame["clicks"].gt(0).sum())
    renamed = int((table["record_id"] != table["customer_id"]).sum())
    print(
        f"\n{CAMPAIGNS} campaigns, {len(recipients)} recipients ({skipped}), "
        f"{len(sends_frame)} sends, {len(decisions)} decisions, {len(events)} outcome "
        f"events, {len(unsubscribed)} unsubscribed; {seconds:.0f} s; clicks {clicks}, "
        f"expected {sends_frame['true_click'].sum():.1f}; {renamed} decisions logged "
        "under the person's id, not the record's"
    )
    yield Served(sends_frame, table, report, page, status["models"], seconds)


def test_every_decision_is_one_mailed_slot_with_its_campaign(served):
    table, sends = served.table, served.sends
    # Every logged decision is a slot of a send that went out (none was unsendable).
    assert len(table) == 2 * len(sends)
    assert table["record_id"].notna().all()
    assert (table["campaign_id"] == table["sent_campaign"]).all()
    for slot in SLOTS:
        assert (table.loc[table["slot"] == slot, "content_id"].notna()).all()
        rows = table[table["slot"] == slot].set_index("decision_id")
        mine = sends.set_index(f"{slot}_decision")
        assert (rows.loc[mine.index, "content_id"] == mine[f"{slot}_content"]).all()
        assert (rows.loc[mine.index, "strategy"] == mine[f"{slot}_strategy"]).all()


def test_each_decision_gets_exactly_the_outcomes_posted_for_its_send(served):
    table = served.table
    assert (table["clicked"] == table["clicks"].gt(0)).all()
    assert (table["converted"] == table["purchases"].gt(0)).all()
    posted_open = table["opens"].gt(0) | table["clicks"].gt(0) | table["purchases"].gt(0)
    assert (table["opened"] == posted_open).all()
    assert table["clicked"].any()


def _rate_row(rates: pd.DataFrame, policy: str, version: str) -> pd.Series:
    row = rates[(rates["policy"] == policy) & (rates["model_version"] == version)]
    assert len(row) == 1, rates
    return row.iloc[0]


@pytest.mark.parametrize("slot", SLOTS)
def test_the_champions_click_rate_covers_the_true_rate(served, slot):
    rows = served.table[served.table["slot"] == slot]  # one row per send
    model = rows[rows["policy"] == "model"]
    versions = model["model_version"].unique()
    assert len(versions) == 1, versions  # the champion, and only it, served
    version = str(versions[0])
    assert version == served.champions[f"tailor-selector-{slot}"]
    true_rate = float(model["true_click"].mean())
    wide = _rate_row(served_rates(rows, level=ASSERTED_LEVEL), "model", version)
    usual = _rate_row(served_rates(rows, level=REPORTED_LEVEL), "model", version)
    print(
        f"\n{slot} selector v{version}: {int(usual['sends'])} sends, click rate "
        f"{usual['click_rate']:.4f} (95 % {usual['ci_low']:.4f}–{usual['ci_high']:.4f}; "
        f"99.9 % {wide['ci_low']:.4f}–{wide['ci_high']:.4f}), true {true_rate:.4f}"
    )
    assert wide["ci_low"] <= true_rate <= wide["ci_high"]


def test_the_holdout_comparison_covers_the_planted_uplift(served):
    rows = served.table[served.table["slot"] == "subject"]  # one row per send
    held = rows["policy"] == "holdout"
    assert held.any() and (~held).any()
    true_uplift = float(rows.loc[~held, "true_click"].mean() - rows.loc[held, "true_click"].mean())
    # The causal part: what the served content added over the default, to the same sends.
    added = float((rows.loc[~held, "true_click"] - rows.loc[~held, "default_click"]).mean())
    wide = incrementality(rows, level=ASSERTED_LEVEL)
    usual = incrementality(rows, level=REPORTED_LEVEL)
    print(
        f"\nholdout {int(held.sum())} sends, personalised {int((~held).sum())}: uplift "
        f"{usual.difference:+.4f} (95 % {usual.ci_low:+.4f} to {usual.ci_high:+.4f}, "
        f"p {usual.p_value:.3g}; 99.9 % {wide.ci_low:+.4f} to {wide.ci_high:+.4f}); "
        f"true {true_uplift:+.4f} (served minus default on the personalised sends "
        f"{added:+.4f})"
    )
    assert wide.ci_low <= true_uplift <= wide.ci_high
    # Both slots' decisions of a send share its outcome and its holdout status: read
    # from one slot, the other or both (each send counted once), the comparison is one.
    for decisions in (served.table[served.table["slot"] == "offer"], served.table):
        both = incrementality(decisions, level=REPORTED_LEVEL)
        assert (both.rate_a, both.rate_b) == (usual.rate_a, usual.rate_b)
        assert (both.ci_low, both.ci_high) == pytest.approx((usual.ci_low, usual.ci_high))


def test_tailor_report_page_and_verdict(served):
    report = served.report
    assert report.returncode == 0, report.stderr[-3000:]
    assert served.page.is_file()
    verdicts = [line for line in report.stdout.splitlines() if " decisions): click rate " in line]
    assert len(verdicts) == 1, report.stdout
    verdict = verdicts[0]
    assert verdict in served.page.read_text()
    # The report reads every decision of both slots, as logged: one recipient a send.
    table = served.table
    overall = re.match(r"([\d,]+) recipients \(([\d,]+) decisions\): click rate ([\d.]+)%", verdict)
    assert overall is not None, verdict
    sends = table[["customer_id", "campaign_id"]].drop_duplicates()
    assert int(overall.group(1).replace(",", "")) == len(sends)
    assert int(overall.group(2).replace(",", "")) == len(table)
    assert float(overall.group(3)) / 100 == pytest.approx(table["clicked"].mean(), abs=5e-5)
    lift = re.search(
        r"Personalisation (pays|does not pay|is not yet distinguishable)\D*"
        r"([+-][\d.]+)% in click rate, 95% interval ([+-][\d.]+)% to ([+-][\d.]+)%",
        verdict,
    )
    assert lift is not None, verdict
    judged = lift.group(1)
    difference, low, high = (float(g) / 100 for g in lift.groups()[1:])
    # The report's comparison is the one of the sends (one slot's decisions).
    expected = incrementality(table[table["slot"] == "subject"], level=REPORTED_LEVEL)
    assert difference == pytest.approx(expected.difference, abs=5e-5)
    assert (low, high) == pytest.approx((expected.ci_low, expected.ci_high), abs=5e-5)
    if expected.ci_low > 0:
        assert judged == "pays"
    elif expected.ci_high < 0:
        assert judged == "does not pay"
    else:
        assert judged == "is not yet distinguishable"
    print(f"\ntailor report: {verdict}")
