"""Property-based fuzzing of the whole OpenAPI document against a real server
(schemathesis): valid and invalid requests for every operation, no 5xx, and every
response as the document says (status, content type, body schema)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.serving.test_service import ADMIN, _serve

EXAMPLES = 25
"""Cases per operation and mode (the suite's budget; raise it locally to fuzz harder)."""


def _fuzz(
    operation: Any, mode: GenerationMode, url: str, label: str, counts: dict[str, int]
) -> Any:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        counts[label] = counts.get(label, 0) + 1
        case.call_and_validate(base_url=url, headers=dict(ADMIN))

    return run


def test_the_api_never_5xx_and_keeps_its_document(
    trained_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("fuzzed") / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("online", "demo"))
    server = _serve(home, TAILOR_SERVING__BATCH_LIMIT="50")
    counts: dict[str, int] = {}
    failures: list[str] = []
    try:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                label = f"{operation.label} {mode.value}"

                run = _fuzz(operation, mode, server.url, label, counts)
                try:
                    run()
                except Unsatisfiable:
                    # No invalid request exists for an operation without parameters.
                    assert mode is GenerationMode.NEGATIVE, label
                except (Exception, BaseExceptionGroup) as error:  # every operation's failure
                    failures.append(f"{label}: {error}")
    finally:
        server.stop()
    total = sum(counts.values())
    print(f"\nschemathesis: {total} cases over {len(counts)} operation × mode pairs: {counts}")
    assert not failures, "\n\n".join(failures)
    assert total >= 10 * len(counts)
