"""``tailor identity``: explain, merge, split and the overrides list, on a real home."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cli.main import main


@pytest.fixture
def home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("TAILOR_HOME", str(home))
    customers = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3", "c4"],
            "email": ["ann@mail.example", " Ann@Mail.example", "tom@mail.example", None],
            "phone": ["415 555 2671", None, "(415) 555-2671", None],
            "consent_email": True,
            "consent_personalization": True,
            "attributes": [
                json.dumps({"first_name": name, "last_name": "Lee"})
                for name in ("Ann", "Ann", "Tom", "Tom")
            ],
        }
    )
    customers.to_csv(tmp_path / "customers.csv", index=False)
    pd.DataFrame(
        {
            "event_id": ["e1", "e2"],
            "ts": "2026-11-01T10:00:00Z",
            "event_type": "product_view",
            "customer_id": ["c1", "c3"],
            "item_id": ["i1", "i2"],
        }
    ).to_csv(tmp_path / "events.csv", index=False)
    for kind in ("customers", "events"):
        assert main(["ingest", str(tmp_path / f"{kind}.csv"), "--kind", kind]) == 0
    assert main(["features", "build", "--as-of", "2026-11-02T00:00:00Z"]) == 0
    return home


def test_explain_merge_split_and_overrides(home: Path, capsys: pytest.CaptureFixture[str]):
    built = capsys.readouterr().out
    assert "4 records → 3 people" in built and "1 names_differ" in built
    assert main(["identity", "explain", "c2"]) == 0
    text = capsys.readouterr().out
    assert "c2 belongs to person c1" in text and "same email (keyed hash hk:local:" in text
    assert "ann@mail.example" not in text.lower() and "sha256" not in text
    assert "different first names" in text  # the household phone shared with c3

    assert main(["identity", "merge", "c3", "c4", "--reason", "same loyalty card"]) == 0
    assert main(["identity", "split", "c2"]) == 0
    assert "next `tailor features build`" in capsys.readouterr().out
    assert main(["identity", "merge", "c1", "nobody"]) == 2
    assert "'nobody'" in capsys.readouterr().err

    assert main(["features", "build", "--as-of", "2026-11-02T00:00:00Z"]) == 0
    capsys.readouterr()
    assert main(["identity", "explain", "c4", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["person"] == "c3"
    assert [link["via"] for link in found["links"]] == ["override"]
    assert main(["identity", "explain", "c2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records"][0]["linked_by"] == ""

    assert main(["identity", "overrides"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in listed] == ["merge", "split"]
    assert "same loyalty card" in listed[0]
    assert main(["identity", "overrides", "--remove", "c2"]) == 0
    assert "dropped 1" in capsys.readouterr().out
