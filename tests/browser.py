"""Headless Chromium (the Debian package) for the tests that open a page as a user
would: the DOM after the page settled, and the browser's console lines."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MISSING = "needs Chromium (apt-get install chromium)"


@dataclass(frozen=True)
class Opened:
    returncode: int
    dom: str
    console: list[str]
    log: str


def open_page(url: str, profile: Path, *, settle_ms: int = 10_000) -> Opened:
    """Load ``url`` headless with a fresh profile; the DOM and every console line."""
    assert CHROMIUM is not None, MISSING
    browser = subprocess.run(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--log-level=0",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={settle_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    console = [line for line in browser.stderr.splitlines() if ":CONSOLE" in line]
    return Opened(browser.returncode, browser.stdout, console, browser.stderr[-2000:])
