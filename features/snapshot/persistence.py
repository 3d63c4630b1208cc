"""Snapshot folders: where one lives, writing it atomically (and tidying what a dead
build left), finding the latest, reading one back, and rewriting some of its files
in place (erasure)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.data.locks import exclusive_lock
from features.errors import InputError, NotFoundError, WriteFailed
from features.identity.resolution import CONFLICT_COLUMNS, LINK_COLUMNS, Identity
from features.snapshot.tables import SNAPSHOT_FORMAT, Snapshot


def snapshot_dir(root: Path, as_of: datetime) -> Path:
    """``root/as_of=YYYY-MM-DDTHH:MM:SSZ``."""
    return Path(root) / f"as_of={as_of.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def load_identity(path: Path, manifest: dict[str, Any] | None = None) -> Identity:
    """The identity tables of the snapshot folder ``path``."""
    if manifest is None:
        manifest = json.loads((path / "manifest.json").read_text())
    links = path / "identity_links.parquet"  # absent from snapshots written before links
    conflicts = pd.read_parquet(path / "identity_conflicts.parquet")
    if "anonymous_id" in conflicts:  # written when shared devices were the only conflicts
        conflicts = pd.DataFrame(
            {
                "kind": "anonymous",
                "key": conflicts["anonymous_id"],
                "n_customers": conflicts["n_customers"],
                "reason": "shared_device",
                "customer_ids": conflicts["canonical_ids"],
            },
            columns=CONFLICT_COLUMNS,
        )
    return Identity(
        pd.read_parquet(path / "identity.parquet"),
        conflicts,
        pd.read_parquet(links) if links.exists() else pd.DataFrame(columns=LINK_COLUMNS),
        manifest.get("identity", {}),
    )


def write_snapshot(snapshot: Snapshot, root: Path) -> Path:
    """Write every table atomically (a temporary folder renamed into place)."""
    writer = _SnapshotWriter(root, snapshot.as_of, workers=2)
    try:
        # The customer table takes most of the time; the rest is written beside it.
        writer.frame("customers", snapshot.customers)
        writer.frame("items", snapshot.items)
        writer.frame("category_affinity", snapshot.category_affinity)
        writer.frame("segments", snapshot.segments)
        writer.frame("triggers", snapshot.triggers)
        writer.frame("identity", snapshot.identity.mapping)
        writer.frame("identity_conflicts", snapshot.identity.conflicts)
        writer.frame("identity_links", snapshot.identity.links)
        writer.matrix(snapshot.interactions, snapshot.user_ids, snapshot.item_ids)
        return writer.finish(snapshot.manifest)
    except BaseException:
        writer.abandon()
        raise


class _SnapshotWriter:
    """Writes a snapshot's files into a temporary folder on background threads (the
    Parquet writer works outside the GIL, so computing goes on meanwhile), then
    renames the folder into place: readers see all of a snapshot or none of it.

    It holds the lock of ``root`` from start to finish or abandon, so two builds
    never interleave their renames; under it, folders left by a build that died
    are tidied (a snapshot it had moved aside is moved back)."""

    def __init__(
        self, root: Path, as_of: datetime, workers: int = 1, lock_timeout: float | None = None
    ) -> None:
        self.final = snapshot_dir(root, as_of)
        self.tmp = self.final.with_name(self.final.name + f"{_TMP}{os.getpid()}")
        self._held = ExitStack()
        what = f"the feature snapshots under {root}"
        self._held.enter_context(
            exclusive_lock(Path(root), what=what, timeout=lock_timeout, keep_file=False)
        )
        try:
            _tidy(Path(root))
            if self.tmp.exists():
                shutil.rmtree(self.tmp)
            self.tmp.mkdir(parents=True)
        except OSError as error:
            self._held.close()
            raise WriteFailed(self.tmp, error) from error
        except BaseException:
            self._held.close()
            raise
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshot")
        self._pending: list[Future[Any]] = []

    def frame(self, name: str, frame: pd.DataFrame) -> None:
        """Write ``frame`` as ``name.parquet`` (it must not change afterwards)."""
        path = self.tmp / f"{name}.parquet"
        self._pending.append(self._pool.submit(frame.to_parquet, path, index=False))

    def matrix(
        self, interactions: sp.csr_matrix, user_ids: np.ndarray, item_ids: np.ndarray
    ) -> None:
        """The interaction matrix and its row and column ids."""
        self._pending.append(
            self._pool.submit(
                sp.save_npz, self.tmp / "interactions.npz", interactions, compressed=False
            )
        )
        self.frame("users", pd.DataFrame({"customer_id": user_ids}))
        self.frame("item_index", pd.DataFrame({"item_id": item_ids}))

    def finish(self, manifest: dict[str, Any]) -> Path:
        """Wait for every file, add the manifest and move the folder into place."""
        try:
            try:
                for future in self._pending:
                    future.result()
            finally:
                self._pool.shutdown()
            (self.tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        except OSError as error:
            raise WriteFailed(self.tmp, error) from error
        final = self.final
        old = final.with_name(final.name + f"{_OLD}{os.getpid()}")
        try:
            if final.exists():
                final.rename(old)
                self.tmp.rename(final)
                shutil.rmtree(old)
            else:
                self.tmp.rename(final)
        except OSError as error:
            if old.exists() and not final.exists():
                old.rename(final)  # the snapshot it was to replace stays
            raise WriteFailed(final, error) from error
        self._held.close()
        return final

    def abandon(self) -> None:
        """Stop and remove the temporary folder (the computation failed)."""
        try:
            self._pool.shutdown(cancel_futures=True)
            shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            self._held.close()


_TMP = ".tmp-"
_OLD = ".old-"


def _tidy(root: Path) -> None:
    """Folders a dead build left under ``root``: its unfinished copy removed, and a
    snapshot it had moved aside (to replace it) moved back if nothing replaced it."""
    for folder in root.glob("as_of=*"):
        name = folder.name
        if _TMP in name:
            shutil.rmtree(folder)
        elif _OLD in name:
            final = folder.with_name(name.split(_OLD)[0])
            if final.exists():
                shutil.rmtree(folder)
            else:
                folder.rename(final)


@contextmanager
def snapshots_locked(root: Path, *, lock_timeout: float | None = None) -> Iterator[None]:
    """Hold the lock a build holds on ``root`` (what a dead build left tidied first),
    for a job that rewrites snapshots in place: no build swaps a folder meanwhile."""
    what = f"the feature snapshots under {root}"
    with exclusive_lock(Path(root), what=what, timeout=lock_timeout, keep_file=False):
        try:
            _tidy(Path(root))
        except OSError as error:
            raise WriteFailed(Path(root), error) from error
        yield


def rewrite_snapshot(folder: Path, files: Mapping[str, Callable[[Path], None] | None]) -> None:
    """Replace some files of the snapshot ``folder`` all at once, as a build replaces
    a snapshot: a copy of the folder is made beside it (unchanged files hard-linked,
    or copied where links are refused), each file named in ``files`` is written into
    the copy by its function (given the path to write; ``None``: the file is left
    out), and the copy is renamed into place. Readers see the old snapshot or the
    new one, never a mix (the interaction matrix and its row ids stay aligned).

    The caller holds :func:`snapshots_locked`. A failure leaves the old folder.
    """
    folder = Path(folder)
    tmp = folder.with_name(folder.name + f"{_TMP}{os.getpid()}")
    old = folder.with_name(folder.name + f"{_OLD}{os.getpid()}")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for path in folder.iterdir():
            if path.name in files:
                continue
            if path.is_dir():
                shutil.copytree(path, tmp / path.name, copy_function=_link_or_copy)
            else:
                _link_or_copy(path, tmp / path.name)
        for name, write in files.items():
            if write is not None:
                write(tmp / name)
        folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old)
    except BaseException as error:
        if old.exists() and not folder.exists():
            old.rename(folder)  # the snapshot as it was stays
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, OSError):
            raise WriteFailed(folder, error) from error
        raise


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def snapshot_folders(root: Path) -> list[Path]:
    """The complete snapshot folders under ``root``, oldest first."""
    return sorted(
        p
        for p in Path(root).glob("as_of=*")
        if p.is_dir()
        and _TMP not in p.name  # a build's copy, complete or not, is not yet a snapshot
        and _OLD not in p.name
        and (p / "manifest.json").exists()
    )


def latest_snapshot(root: Path) -> Path:
    """The newest complete snapshot folder under ``root``."""
    folders = snapshot_folders(root)
    if not folders:
        raise NotFoundError(f"no feature snapshot under {root}; run `tailor features build`")
    return folders[-1]


def load_snapshot(path: Path) -> Snapshot:
    """Read a snapshot written by :func:`write_snapshot`."""
    path = Path(path)
    manifest = json.loads((path / "manifest.json").read_text())
    if manifest.get("format") != SNAPSHOT_FORMAT:
        raise InputError("snapshot format", manifest.get("format"), f"expected {SNAPSHOT_FORMAT}")
    return Snapshot(
        as_of=datetime.fromisoformat(manifest["as_of"]),
        customers=pd.read_parquet(path / "customers.parquet"),
        items=pd.read_parquet(path / "items.parquet"),
        category_affinity=pd.read_parquet(path / "category_affinity.parquet"),
        interactions=sp.load_npz(path / "interactions.npz").tocsr(),
        user_ids=pd.read_parquet(path / "users.parquet")["customer_id"].to_numpy(dtype=str),
        item_ids=pd.read_parquet(path / "item_index.parquet")["item_id"].to_numpy(dtype=str),
        segments=pd.read_parquet(path / "segments.parquet"),
        triggers=pd.read_parquet(path / "triggers.parquet"),
        identity=load_identity(path, manifest),
        manifest=manifest,
    )
