"""A real ``bentoml serve`` process on loopback, shared by the benchmarks and the tests,
and the trained home the benchmarks serve.

:class:`Server` starts ``python -m bentoml serve TARGET --host 127.0.0.1`` on a free
port with ``TAILOR_HOME`` and the API keys set, runs this checkout's code (the
repository root goes first on ``PYTHONPATH``, whatever an editable install points
at), writes the server's output to a log file, waits for ``/readyz``, and can sample
the resident memory of the whole process tree (BentoML's supervisor, its workers and
their children) on a thread. ``stop`` ends the process group.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import httpx
import psutil

from simulation import DEMO_RULES_FILE

REPO = Path(__file__).resolve().parents[1]
TAILOR = "serving.service:Tailor"


def build_home(
    home: Path, customers: int, *, days: int | None = None, seed: int | None = None
) -> None:
    """A trained home at ``home``: the real ``tailor demo --no-serve`` (a simulated
    store, a feature snapshot, the recommender and selectors registered as champions).
    Raises ``RuntimeError`` with the end of the command's output when it fails."""
    print(f"building a trained home in {home} ({customers:,} customers) …", file=sys.stderr)
    args = ["demo", "--no-serve", "--customers", str(customers), "--tune-budget", "1"]
    if days is not None:
        args += ["--days", str(days)]
    if seed is not None:
        args += ["--seed", str(seed)]
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env={**os.environ, "TAILOR_HOME": str(home), "OPENBLAS_NUM_THREADS": "1"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        tail = result.stderr[-3000:]
        raise RuntimeError(f"tailor demo --no-serve exited {result.returncode}:\n{tail}")


def hold_home(home: Path) -> BinaryIO:
    """Hold ``home`` for this benchmark run alone, as long as the returned file is open
    (keep it until the run ends): a second run on the same home, which would delete the
    online stores under the first one's server, stops at once saying so."""
    home.mkdir(parents=True, exist_ok=True)
    lock = open(home / ".bench.lock", "a+b")  # held open for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise SystemExit(
            f"{home} is in use by another benchmark run: wait, or pass --home"
        ) from None
    return lock


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_usage(pid: int) -> tuple[int, float]:
    """Resident bytes and CPU seconds (user + system) of process ``pid`` and all its
    descendants; ``(0, 0.0)`` if it is gone."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0.0
    rss, cpu = 0, 0.0
    for process in processes:
        try:
            with process.oneshot():
                rss += process.memory_info().rss
                times = process.cpu_times()
                cpu += times.user + times.system
        except psutil.Error:  # a child that exited between listing and reading
            pass
    return rss, cpu


class Server:
    """A ``bentoml serve`` process on 127.0.0.1.

    Parameters
    ----------
    home : pathlib.Path
        ``TAILOR_HOME`` of the server.
    keys : mapping of str to list of str
        API key → scopes (``TAILOR_SERVING__API_KEYS``).
    target : str
        The BentoML service, ``module:Class`` (default the Tailor service).
    env : mapping of str to str, optional
        More environment variables, on top of the defaults (the demo store's rules
        file, one BLAS thread, no MLflow progress bars).
    log : pathlib.Path, optional
        Where the server's stdout and stderr go (default ``server-<port>.log`` beside
        ``home``).
    ready_timeout : float
        Seconds to wait for ``/readyz`` to answer 200 before giving up.
    rss_interval : float, optional
        Sample the process tree's RSS and CPU time every this many seconds into
        ``samples`` and ``peak_rss`` (default: no sampling).

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:<port>``.
    client : httpx.Client
        A client on ``url`` for plain calls (60 s timeout).
    samples : list of (float, int, float)
        ``(time.monotonic(), RSS bytes, CPU seconds so far)`` per sample.
    peak_rss : int
        The largest sample, bytes.
    """

    def __init__(
        self,
        home: Path,
        *,
        keys: Mapping[str, list[str]],
        target: str = TAILOR,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        ready_timeout: float = 180.0,
        rss_interval: float | None = None,
    ) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log or home.parent / f"server-{self.port}.log"
        self.samples: list[tuple[float, int, float]] = []
        self.peak_rss = 0
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        variables = {
            **os.environ,
            "PYTHONPATH": path,
            "TAILOR_HOME": str(home),
            "TAILOR_SERVING__API_KEYS": json.dumps(dict(keys)),
            "TAILOR_SERVING__RULES_FILE": str(DEMO_RULES_FILE),  # the demo store's content
            "OPENBLAS_NUM_THREADS": "1",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            **(env or {}),
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # closed in stop()
        command = [sys.executable, "-m", "bentoml", "serve", target]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(
            command,
            env=variables,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.client = httpx.Client(base_url=self.url, timeout=60.0)
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{target} exited at start-up: {self.tail()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            self.stop()
            raise RuntimeError(f"{target} not ready in {ready_timeout:.0f} s: {self.tail()}")
        if rss_interval is not None:
            self._sampler = threading.Thread(
                target=self._sample, args=(rss_interval,), daemon=True, name="rss-sampler"
            )
            self._sampler.start()

    def usage(self) -> tuple[int, float]:
        """Resident bytes and CPU seconds so far of the server's process tree."""
        return tree_usage(self.process.pid)

    def _sample(self, interval: float) -> None:
        while not self._stop.is_set():
            rss, cpu = self.usage()
            if rss:
                self.samples.append((time.monotonic(), rss, cpu))
                self.peak_rss = max(self.peak_rss, rss)
            self._stop.wait(interval)

    def tail(self, chars: int = 3000) -> str:
        """The end of the server's log."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """End the server and every process it started: SIGTERM to the supervisor's
        process group and to each worker, SIGKILL to whatever is left after 10 s.

        BentoML's workers run in process groups of their own: after an overload,
        workers were seen serving queued requests a minute after the supervisor had
        gone, writing to a home the next run was already deleting.
        """
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        self.client.close()
        try:
            tree = [psutil.Process(self.process.pid)]
            tree += tree[0].children(recursive=True)
        except psutil.Error:
            tree = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        for process in tree[1:]:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(tree, timeout=10)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=5)
        self.process.wait()
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
