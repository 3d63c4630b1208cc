"""Both HTML reports in a real browser (headless Chromium): each opens from a file with
no console message, shows its tables, and carries its plots as real PNG images."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from measurement import kpi_report
from measurement.ab_report import html_report
from measurement.experiment import analyse
from tests.browser import CHROMIUM, MISSING, open_page

START = pd.Timestamp("2026-05-01", tz="UTC")


def _table(n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    held = rng.random(n) < 0.2
    variant = np.where(rng.random(n) < 0.5, "offer-a", "offer-b")
    clicked = rng.random(n) < np.where(held, 0.03, np.where(variant == "offer-b", 0.08, 0.05))
    converted = clicked & (rng.random(n) < 0.3)
    return pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(n)],
            "ts": START + pd.to_timedelta(rng.uniform(0, 7 * 86400, n), unit="s"),
            "customer_id": [f"c{i}" for i in range(n)],
            "content_id": variant,
            "policy": np.where(held, "holdout", "model"),
            "model_version": np.where(held, None, "3"),
            "opened": clicked | (rng.random(n) < 0.2),
            "clicked": clicked,
            "converted": converted,
            "revenue": np.where(converted, rng.gamma(2.0, 20.0, n), 0.0),
        }
    )


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r"base64,([A-Za-z0-9+/=]+)", page)]


@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
def test_both_reports_open_in_a_browser_with_their_plots(tmp_path: Path) -> None:
    table = _table()
    model = table[table["policy"] == "model"]
    ab = html_report(analyse(model, by="variant", control="offer-a"), "A/B report by variant")
    kpi = kpi_report.page(kpi_report.build(table, title="Tailor report"))
    for name, page, plots in (("ab", ab, 5), ("kpi", kpi, 4)):
        path = page.write(tmp_path / f"{name}.html")
        images = _pngs(path.read_text())
        assert len(images) == plots
        assert all(image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 2000 for image in images)
        opened = open_page(path.as_uri(), tmp_path / f"profile-{name}")
        assert opened.returncode == 0, opened.log
        assert opened.console == [], opened.console
        assert opened.dom.count("<img") == plots and opened.dom.count("<table") >= 2
    assert "offer-b vs offer-a: +2.27% in click rate" in ab.html()
    assert "Personalisation pays" in kpi.html()
