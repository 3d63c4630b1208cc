"""The API docs in a real browser (headless Chromium, the Debian package): the page
renders every operation of the OpenAPI document from packaged assets, with no
console message — on a machine that reaches no CDN."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, MISSING, open_page
from tests.serving.conftest import REPO


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
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
        opened = open_page(f"{url}/docs", tmp_path / "profile")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert opened.returncode == 0, opened.log
    for path in document["paths"]:
        assert f'data-path="{path}"' in opened.dom, f"{path} not rendered"
    assert opened.console == [], opened.console
