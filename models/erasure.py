"""Forgetting people in trained models: in memory, and in the MLflow store at once.

A trained model names customers in one way only: rows of per-user state keyed by
user ids — a recommender's ``user_ids_`` and its per-user arrays (the factor models'
user factors), and a pipeline's index of user ids. Those rows are removed here, so the
model no longer knows the person (a recommendation for them is a cold start) while
every other user keeps exactly the rows, and so the scores, they had.

Item-side state (item factors, kNN similarities, popularity counts, the reranker's
trees) was learned from everyone's interactions in aggregate and names no one; it
stops reflecting the erased person's events at the next retrain, which no longer sees
them. Content selectors hold no customer rows (only content ids, feature names and
category levels shared by many customers), so they have nothing to remove by id.

:func:`erase_from_registry` rewrites the stored artifacts of a local MLflow store
(files replaced atomically, so a service loading a version reads the old file or the
new one, never half of one); a store it cannot reach as local files is refused by
name rather than skipped. Loading checks that a model's files agree on their users,
so a load that straddles a rewrite fails loudly (and is retried) instead of giving one
customer another's factors.
"""

from __future__ import annotations

import copy
import filecmp
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from features.errors import InputError, TailorError
from models.candidates import Index
from models.pipeline import RecommenderPipeline, load_artifact
from models.recommender import Recommender, recommender_names

logger = logging.getLogger(__name__)

Model = Recommender | RecommenderPipeline
M = TypeVar("M", Recommender, RecommenderPipeline)

CUSTOMER_COLUMNS = frozenset({"customer_id", "user_id", "canonical_id", "anonymous_id"})
"""Columns that hold a customer (or anonymous visitor) id in a logged table: a row
whose value there is an erased id is removed."""
ID_MEMBERS = ("user_ids", "_user_ids")
"""Members of a model's ``.npz`` files that hold user ids (pipeline index, recommender)."""
_LOCAL_SCHEMES = ("", "file")


# ====================================================================== in memory
def erase_users(model: Model, ids: Iterable[str]) -> int:
    """Remove users from a loaded recommender or pipeline, in place.

    Their ids leave ``user_ids_`` (or the pipeline's index and every generator's), and
    their rows leave every per-user array, so the model no longer knows them; every
    other user keeps the rows they had, so their scores do not change. Arrays are
    replaced, never written into: a shallow copy of the model (:func:`erased_copy`)
    can be erased while the original is still being read.

    Parameters
    ----------
    model : Recommender or RecommenderPipeline
        Fitted (or loaded). A recommender fitted without user ids reaches no one by
        id (serving scores every customer from their history): nothing is removed.
    ids : iterable of str
        External user ids; matched whole (``"7"`` never matches ``"17"``).

    Returns
    -------
    int
        How many of ``ids`` the model knew (and no longer does).
    """
    wanted = _wanted(ids)
    if isinstance(model, RecommenderPipeline):
        return len(_erase_pipeline(model, wanted))
    if isinstance(model, Recommender):
        return len(_erase_recommender(model, wanted))
    raise InputError("model", type(model).__name__, "expected a Recommender or RecommenderPipeline")


def users_known(model: Model, ids: Iterable[str]) -> set[str]:
    """The ids among ``ids`` that ``model`` (or any part of a pipeline) knows."""
    wanted = _wanted(ids)
    if isinstance(model, RecommenderPipeline):
        found = _present(model.index.user_ids, wanted)
        for generator in model.generators.values():
            found |= users_known(generator, wanted)
        return found
    if isinstance(model, Recommender):
        model._check_fitted()
        return _present(model.user_ids_, wanted)
    raise InputError("model", type(model).__name__, "expected a Recommender or RecommenderPipeline")


def erased_copy(
    model: M, ids: Iterable[str], *, memo: dict[int, tuple[Any, Any]] | None = None
) -> tuple[M, set[str]]:
    """``model`` without ``ids``, leaving ``model`` itself untouched (it may be serving).

    The copy shares every array that does not change (item factors, similarities,
    the reranker); only the per-user arrays are new. ``model`` itself is returned when
    it knows none of ``ids``.

    Parameters
    ----------
    memo : dict, optional
        ``id(original) → (original, copy)`` of the models already erased in this pass
        (the original is kept so its id is not reused), so a model shared by two
        holders (the pipeline's generator that also scores alone, the champion's and
        the challenger's) stays one object.

    Returns
    -------
    model, found
        The erased model and the ids it knew.
    """
    wanted = _wanted(ids)
    memo = {} if memo is None else memo
    if id(model) in memo and memo[id(model)][0] is model:
        return memo[id(model)][1], set()
    found = users_known(model, wanted)
    if not found:
        out: M = model
    elif isinstance(model, RecommenderPipeline):
        generators = {
            name: erased_copy(generator, wanted, memo=memo)[0]
            for name, generator in model.generators.items()
        }
        keep = ~np.isin(model.index.user_ids.astype(str), wanted)
        index = Index(model.index.user_ids[keep], model.index.item_ids)
        out = replace(model, generators=generators, index=index)
    else:
        out = copy.copy(model)
        _erase_recommender(out, wanted)
    memo[id(model)] = (model, out)
    return out, found


def _erase_recommender(model: Recommender, wanted: np.ndarray) -> set[str]:
    model._check_fitted()
    if model.user_ids_ is None:
        return set()
    gone = np.isin(model.user_ids_.astype(str), wanted)
    if not gone.any():
        return set()
    found = {str(u) for u in model.user_ids_[gone]}
    keep = ~gone
    model._keep_users(keep)
    model.user_ids_ = model.user_ids_[keep]
    model.n_users_ = int(keep.sum())
    return found


def _erase_pipeline(pipeline: RecommenderPipeline, wanted: np.ndarray) -> set[str]:
    found = set()
    for generator in pipeline.generators.values():
        found |= _erase_recommender(generator, wanted)
    gone = np.isin(pipeline.index.user_ids.astype(str), wanted)
    if gone.any():
        found |= {str(u) for u in pipeline.index.user_ids[gone]}
        pipeline.index = Index(pipeline.index.user_ids[~gone], pipeline.index.item_ids)
    return found


def _wanted(ids: Iterable[str]) -> np.ndarray:
    """The ids as a sorted unique str array; a bare string or an empty id is refused
    (iterating ``"c0001"`` would erase ``"c"``, ``"0"`` and ``"1"``)."""
    if isinstance(ids, str | bytes):
        raise InputError("ids", type(ids).__name__, "expected a collection of ids, not one id")
    if isinstance(ids, np.ndarray):
        values = [str(v) for v in ids.ravel()]
    else:
        values = list(ids)
        for value in values:
            if not isinstance(value, str):
                raise InputError("ids", type(value).__name__, "every id must be a str")
    if any(not value for value in values):
        raise InputError("ids", "", "an empty id names no one")
    return np.unique(np.asarray(values, dtype=str)) if values else np.zeros(0, dtype=str)


def _present(known: np.ndarray | None, wanted: np.ndarray) -> set[str]:
    if known is None or len(wanted) == 0 or len(known) == 0:
        return set()
    known = np.asarray(known).astype(str)
    return {str(u) for u in known[np.isin(known, wanted)]}


# ====================================================================== MLflow store
@dataclass
class _Erasure:
    """What one pass over the store found and rewrote."""

    wanted: np.ndarray
    found: set[str] = field(default_factory=set)
    models: set[Path] = field(default_factory=set)
    tables: int = 0
    rows: int = 0


def erase_from_registry(
    client: MlflowClient, ids: Iterable[str], *, names: Iterable[str] | None = None
) -> dict[str, int]:
    """Rewrite every stored MLflow artifact that holds ``ids`` without them.

    Covers every version of the registered models (all of them, or ``names``) and,
    when ``names`` is not given, every artifact of every experiment (runs and logged
    models, deleted ones too: their files stay until garbage collection). Model
    artifacts (a recommender's or a pipeline's folder) are loaded, erased with
    :func:`erase_users` and saved back; logged tables (``.csv``, ``.json``,
    ``.parquet``) lose the rows whose :data:`CUSTOMER_COLUMNS` value is an erased id.
    Each changed file is replaced atomically (written aside, then ``os.replace``).

    Parameters
    ----------
    client : mlflow.tracking.MlflowClient
        Tracking and registry of the store (``models.registry.registry_client``).
    ids : iterable of str
        Customer and anonymous ids to remove, matched whole.
    names : iterable of str, optional
        Registered models to rewrite; default every registered model and every
        experiment's artifacts.

    Returns
    -------
    dict of str to int
        ``versions`` (registered versions rewritten), ``models`` (model folders
        rewritten), ``tables`` (table files rewritten), ``rows`` (table rows removed)
        and ``users`` (how many of ``ids`` were found anywhere and removed).

    Raises
    ------
    InputError
        When an artifact location is not a local folder (its URI is named): those
        files cannot be rewritten from here, and skipping them would keep the person.
    """
    erasure = _Erasure(_wanted(ids))
    versions = _version_roots(client, names)
    roots = [root for _, root in versions]
    if names is None:
        roots += _experiment_roots(client)
    if len(erasure.wanted):
        seen: set[Path] = set()
        for root in dict.fromkeys(roots):
            if not root.is_dir():
                logger.debug("artifact folder %s does not exist: nothing to erase there", root)
                continue
            _erase_under(root, erasure, seen)
    rewritten = {
        version
        for version, root in versions
        if any(folder.is_relative_to(root) for folder in erasure.models)
    }
    counts = {
        "versions": len(rewritten),
        "models": len(erasure.models),
        "tables": erasure.tables,
        "rows": erasure.rows,
        "users": len(erasure.found),
    }
    logger.info("erased from the MLflow store: %s", counts)
    return counts


def local_artifact_path(uri: str) -> Path:
    """The local folder of an artifact URI (``file://…`` or a plain path).

    Raises
    ------
    InputError
        For any other scheme (``s3://``, ``mlflow-artifacts:/``, ``http://``…).
    """
    parsed = urlparse(uri)
    if parsed.scheme not in _LOCAL_SCHEMES or parsed.netloc not in ("", "localhost"):
        raise InputError(
            "artifact_uri",
            uri,
            "is not on a local file store: its files cannot be rewritten from here; erase "
            "the customers there with the store's own tools, or use a local artifact store",
        )
    return Path(unquote(parsed.path)).expanduser().resolve()


def _version_roots(
    client: MlflowClient, names: Iterable[str] | None
) -> list[tuple[tuple[str, str], Path]]:
    """((name, version), local folder) of every version of the chosen models."""
    if names is None:
        chosen = [m.name for m in _pages(client.search_registered_models)]
    else:
        chosen = list(dict.fromkeys(names))
    out = []
    for name in chosen:
        if "'" in name:
            raise InputError("names", name, "a registered model name may not contain a quote")
        for version in _pages(client.search_model_versions, f"name = '{name}'"):
            uri = client.get_model_version_download_uri(name, str(version.version))
            out.append(((name, str(version.version)), local_artifact_path(uri)))
    return out


def _experiment_roots(client: MlflowClient) -> list[Path]:
    """The local artifact folder of every experiment (active or deleted)."""
    experiments = _pages(client.search_experiments, view_type=ViewType.ALL)
    return [local_artifact_path(e.artifact_location) for e in experiments]


def _pages(search: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
    """Every result of an MLflow search, page by page."""
    token = None
    while True:
        page = search(*args, page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def _erase_under(root: Path, erasure: _Erasure, seen: set[Path]) -> None:
    """Rewrite the model folders and tables under ``root`` (each file once per pass).
    Staging folders go beside ``root``, outside what a download of it lists."""
    scratch = root.parent
    pipelines, recommenders = [], []
    for manifest in sorted(root.rglob("manifest.json")):
        kind = _model_kind(manifest)
        if kind == RecommenderPipeline.name:
            pipelines.append(manifest.parent)
        elif kind is not None:
            recommenders.append(manifest.parent)
    # A pipeline's generators are rewritten with it, as one model.
    folders = pipelines + [
        f for f in recommenders if not any(f.is_relative_to(p) for p in pipelines)
    ]
    for folder in folders:
        if folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        found = _rewrite_model(folder, erasure.wanted, scratch)
        if found:
            erasure.found |= found
            erasure.models.add(folder)
    for path in sorted(root.rglob("*")):
        if path.suffix not in _TABLES or not path.is_file() or path.resolve() in seen:
            continue
        if any(path.is_relative_to(f) for f in folders):
            continue  # a model's own files: handled above
        seen.add(path.resolve())
        found, rows = _TABLES[path.suffix](path, erasure.wanted)
        if rows:
            erasure.found |= found
            erasure.tables += 1
            erasure.rows += rows


def _model_kind(manifest: Path) -> str | None:
    """The class of a model artifact's manifest (a pipeline or a recommender), else None."""
    try:
        kind = json.loads(manifest.read_text()).get("class")
    except (OSError, ValueError, AttributeError):
        return None
    if kind == RecommenderPipeline.name or kind in recommender_names():
        return str(kind)
    return None


def _ids_in_model(folder: Path, wanted: np.ndarray) -> set[str]:
    """The wanted ids in a model folder's id arrays (read alone, not the whole model)."""
    found: set[str] = set()
    for path in sorted(folder.rglob("*.npz")):
        with np.load(path, allow_pickle=False) as data:
            for member in ID_MEMBERS:
                if member in data.files:
                    found |= _present(data[member], wanted)
    return found


def _rewrite_model(folder: Path, wanted: np.ndarray, scratch: Path) -> set[str]:
    """Load, erase and save back one model folder, if it knows any of ``wanted``."""
    found = _ids_in_model(folder, wanted)
    if not found:
        return set()
    model = load_artifact(folder)
    erase_users(model, wanted)
    staging = Path(tempfile.mkdtemp(prefix=".tailor-erasing-", dir=scratch))
    try:
        saved = model.save(staging / folder.name)
        _replace_files(saved, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if _ids_in_model(folder, wanted):
        raise TailorError(f"{folder}: erased ids are still there after the rewrite")
    logger.info("rewrote %s without %d users", folder, len(found))
    return found


def _replace_files(source: Path, target: Path) -> None:
    """Move each file of ``source`` over its counterpart in ``target`` (atomically,
    file by file), skipping files that did not change."""
    for new in sorted(p for p in source.rglob("*") if p.is_file()):
        old = target / new.relative_to(source)
        if old.is_file() and filecmp.cmp(new, old, shallow=False):
            continue
        with open(new, "rb") as handle:
            os.fsync(handle.fileno())
        old.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(new, old)
        except OSError:  # staging on another file system: copy beside, then replace
            _atomic_write(old, partial(_copy_into, new))


def _copy_into(path: Path, out: IO[bytes]) -> None:
    with open(path, "rb") as handle:
        shutil.copyfileobj(handle, out)


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through a temporary file beside it and ``os.replace``: a reader
    sees the old file or the new one, never part of either."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------- logged tables
def _mentions(path: Path, wanted: np.ndarray) -> bool:
    """Whether a text file holds any wanted id's bytes (as is or JSON-escaped): a
    cheap test before parsing it."""
    data = path.read_bytes()
    return any(
        str(value).encode() in data or json.dumps(str(value))[1:-1].encode() in data
        for value in wanted
    )


def _erase_csv(path: Path, wanted: np.ndarray) -> tuple[set[str], int]:
    if not _mentions(path, wanted):
        return set(), 0
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame, found, rows = _drop_rows(frame, wanted)
    if rows:
        _atomic_write(path, lambda out: out.write(frame.to_csv(index=False).encode()))
    return found, rows


def _erase_parquet(path: Path, wanted: np.ndarray) -> tuple[set[str], int]:
    columns = set(pq.read_schema(path).names)
    if not columns & CUSTOMER_COLUMNS:
        return set(), 0
    frame = pd.read_parquet(path)
    frame, found, rows = _drop_rows(frame, wanted)
    if rows:
        _atomic_write(path, lambda out: frame.to_parquet(out))
    return found, rows


def _erase_json(path: Path, wanted: np.ndarray) -> tuple[set[str], int]:
    if not _mentions(path, wanted):
        return set(), 0
    try:
        document = json.loads(path.read_text())
    except ValueError as error:
        # It mentions an erased id and cannot be read: say so rather than leave it.
        raise TailorError(f"{path} is not valid JSON, so its rows cannot be erased") from error
    targets = set(wanted.tolist())
    found: set[str] = set()
    document, rows = _erase_in_json(document, targets, found)
    if rows:
        _atomic_write(path, lambda out: out.write(json.dumps(document, indent=2).encode()))
    return found, rows


def _erase_in_json(node: Any, wanted: set[str], found: set[str]) -> tuple[Any, int]:
    """``node`` without the table rows of erased ids: split tables (``columns`` +
    ``data``, as MLflow's ``log_table`` writes) and lists of records, at any depth."""
    if isinstance(node, dict):
        columns = node.get("columns")
        data = node.get("data")
        if isinstance(columns, list) and isinstance(data, list):
            at = [k for k, c in enumerate(columns) if c in CUSTOMER_COLUMNS]
            keep = [
                not (isinstance(row, list) and any(_hit(row[k], wanted, found) for k in at))
                for row in data
            ]
            if not all(keep):
                out = dict(node)
                out["data"] = [row for row, ok in zip(data, keep, strict=True) if ok]
                if isinstance(node.get("index"), list) and len(node["index"]) == len(data):
                    out["index"] = [i for i, ok in zip(node["index"], keep, strict=True) if ok]
                return out, keep.count(False)
            return node, 0
        total, out = 0, {}
        for key, value in node.items():
            out[key], removed = _erase_in_json(value, wanted, found)
            total += removed
        return (out, total) if total else (node, 0)
    if isinstance(node, list):
        total, items = 0, []
        for item in node:
            if isinstance(item, dict) and any(
                _hit(item.get(c), wanted, found) for c in CUSTOMER_COLUMNS
            ):
                total += 1
                continue
            item, removed = _erase_in_json(item, wanted, found)
            total += removed
            items.append(item)
        return (items, total) if total else (node, 0)
    return node, 0


def _hit(value: Any, wanted: set[str], found: set[str]) -> bool:
    if isinstance(value, str) and value in wanted:
        found.add(value)
        return True
    return False


def _drop_rows(frame: pd.DataFrame, wanted: np.ndarray) -> tuple[pd.DataFrame, set[str], int]:
    """``frame`` without the rows whose customer columns (or index) hold a wanted id."""
    columns = [c for c in frame.columns if c in CUSTOMER_COLUMNS]
    values = frame[columns].astype(str)
    if frame.index.name in CUSTOMER_COLUMNS:
        values[frame.index.name] = frame.index.astype(str)
    if values.columns.empty:
        return frame, set(), 0
    hits = values.isin(wanted)
    gone = hits.any(axis=1).to_numpy()
    found = {str(v) for v in values.to_numpy()[hits.to_numpy()]}
    return frame[~gone], found, int(gone.sum())


_TABLES: dict[str, Callable[[Path, np.ndarray], tuple[set[str], int]]] = {
    ".csv": _erase_csv,
    ".json": _erase_json,
    ".parquet": _erase_parquet,
}
"""Logged table formats, by suffix, and how rows of erased customers leave them."""
