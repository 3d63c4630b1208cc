"""The API docs in a real browser (headless Chromium, the Debian package): the page
renders every operation of the OpenAPI document from packaged assets, with no
console message — on a machine that reaches no CDN."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.serving.conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_docs_render_every_operation_offline_without_console_errors(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # The service's own app (routes, document, docs page); decisions are not called.
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "serving.service:app", "--port", str(port)],
        env={**os.environ, "TAILOR_HOME": str(tmp_path / "home")},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        document = None
        deadline = time.monotonic() + 120
        while document is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/openapi.json", timeout=2) as answer:
                    document = json.load(answer)
            except OSError:
                time.sleep(0.5)
        assert document is not None, "the app did not start"
        browser = subprocess.run(
            [
                str(CHROMIUM),
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--enable-logging=stderr",
                "--log-level=0",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                f"{url}/docs",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert browser.returncode == 0, browser.stderr[-2000:]
    dom = browser.stdout
    for path in document["paths"]:
        assert f'data-path="{path}"' in dom, f"{path} not rendered"
    console = [line for line in browser.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
