"""``tailor serve``'s lifecycle: a busy port refused up front; a stop signal passed to
the service, which finishes what is in flight and leaves no process behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from features.snapshot import latest_snapshot, load_snapshot
from tests.commands import REPO, run_tailor


def _listening() -> socket.socket:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_busy_port_exits_2_before_serving_or_making_a_key(tmp_path):
    home = tmp_path / "home"
    with _listening() as holder:
        port = holder.getsockname()[1]
        served = run_tailor("serve", "--port", str(port), home=home, timeout=60)
        demo = run_tailor("demo", "--port", str(port), home=home, timeout=60)
    message = f"port {port} on 127.0.0.1 is in use: stop what holds it or pass --port"
    for done in (served, demo):
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
        assert done.stdout == ""  # nothing said as serving, no key, no demo step
    assert not (home / "serving").exists()


# A stand-in for ``bentoml serve``: an arbiter that starts a worker in a session of
# its own (as circus does) and, on SIGTERM or SIGINT, stops it and exits 0. MODE
# "stubborn": both ignore the signals; "leaves": the arbiter exits 3 after a
# moment, leaving its worker running.
STAND_IN = textwrap.dedent(
    """
    import json, signal, subprocess, sys, time
    mode, pids = sys.argv[1], sys.argv[2]
    worker = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys, time\\n"
         "if sys.argv[1] == 'stubborn': signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
         "signal.signal(signal.SIGINT, signal.SIG_IGN)\\n"
         "time.sleep(600)", mode],
        start_new_session=True,
    )
    def stop(signum, frame):
        if mode != "stubborn":
            worker.terminate()
            worker.wait()
            sys.exit(0)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    with open(pids, "w") as out:
        json.dump([worker.pid], out)
    if mode == "leaves":
        time.sleep(1.5)  # long enough to be seen running
        sys.exit(3)
    while True:
        time.sleep(0.1)
    """
)


def _run_stand_in(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], list[psutil.Process]]:
    """``run_server`` over the stand-in, in a process of its own; it and the
    processes under it once the stand-in's worker has started."""
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    pids = tmp_path / "pids.json"
    runner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys\n"
            "from cli.serve import run_server\n"
            "sys.exit(run_server(sys.argv[1:], dict(os.environ), stop_timeout=1.0))",
            sys.executable,
            str(script),
            mode,
            str(pids),
        ],
        cwd=REPO,
        text=True,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not (pids.exists() and pids.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = psutil.Process(json.loads(pids.read_text())[0])
    return runner, [psutil.Process(runner.pid), *psutil.Process(runner.pid).children(True), worker]


def _still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=10)
    return [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_is_passed_on_and_its_exit_status_returned(tmp_path, signum):
    runner, tree = _run_stand_in(tmp_path, "graceful")
    runner.send_signal(signum)
    assert runner.wait(timeout=30) == 0, runner.stderr
    assert _still_running(tree) == []


def test_a_service_that_ignores_the_signal_is_killed_after_the_timeout(tmp_path):
    runner, tree = _run_stand_in(tmp_path, "stubborn")
    started = time.monotonic()
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=30) == 128 + signal.SIGKILL
    assert time.monotonic() - started >= 1.0  # stop_timeout
    assert "did not stop within 1 s" in runner.stderr.read()  # type: ignore[union-attr]
    assert _still_running(tree) == []  # the worker in its own session too


def test_what_the_service_leaves_running_is_ended_when_it_exits(tmp_path):
    runner, tree = _run_stand_in(tmp_path, "leaves")
    assert runner.wait(timeout=30) == 3
    assert _still_running(tree) == []


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight_and_leaves_no_process(trained_home, tmp_path):
    """The real ``tailor serve`` on a trained home with no key yet: it adds one admin
    key to the store (printed once, never written), serves on loopback by default,
    and on SIGTERM answers the request in flight, exits 0 and leaves no process."""
    home = tmp_path / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("online", "demo"))
    port = _free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "TAILOR_HOME": str(home),
        "OPENBLAS_NUM_THREADS": "1",
        "TAILOR_SERVING__REGISTRY_POLL_SECONDS": "3600",  # an idle worker uses no CPU
    }
    env.pop("TAILOR_SERVING__API_KEYS", None)
    with open(log, "w") as out:
        cli = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            assert cli.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        printed = log.read_text()
        assert f"serving on http://127.0.0.1:{port}" in printed
        shown = re.findall(r"tk_k_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", printed)
        assert len(shown) == 1, printed  # printed once
        token = shown[0]
        assert token.encode() not in (home / "serving" / "keys.json").read_bytes()
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/status", headers=auth, timeout=30).status_code == 200

        tree = [psutil.Process(cli.pid), *psutil.Process(cli.pid).children(recursive=True)]
        worker = next(p for p in tree if "_bentoml_impl.worker" in " ".join(p.cmdline()))
        snapshot = load_snapshot(latest_snapshot(home / "features"))
        ids = [str(c) for c in snapshot.customers["customer_id"]]
        body = {"customer_ids": (ids * 100)[:10_000], "n": 10}
        idle = sum(worker.cpu_times()[:2])
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(
                httpx.post, f"{url}/recommend_batch", json=body, headers=auth, timeout=120
            )
            # The worker is on it once it has spent CPU time (idle, it spends none).
            deadline = time.monotonic() + 60
            while sum(worker.cpu_times()[:2]) - idle < 0.05 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not answer.done()
            os.kill(cli.pid, signal.SIGTERM)
            response = answer.result()
        assert response.status_code == 200, response.text[:300]
        assert len(response.json()["results"]) == 10_000
        assert cli.wait(timeout=120) == 0, log.read_text()[-3000:]
        assert _still_running(tree) == []
    finally:
        if cli.poll() is None:  # a failed assertion: the service is in a session of its
            # own (and its worker in another), so kill every process under the CLI.
            left = [psutil.Process(cli.pid), *psutil.Process(cli.pid).children(recursive=True)]
            for process in left:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
