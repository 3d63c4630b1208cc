"""Property-based fuzzing of the whole OpenAPI document against a real server
(schemathesis): no 5xx, and every response as the document says."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.serving.test_service import ADMIN, Server

CASES: dict[str, int] = {}


@pytest.fixture(scope="module")
def fuzzed(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("fuzzed") / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("online", "demo"))
    running = Server(home)
    yield running
    running.stop()
    print(f"\nschemathesis cases per operation: {CASES} (total {sum(CASES.values())})")


@pytest.fixture
def api_schema(fuzzed: Server) -> Any:
    return schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_never_5xx_and_keeps_its_document(case: Any, fuzzed: Server) -> None:
    key = f"{case.method} {case.path}"
    CASES[key] = CASES.get(key, 0) + 1
    case.call_and_validate(base_url=fuzzed.url, headers=dict(ADMIN))
