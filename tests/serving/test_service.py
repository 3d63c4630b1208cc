"""The HTTP service against a real ``bentoml serve`` process on loopback."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bench.server import Server
from features.snapshot import latest_snapshot, load_snapshot

ADMIN = {"Authorization": "Bearer test-admin-key"}
DECIDE = {"Authorization": "Bearer test-decide-key"}
KEYS = {"test-admin-key": ["decide", "ingest", "admin"], "test-decide-key": ["decide"]}


def _serve(home: Path, **env: str) -> Server:
    """The service on ``home`` with the test keys, a batch limit of 20, no
    exploration and a one-second registry poll (``env`` on top)."""
    settings = {
        "TAILOR_SERVING__BATCH_LIMIT": "20",
        "TAILOR_SERVING__FALLBACK_EPSILON": "0",
        "TAILOR_SERVING__REGISTRY_POLL_SECONDS": "1",
        **env,
    }
    return Server(home, keys=KEYS, env=settings, ready_timeout=120)


@pytest.fixture(scope="module")
def server(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("served") / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("online", "demo"))
    running = _serve(home)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def people(server: Server) -> dict[str, str]:
    snapshot = load_snapshot(latest_snapshot(server.home / "features"))
    customers = snapshot.customers
    personalised = customers[customers["personalised"].astype(bool)]
    busy = set(snapshot.triggers["customer_id"]) | set(snapshot.segments["customer_id"])
    with_history = set(snapshot.user_ids)  # a model answer needs product history
    quiet = [c for c in personalised["customer_id"] if c not in busy and c in with_history]
    return {
        "quiet": str(quiet[0]),
        "other": str(quiet[1]),
        "refused": str(
            customers.loc[~customers["personalised"].astype(bool), "customer_id"].iloc[0]
        ),
        "item": str(snapshot.items["item_id"].iloc[0]),
    }


def _post(
    server: Server, path: str, body: object, headers: dict[str, str] = ADMIN
) -> httpx.Response:
    return server.client.post(path, json=body, headers=headers)


# ---------------------------------------------------------------------- auth
def test_auth_keys_and_scopes(server, people):
    body = {"customer_id": people["quiet"]}
    assert _post(server, "/recommend", body, headers={}).status_code == 401
    assert (
        _post(server, "/recommend", body, {"Authorization": "Bearer wrong-key!"}).status_code == 401
    )
    assert _post(server, "/recommend", body, DECIDE).status_code == 200
    refused = _post(server, "/admin/reload", {}, DECIDE)
    assert refused.status_code == 403 and "admin" in refused.json()["error"]["message"]
    assert _post(server, "/events", {"events": [{}]}, DECIDE).status_code == 403
    assert server.client.get("/customers/x").status_code == 401
    for open_path in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert server.client.get(open_path).status_code == 200, open_path


# ---------------------------------------------------------------------- endpoints
def test_every_endpoint_answers(server, people):
    customer = people["quiet"]
    rec = _post(server, "/recommend", {"customer_id": customer, "n": 5})
    assert rec.status_code == 200
    body = rec.json()
    assert body["strategy"] == "model" and len(body["items"]) == 5
    assert body["model_version"] == "1" and body["decision_id"]

    batch = _post(
        server, "/recommend_batch", {"customer_ids": [customer, "stranger"], "n": 3}
    ).json()
    assert [r["strategy"] for r in batch["results"]] == ["model", "fallback:cold_start"]

    similar = _post(server, "/similar_items", {"item_id": body["items"][0], "n": 4})
    assert similar.status_code == 200 and len(similar.json()["items"]) == 4

    choice = _post(server, "/choose", {"customer_id": customer, "slot": "subject"}).json()
    assert choice["strategy"] == "model" and 0 < choice["propensity"] <= 1
    assert sum(c["probability"] for c in choice["candidates"]) == pytest.approx(1.0)
    replay = _post(
        server,
        "/choose",
        {"customer_id": customer, "slot": "subject", "decision_id": choice["decision_id"]},
    ).json()
    assert replay["content_id"] == choice["content_id"]

    view = server.client.get(f"/customers/{customer}", headers=DECIDE).json()
    assert view["personalised"] and "engagement_score" in view["features"]

    status = server.client.get("/status", headers=DECIDE).json()
    assert status["state"] == "ready" and status["models"]["tailor-recommender"] == "1"

    reload = _post(server, "/admin/reload", {})
    assert reload.status_code == 200 and reload.json()["state"] == "ready"

    metrics = server.client.get("/metrics").text
    assert 'tailor_decisions_total{endpoint="recommend"' in metrics
    assert "tailor_snapshot_age_hours" in metrics and "tailor_model_age_hours" in metrics

    docs = server.client.get("/docs.json").json()
    assert {"/recommend", "/recommend_batch", "/similar_items", "/choose", "/events"} <= set(
        docs["paths"]
    )


def test_consent_and_unknown_customer(server, people):
    refused = _post(server, "/recommend", {"customer_id": people["refused"], "n": 3}).json()
    assert refused["strategy"] == "consent"
    unknown = _post(server, "/recommend", {"customer_id": "nobody-we-know", "n": 3})
    assert unknown.status_code == 200
    assert unknown.json()["strategy"] == "fallback:cold_start"
    assert len(unknown.json()["items"]) == 3


# ---------------------------------------------------------------------- client errors
def test_client_errors_are_4xx_with_a_message(server, people):
    customer = people["quiet"]
    unknown = _post(
        server,
        "/choose",
        {"customer_id": customer, "slot": "offer", "candidates": ["x1", "offer_none"]},
    )
    assert unknown.status_code == 404 and "x1" in unknown.text

    too_many = _post(server, "/recommend_batch", {"customer_ids": [f"c{i}" for i in range(21)]})
    assert too_many.status_code == 413 and "at most 20" in too_many.text

    malformed = server.client.post(
        "/recommend",
        content=b'{"customer_id": ',
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400 and "invalid JSON" in malformed.text

    not_json = server.client.post(
        "/recommend", content=b"customer_id=1", headers={**ADMIN, "Content-Type": "text/plain"}
    )
    assert not_json.status_code == 415

    bad_field = _post(server, "/recommend", {"customer_id": customer, "n": 0})
    assert bad_field.status_code == 400 and "n" in bad_field.text
    wrong_type = _post(server, "/recommend", {"customer_id": customer, "filters": {"bogus": 1}})
    assert 400 <= wrong_type.status_code < 500
    missing = server.client.get("/customers/no-such-person", headers=DECIDE)
    assert missing.status_code == 404
    no_item = _post(server, "/similar_items", {"item_id": "no-such-item"})
    assert no_item.status_code == 404
    empty_slot = _post(server, "/choose", {"customer_id": customer, "slot": "banner"})
    assert empty_slot.status_code == 404 and "banner" in empty_slot.text
    bad_events = _post(server, "/events", {"events": [{"event_id": "e", "event_type": "zap"}]})
    assert bad_events.status_code == 200 and bad_events.json()["accepted"] == 0
    assert "'zap' is not one of" in bad_events.json()["rejected"][0]["reason"]


def test_the_contract_over_http(server, people):
    """Every error has the one shape, labels are route templates, short answers say why."""
    customer = people["quiet"]
    refusals = [
        server.client.post("/recommend", json={"customer_id": customer}),  # 401
        _post(server, "/recommend", {"customer_id": customer, "bogus": 1}),  # 400
        server.client.post("/recommend", content=b"{}", headers=ADMIN),  # 415
        server.client.get("/recommend", headers=ADMIN),  # 405
        server.client.get("/nowhere", headers=ADMIN),  # 404
        server.client.get("/customers/no-such-person", headers=DECIDE),  # 404
        _post(server, "/choose", {"customer_id": customer, "slot": "banner"}),  # 404
    ]
    assert [r.status_code for r in refusals] == [401, 400, 415, 405, 404, 404, 404]
    for answer in refusals:
        error = answer.json()["error"]
        assert error["request_id"] == answer.headers["x-request-id"]
        assert error["code"] and error["message"]
    assert refusals[1].json()["error"]["field"] == "bogus"

    server.client.get(f"/customers/{customer}", headers=DECIDE)
    metrics = server.client.get("/metrics").text
    assert 'endpoint="/customers/{customer_id}"' in metrics
    assert customer not in metrics, "no time series per customer"

    nothing = _post(
        server, "/recommend", {"customer_id": customer, "filters": {"categories": ["no-such"]}}
    ).json()
    assert nothing["items"] == [] and "unknown categories ['no-such']" in nothing["reason"]
    ready = server.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert server.client.get("/openapi.json").json()["info"]["title"] == "Tailor"


# ---------------------------------------------------------------------- loop
def test_an_event_changes_the_next_decision(server, people):
    customer = people["other"]
    before = _post(server, "/choose", {"customer_id": customer, "slot": "offer"}).json()
    assert before["strategy"] == "model"
    cart_at = datetime.now(UTC) - timedelta(hours=25)
    event = {
        "event_id": "svc-cart-1",
        "ts": cart_at.isoformat(),
        "event_type": "add_to_cart",
        "customer_id": customer,
        "item_id": people["item"],
    }
    posted = _post(server, "/events", {"events": [event]})
    assert posted.status_code == 200 and posted.json()["accepted"] == 1
    after = _post(server, "/choose", {"customer_id": customer, "slot": "offer"}).json()
    assert after["strategy"] == "rule:cart_abandoned_free_shipping"
    assert after["content_id"] == "offer_freeship"
    view = server.client.get(f"/customers/{customer}", headers=DECIDE).json()
    assert [t["trigger"] for t in view["triggers"]] == ["cart_abandoned"]


def test_reload_under_load_fails_no_request(server, people):
    from training.tracking import configure

    client = configure(server.home)
    source = client.get_model_version("tailor-recommender", "1")
    failures: list[str] = []
    versions: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server.url, timeout=60.0) as http:
            while not stop.is_set():
                response = http.post(
                    "/recommend", json={"customer_id": people["quiet"], "n": 5}, headers=DECIDE
                )
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                else:
                    versions.add(str(response.json()["model_version"]))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    second = client.create_model_version("tailor-recommender", source.source, run_id=source.run_id)
    client.set_registered_model_alias("tailor-recommender", "champion", second.version)
    reloaded = _post(server, "/admin/reload", {})
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert reloaded.status_code == 200
    assert reloaded.json()["models"]["tailor-recommender"] == str(second.version)
    assert failures == []
    assert str(second.version) in versions


# ---------------------------------------------------------------------- degraded start
def test_starts_degraded_without_a_registered_model(trained_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("online", "demo", "mlflow"))
    bare = _serve(home)
    try:
        assert bare.client.get("/readyz").status_code == 200
        status = bare.client.get("/status", headers=DECIDE).json()
        assert status["state"] == "degraded"
        assert any("no tailor-recommender champion" in r for r in status["reasons"])
        snapshot = load_snapshot(latest_snapshot(home / "features"))
        people = snapshot.customers[snapshot.customers["personalised"].astype(bool)]
        busy = set(snapshot.triggers["customer_id"]) | set(snapshot.segments["customer_id"])
        with_history = set(snapshot.user_ids)
        customer = next(c for c in people["customer_id"] if c not in busy and c in with_history)
        answer = _post(bare, "/recommend", {"customer_id": customer, "n": 3})
        assert answer.status_code == 200
        assert answer.json()["strategy"] == "fallback:popular"
        assert answer.json()["fallback_reason"] == "no recommender loaded"
        assert answer.json()["model_version"] is None
    finally:
        bare.stop()
