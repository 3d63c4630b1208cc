"""Keyed hashes of personal data (HMAC-SHA256), with a named, rotatable key.

A plain SHA-256 of a phone number is reversed by trying every number (seconds); a
keyed hash is not without the key. Every hash names the key that made it,
``hk:<key id>:<hex>``, so that after a rotation (a new ``privacy.hash_key`` and the
old one kept in ``privacy.retired_hash_keys``) stored hashes still match:
:meth:`KeyedHasher.candidates` gives a value's hash under every known key.

The key comes from the settings; without one, a random key is generated once in
``TAILOR_HOME/secrets/hash.key`` (mode 0600) and used from then on.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from features.errors import InputError, WriteFailed
from features.settings import PrivacyConfig

KEY_FILE = Path("secrets") / "hash.key"
LOCAL_KEY_ID = "local"
PREFIX = "hk"


@dataclass(frozen=True)
class KeyedHasher:
    """HMAC-SHA256 under the current key; earlier keys only to recognise old hashes."""

    key_id: str
    key: bytes
    retired: tuple[tuple[str, bytes], ...] = ()

    def hash(self, value: str) -> str:
        """``hk:<key id>:<hex>`` of ``value`` under the current key."""
        return _digest(self.key_id, self.key, value)

    def hash_many(self, values: Iterable[str]) -> list[str]:
        return [self.hash(v) for v in values]

    def candidates(self, value: str) -> list[str]:
        """``value``'s hash under the current key and every retired one."""
        return [self.hash(value)] + [_digest(i, k, value) for i, k in self.retired]

    @classmethod
    def from_settings(cls, privacy: PrivacyConfig, home: Path) -> KeyedHasher:
        """The hasher of ``[privacy]``; without a ``hash_key``, the home's own key
        (generated on first use)."""
        retired = tuple(
            (name, secret.get_secret_value().encode())
            for name, secret in sorted(privacy.retired_hash_keys.items())
        )
        if privacy.hash_key is not None:
            key = privacy.hash_key.get_secret_value().encode()
            if len(key) < 16:
                raise InputError(
                    "privacy.hash_key", "(hidden)", "must be at least 16 characters long"
                )
            return cls(privacy.hash_key_id, key, retired)
        return cls(LOCAL_KEY_ID, _home_key(home), retired)


def _digest(key_id: str, key: bytes, value: str) -> str:
    mac = hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{PREFIX}:{key_id}:{mac}"


def _home_key(home: Path) -> bytes:
    """The key kept in the home, created (0600, never replaced) on first use.

    Raises
    ------
    WriteFailed
        It does not exist yet and cannot be written (a read-only or full home).
    """
    path = home / KEY_FILE
    try:
        return _read_or_make(path)
    except OSError as error:
        raise WriteFailed(path, error) from error


def _read_or_make(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32))
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError:
                path.unlink(missing_ok=True)  # no half-written key for the next run
                raise
    key = path.read_text().strip()
    if len(key) < 32:
        raise InputError("privacy.hash_key", str(path), "is empty or truncated; restore it")
    return key.encode()


class ErasedIds(Protocol):
    """What the data layer asks of the privacy ledger
    (:class:`features.privacy.ledger.PrivacyLedger`): which ids are erased, and the
    keyed hash it masks with."""

    hasher: KeyedHasher

    def erased(self, ids: Iterable[str]) -> set[str]: ...
