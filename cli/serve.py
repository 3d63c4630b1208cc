"""``tailor serve``: run the decision service (``bentoml serve serving.service:Tailor``);
``tailor rules check``: the service's own check of its rules, without serving.

Before anything is printed as serving, the port is bound once to see that it is free,
and the service's own preflight checks its rules. The service then runs in a session
(process group) of its own: SIGTERM and SIGINT sent to ``tailor serve`` are passed to
that whole group, BentoML's arbiter and its workers alike. Each worker (uvicorn)
stops taking connections and finishes the requests in flight; whatever still runs
``serving.shutdown_timeout_seconds`` after the first signal is killed.
``tailor serve`` exits when the service exits, with its exit status (128 + N for a
service ended by signal N).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

from cli import keys
from features.errors import InputError, TailorError

if TYPE_CHECKING:
    from cli.settings import Settings

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
ALL_SCOPES = "decide,ingest,admin"  # the key made when none exists: it can do everything


def add_parsers(sub: Any) -> None:
    """The ``serve`` and ``rules`` subcommands."""
    serve = sub.add_parser("serve", help="serve decisions over HTTP (BentoML)")
    serve.add_argument(
        "--host", default=None, help="address bound (default: serving.host, 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=None, help="port bound (default: serving.port, 3000)"
    )

    rules = sub.add_parser("rules", help="the decision service's rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    rules_sub.add_parser(
        "check",
        help="compile the rules and check the content they name against the active content",
    )


def serve(settings: Settings, *, host: str | None, port: int | None, examples: bool = False) -> int:
    """Run the service until it exits or is stopped; its exit status."""
    host = host or settings.serving.host
    port = port or settings.serving.port
    check_port_free(host, port)
    env = service_environment(settings)
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    code = check_rules(env)
    if code != 0:
        print("tailor: not serving: fix the rules above (tailor rules check)", file=sys.stderr)
        return code
    key = _api_key(settings, env)
    if examples:
        print_examples(settings, f"http://{host}:{port}", key)
    print(f"serving on http://{host}:{port} (Ctrl+C to stop); API docs at /docs", flush=True)
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:Tailor",
        "--host",
        host,
        "--port",
        str(port),
    ]
    return run_server(command, env, stop_timeout=settings.serving.shutdown_timeout_seconds)


def check_port_free(host: str, port: int) -> None:
    """Bind ``host:port`` once (as the server will, with SO_REUSEADDR) and let go.

    Raises
    ------
    TailorError
        When the port is in use, or the address cannot be bound at all.
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise InputError("host", host, f"not an address of this machine: {error}") from None
    family, kind, protocol, _, address = found[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise TailorError(
                    f"port {port} on {host} is in use: stop what holds it or pass --port"
                ) from None
            raise TailorError(f"cannot bind port {port} on {host}: {error.strerror}") from None


def run_server(command: list[str], env: dict[str, str], *, stop_timeout: float) -> int:
    """Run ``command`` in a session of its own until it exits, passing SIGTERM and
    SIGINT on to its process group; its exit status (128 + N if signal N ended it).

    BentoML's arbiter (circus) starts each worker in a session of its own, so a
    signal to the group reaches the arbiter, which stops its workers (SIGTERM: each
    finishes the requests in flight). The processes under ``command`` are noted as
    they come, so that ``stop_timeout`` seconds after the first signal every one of
    them is killed (SIGKILL), and any of them still running once ``command`` has
    exited gets SIGTERM, then SIGKILL after ``stop_timeout``.
    """
    import psutil

    forward = _Forwarder()
    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        server = subprocess.Popen(command, env=env, start_new_session=True)
        tree = _Tree(psutil.Process(server.pid))
        forward.attach(server.pid)  # passes on a signal that came before it
        while True:
            tree.note()
            try:
                code = server.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            if forward.first_at is not None and time.monotonic() - forward.first_at > stop_timeout:
                print(
                    f"tailor: the service did not stop within {stop_timeout:g} s "
                    "(serving.shutdown_timeout_seconds): killing it",
                    file=sys.stderr,
                )
                tree.kill()
                code = server.wait()
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    tree.end(stop_timeout)
    return 128 - code if code < 0 else code


class _Forwarder:
    """A signal handler passing each signal on to a process group, noting the first."""

    def __init__(self) -> None:
        self.group: int | None = None
        self.first_at: float | None = None
        self.received: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.first_at is None:
            self.first_at = time.monotonic()
        self.received = signum
        if self.group is not None:
            _signal_group(self.group, signum)

    def attach(self, group: int) -> None:
        self.group = group
        if self.received is not None:
            _signal_group(group, self.received)


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


class _Tree:
    """A process and every process seen under it so far (``psutil.Process`` objects:
    a pid reused by an unrelated process is not mistaken for one of them)."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.seen: set[Any] = set()

    def note(self) -> None:
        import psutil

        try:
            self.seen.update(self.root.children(recursive=True))
        except psutil.NoSuchProcess:
            pass

    def running(self) -> list[Any]:
        import psutil

        alive = []
        for process in self.seen:
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
            except psutil.NoSuchProcess:
                pass
        return alive

    def kill(self) -> None:
        self.note()
        for process in [self.root, *self.running()]:
            _quietly(process.kill)

    def end(self, timeout: float) -> None:
        """Stop what is left under the exited root: SIGTERM, then SIGKILL."""
        import psutil

        left = self.running()
        for process in left:
            _quietly(process.terminate)
        _, alive = psutil.wait_procs(left, timeout=timeout)
        for process in alive:
            _quietly(process.kill)


def _quietly(act: Any) -> None:
    import psutil

    try:
        act()
    except psutil.NoSuchProcess:
        pass


def _api_key(settings: Settings, env: dict[str, str]) -> str | None:
    """A key for the sample requests, if one is known in plaintext; adds an admin
    key to the key store (and prints it once) when no key exists at all."""
    configured = settings.serving.api_keys
    if configured:
        usable = [k for k, scopes in configured.items() if {"admin", "decide"} & set(scopes)]
        return usable[0] if usable else None
    made = keys.ensure_key(settings.keys_file, name="admin (tailor serve)", scopes=ALL_SCOPES)
    if made is None:
        print(f"API keys: from {settings.keys_file} (tailor keys list)")
        return None
    print(f"no API key yet: added admin key {made['id']} to {settings.keys_file}.")
    print("The key, shown only this once (tailor keys revoke / add to replace it):")
    print(f"   {made['token']}")
    return str(made["token"])


def service_environment(settings: Settings) -> dict[str, str]:
    """The environment of a service process: its settings are these settings — the
    same settings file, and every path made absolute (so is the demo's rules file,
    set in this process rather than in the file or the environment)."""
    env = dict(os.environ)
    env["TAILOR_HOME"] = str(settings.home.resolve())
    if settings.config is not None:
        env["TAILOR_CONFIG"] = str(settings.config.resolve())
    if settings.serving.rules_file is not None:
        env["TAILOR_SERVING__RULES_FILE"] = str(settings.serving.rules_file.resolve())
    if settings.serving.keys_file is not None:
        env["TAILOR_SERVING__KEYS_FILE"] = str(settings.serving.keys_file.resolve())
    if settings.features.segments_file is not None:
        env["TAILOR_FEATURES__SEGMENTS_FILE"] = str(settings.features.segments_file.resolve())
    return env


def check_rules(env: dict[str, str]) -> int:
    """The service's own check of its rules against the active content, run in a
    process of its own with the service's environment (``python -m serving.preflight``);
    2 on a problem, which it prints naming the rule."""
    sys.stdout.flush()
    return subprocess.call([sys.executable, "-m", "serving.preflight"], env=env)


def print_examples(settings: Settings, url: str, key: str | None) -> None:
    """A sample curl for each endpoint, with ids from the loaded store."""
    from features.snapshot import latest_snapshot, load_snapshot

    snapshot = load_snapshot(latest_snapshot(settings.features_dir))
    personalised = snapshot.customers[snapshot.customers["personalised"].astype(bool)]
    customer = str(personalised["customer_id"].iloc[0])
    item = str(snapshot.item_ids[0])
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    bearer = key or "$TAILOR_API_KEY"
    header = f'-H "Authorization: Bearer {bearer}"'
    auth = f"{header} -H 'Content-Type: application/json'"
    event = {
        "event_id": f"demo-{int(time.time())}",
        "ts": now,
        "event_type": "add_to_cart",
        "customer_id": customer,
        "item_id": item,
    }
    print("\nsample requests (in another terminal, once the server says it is ready):")
    if key is None:
        print("export TAILOR_API_KEY=<key>   # a key of the key store (tailor keys add)")
    samples = [
        ("recommend", {"customer_id": customer, "n": 5}),
        ("recommend_batch", {"customer_ids": [customer, "unknown-visitor"], "n": 3}),
        ("similar_items", {"item_id": item, "n": 5}),
        ("choose", {"customer_id": customer, "slot": "offer"}),
        ("choose", {"customer_id": customer, "slot": "subject"}),
        ("events", {"events": [event]}),
    ]
    for route, body in samples:
        print(f"curl -s -X POST {url}/{route} {auth} -d '{json.dumps(body)}'")
    print(f"curl -s {url}/customers/{customer} {header}")
    print(f"curl -s {url}/status {header}")
    print(f"curl -s -X POST {url}/admin/reload {auth}")
    print(f"curl -s {url}/readyz")
    print()
