"""API keys stored as hashes: a JSON file of key ids, names, scopes and SHA-256 digests.

A key is shown once, when it is made: ``tk_<id>_<secret>``. The id (``k_`` and 8 hex
digits) is public: it names the key in listings and logs, and makes a lookup one dict
access. The secret is 256 random bits (43 URL-safe base64 characters); the file keeps
only its SHA-256 digest. A fast hash is enough for a random 256-bit secret (there is
no dictionary to try), and digests are compared with :func:`hmac.compare_digest`.

Writes (add, revoke) hold a lock file beside the key file (``fcntl.flock``), write a
temporary file, fsync it and rename it over the key file, so a reader sees the old
file or the new one, never part of one. A :class:`KeyStore` re-reads the file when
its size, modification time or inode changes, checked at most once a second, so a key
added or revoked by another process takes effect in a running service without a
restart.

``python -m serving.keys FILE add|list|revoke|ensure`` is this store as a command
(``tailor keys`` runs it, so the command line stays fast to start): it prints JSON,
and an error on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.errors import InputError, NotFoundError, TailorError

logger = logging.getLogger(__name__)

# The scopes of features.settings.Scope (a test checks they agree); repeated here so
# that this module imports no pydantic and ``python -m serving.keys`` starts fast.
SCOPES: tuple[str, ...] = ("decide", "ingest", "admin")
FORMAT_VERSION = 1
_ID = re.compile(r"k_[0-9a-f]{8}")
_TOKEN = re.compile(rb"tk_(k_[0-9a-f]{8})_([A-Za-z0-9_-]{43})")
_SECRET_BYTES = 32


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret.

    Attributes
    ----------
    id : str
        Public id, ``k_`` and 8 hex digits.
    name : str
        Who or what the key is for (may be empty).
    scopes : frozenset of str
        A non-empty subset of :data:`SCOPES`.
    created : datetime
        When the key was made (UTC).
    """

    id: str
    name: str
    scopes: frozenset[str]
    created: datetime


@dataclass(frozen=True)
class NewKey:
    """A key just made, and its plaintext token: shown once, stored nowhere."""

    key: ApiKey
    token: str


def parse_scopes(text: str | Iterable[str]) -> frozenset[str]:
    """Scopes from ``"decide,ingest"`` (or an iterable of names), validated.

    Raises
    ------
    InputError
        Naming ``scopes`` when one is unknown or none is given.
    """
    names = text.split(",") if isinstance(text, str) else list(text)
    scopes = frozenset(name.strip() for name in names if name.strip())
    if not scopes:
        raise InputError("scopes", text, f"give at least one of {', '.join(SCOPES)}")
    unknown = sorted(scopes - set(SCOPES))
    if unknown:
        raise InputError("scopes", text, f"{unknown[0]!r} is not one of {', '.join(SCOPES)}")
    return scopes


class KeyStore:
    """The API keys in one JSON file.

    Parameters
    ----------
    path : Path
        The key file; it need not exist yet (no keys).
    check_every : float
        Seconds between two checks of the file for changes, by :meth:`lookup`.
    clock : callable
        Monotonic seconds, for those checks.
    """

    def __init__(
        self,
        path: Path,
        *,
        check_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.check_every = check_every
        self.clock = clock
        self._keys: dict[str, tuple[ApiKey, bytes]] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked_at: float | None = None

    def lookup(self, token: bytes) -> ApiKey | None:
        """The key a bearer token is, or ``None`` for one that is malformed, unknown,
        revoked or wrong. Never raises: a key file that cannot be read is logged and
        grants nothing until it is fixed."""
        found = _TOKEN.fullmatch(token.strip())
        if found is None:
            return None
        self._refresh()
        entry = self._keys.get(found[1].decode())
        if entry is None:
            return None
        key, digest = entry
        return key if hmac.compare_digest(digest, _digest(found[2])) else None

    def keys(self) -> list[ApiKey]:
        """Every key in the file now, oldest first."""
        return sorted((key for key, _ in _read(self.path).values()), key=lambda k: k.created)

    def add(self, *, name: str = "", scopes: str | Iterable[str]) -> NewKey:
        """Make a key, store its digest, return it with its token (the only copy)."""
        with _locked(self.path):
            return self._add(_read(self.path), name=name, scopes=scopes)

    def ensure(self, *, name: str, scopes: str | Iterable[str]) -> NewKey | None:
        """:meth:`add` only if the file holds no key (atomically); ``None`` if it does."""
        with _locked(self.path):
            entries = _read(self.path)
            return None if entries else self._add(entries, name=name, scopes=scopes)

    def revoke(self, key_id: str) -> ApiKey:
        """Remove a key; a store that reads the file refuses it from its next check.

        Raises
        ------
        NotFoundError
            When the file has no key of that id.
        """
        with _locked(self.path):
            entries = _read(self.path)
            if key_id not in entries:
                raise NotFoundError(f"no API key {key_id!r} in {self.path} (tailor keys list)")
            key, _ = entries.pop(key_id)
            _write(self.path, entries)
        return key

    def _add(
        self, entries: dict[str, tuple[ApiKey, bytes]], *, name: str, scopes: str | Iterable[str]
    ) -> NewKey:
        chosen = parse_scopes(scopes)
        name = name.strip()
        if len(name) > 200 or not name.isprintable():
            raise InputError("name", name, "at most 200 printable characters")
        key_id = "k_" + secrets.token_hex(4)
        while key_id in entries:
            key_id = "k_" + secrets.token_hex(4)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        key = ApiKey(
            id=key_id, name=name, scopes=chosen, created=datetime.now(UTC).replace(microsecond=0)
        )
        entries[key_id] = (key, _digest(secret.encode()))
        _write(self.path, entries)
        return NewKey(key=key, token=f"tk_{key_id}_{secret}")

    def _refresh(self) -> None:
        """Re-read the file if it changed since the last read (at most one check per
        ``check_every`` seconds)."""
        now = self.clock()
        if self._checked_at is not None and now - self._checked_at < self.check_every:
            return
        self._checked_at = now
        if _stamp(self.path) == self._stamp:
            return
        try:
            self._keys, self._stamp = _read_stamped(self.path)
        except TailorError as error:
            logger.error("%s: no API key of the key file is accepted until it is fixed", error)
            self._keys, self._stamp = {}, _stamp(self.path)


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def _read(path: Path) -> dict[str, tuple[ApiKey, bytes]]:
    return _read_stamped(path)[0]


def _read_stamped(
    path: Path,
) -> tuple[dict[str, tuple[ApiKey, bytes]], tuple[int, int, int] | None]:
    """The file's keys by id with their digests, and the stamp of the very file read
    (a rename between a stat and the read cannot pair old keys with a new stamp)."""
    try:
        with open(path, "rb") as file:
            status = os.fstat(file.fileno())
            text = file.read()
    except FileNotFoundError:
        return {}, None
    stamp = (status.st_ino, status.st_size, status.st_mtime_ns)
    try:
        data = json.loads(text)
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {FORMAT_VERSION}")
        entries = {}
        for key_id, entry in data["keys"].items():
            if not _ID.fullmatch(key_id):
                raise ValueError(f"key id {key_id!r} is not k_ and 8 hex digits")
            key = ApiKey(
                id=key_id,
                name=str(entry["name"]),
                scopes=parse_scopes(entry["scopes"]),
                created=datetime.fromisoformat(entry["created"]),
            )
            digest = bytes.fromhex(entry["sha256"])
            if len(digest) != hashlib.sha256().digest_size:
                raise ValueError(f"key {key_id}: sha256 is not 32 bytes")
            entries[key_id] = (key, digest)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise InputError("keys_file", str(path), f"not a key file: {error}") from None
    return entries, stamp


def _write(path: Path, entries: dict[str, tuple[ApiKey, bytes]]) -> None:
    """Replace the file atomically: a temporary file beside it (mode 0600), fsynced,
    renamed over it; then the folder fsynced, so the rename survives a crash."""
    data = {
        "version": FORMAT_VERSION,
        "keys": {
            key.id: {
                "name": key.name,
                "scopes": [s for s in SCOPES if s in key.scopes],
                "created": key.created.isoformat(),
                "sha256": digest.hex(),
            }
            for key, digest in entries.values()
        },
    }
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(data, file, indent=1)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``<file>.lock`` beside the key file (a lock on the key file itself would
    not survive the rename that replaces it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _as_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "scopes": [s for s in SCOPES if s in key.scopes],
        "created": key.created.isoformat(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m serving.keys FILE COMMAND``: the store for another process, in JSON."""
    parser = argparse.ArgumentParser(prog="python -m serving.keys", description=__doc__)
    parser.add_argument("file", type=Path, help="the key file")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("add", "ensure"):
        adding = sub.add_parser(command, help=f"KeyStore.{command}")
        adding.add_argument("--scopes", required=True, help="comma-separated scopes")
        adding.add_argument("--name", default="", help="who or what the key is for")
    sub.add_parser("list", help="KeyStore.keys")
    revoke = sub.add_parser("revoke", help="KeyStore.revoke")
    revoke.add_argument("id", help="the key's id")
    args = parser.parse_args(argv)

    store = KeyStore(args.file)
    out: Any
    try:
        if args.command in ("add", "ensure"):
            made = getattr(store, args.command)(name=args.name, scopes=args.scopes)
            out = None if made is None else {**_as_json(made.key), "token": made.token}
        elif args.command == "list":
            out = [_as_json(key) for key in store.keys()]
        else:
            out = _as_json(store.revoke(args.id))
    except TailorError as error:
        print(f"tailor: {error}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
