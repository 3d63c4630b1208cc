"""The decision core: every answer of the service, in plain Python (no HTTP).

For each request, in order: **consent gate** (no personalisation consent: the
non-personalised default) → **holdout** (a stable share of customers always gets
the default, so lift can be measured) → **rules** (highest priority wins) →
**business filters and eligibility** (applied to the candidates *before* scoring,
so a logged propensity is the true probability among what could be shown) →
**model** (the registry's champions, within a deadline) with **exploration** (the
selector's policy; without a selector, epsilon around the default) →
**fallbacks** (segment default → popular items / default content). Every answer
names its strategy, the versions behind it and a ``decision_id``, and is appended to
the decision log.

Loaded state (models, snapshot arrays, content, rules) is one immutable
:class:`Bundle`; a reload builds a new bundle and swaps the reference, so a request
in flight finishes on the bundle it started with.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.errors import InputError, NotFoundError, TailorError
from features.online_log import OnlineEventLog
from features.settings import Settings
from features.snapshot import Snapshot, latest_snapshot, load_snapshot
from features.store import EventStore
from models.candidates import interaction_log_from_store, interaction_matrix, recent_history
from models.content_features import content_features
from models.pipeline import RecommenderPipeline
from models.recommender import Recommender
from models.registry import champion_version, load_version, registry_client, tracking_uri
from models.selector import Selector, choose, default_content
from serving.deadline import DeadlineExceeded, DeadlinePool
from serving.decision_log import DecisionLog, DecisionRecord
from serving.events import EventWriter, StoreUnavailable
from serving.online import OnlineStore, Profile
from serving.rules import (
    BUILTIN_NAMES,
    DEFAULT_RULES_FILE,
    Match,
    RuleSet,
    check_content,
    load_rules,
)
from serving.schemas import (
    CandidateScore,
    Choice,
    ChooseRequest,
    CustomerView,
    EventsResponse,
    Filters,
    Recommendation,
    RecommendBatchRequest,
    RecommendBatchResponse,
    RecommendRequest,
    SimilarItemsRequest,
    SimilarItemsResponse,
    Status,
    TriggerView,
)
from serving.triggers import ActiveTrigger, profile_triggers, trigger_events

logger = logging.getLogger(__name__)

RECOMMENDER_NAME = "tailor-recommender"
SELECTOR_PREFIX = "tailor-selector-"
SLOTS = ("subject", "offer")
KEEP_ONLINE_STORES = 3
"""Online stores kept on disk (the newest builds); older ones are removed."""
RETIRE_AFTER_SECONDS = 60.0
"""How long a replaced online store stays open for requests that started on it."""
MEMO_NAMES = frozenset({"segments", "triggers", "known", "slot", "context"})
"""Rules reading only these are matched once per distinct value of them in a batch."""


class BatchTooLarge(InputError):
    """A batch over the configured limit (HTTP 413)."""


class UnknownCandidates(NotFoundError):
    """Content the service does not know: candidate ids, or a slot without active
    content (HTTP 404, naming the field)."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}={value!r}: {reason}")


class NotReady(TailorError):
    """Decisions refused: the configuration did not load (HTTP 503)."""


class ReloadFailed(TailorError):
    """A reload could not load something; what was serving stays (HTTP 503)."""


@dataclass(frozen=True)
class Catalog:
    """Item arrays in the recommender's item order (or the snapshot's without one)."""

    item_ids: np.ndarray
    position: dict[str, int]
    categories: np.ndarray
    in_stock: np.ndarray
    popularity_order: np.ndarray  # item positions, most popular first
    item_list: list[str]  # item_ids as Python strings (indexing numpy strings is slow)


@dataclass(frozen=True)
class SelectorLayout:
    """A selector's design matrix laid out once per load, so one decision costs a few
    array writes and the boosters' predict — not a pandas frame per request.

    Builds the same columns as the selector's :class:`models.selector.CustomerDesign`
    (numbers, attribute categories with the stored levels, country, past responses)
    followed by the content features, in the model's own feature order.
    """

    selector: Selector
    content_ids: dict[str, int]
    content: np.ndarray  # active content × model features (content columns filled)
    customer_columns: tuple[tuple[int, str], ...]  # (position, feature) read from a profile
    country_columns: tuple[tuple[int, str], ...]  # (position, country code)
    category_columns: tuple[tuple[int, str, str], ...] = ()  # (position, feature, level)

    @classmethod
    def build(cls, selector: Selector, content_features: pd.DataFrame) -> SelectorLayout:
        names = list(selector.model.feature_names_ or [])
        # Content columns are the selector's own (a content feature of a variant no
        # longer active is 0 for every active one).
        content = content_features.reindex(columns=list(selector.content.columns), fill_value=0.0)
        levels = {
            f"{column}#{i}": (column, level)
            for column, values in (selector.design.categories if selector.design else ())
            for i, level in enumerate(values)
        }
        matrix = np.zeros((len(content), len(names)))
        customer: list[tuple[int, str]] = []
        country: list[tuple[int, str]] = []
        category: list[tuple[int, str, str]] = []
        for j, name in enumerate(names):
            if name in content.columns:
                matrix[:, j] = content[name].to_numpy(dtype=float)
            elif name in levels:
                category.append((j, *levels[name]))
            elif name.startswith("country_"):
                country.append((j, name.removeprefix("country_")))
            else:
                customer.append((j, name))
        return cls(
            selector,
            {str(c): i for i, c in enumerate(content.index)},
            matrix,
            tuple(customer),
            tuple(country),
            tuple(category),
        )

    def design(self, profile: Profile, candidates: list[str]) -> np.ndarray:
        """The model's design rows of one customer × ``candidates``: (k, n_features)."""
        rows = [self.content_ids[c] for c in candidates]
        design = self.content[rows].copy()
        features = profile.features
        for j, name in self.customer_columns:
            if name.startswith("prior_sends_"):
                value: Any = profile.responses.get(name.removeprefix("prior_sends_"), (0, 0))[0]
            elif name.startswith("prior_clicks_"):
                value = profile.responses.get(name.removeprefix("prior_clicks_"), (0, 0))[1]
            else:
                value = features.get(name)
            design[:, j] = _number(value)
        for j, name, level in self.category_columns:
            value = features.get(name)
            design[:, j] = np.nan if value is None else float(str(value) == level)
        country = features.get("country")
        for j, code in self.country_columns:
            design[:, j] = 1.0 if country == code else 0.0
        return design

    def scores(self, profile: Profile, candidates: list[str]) -> np.ndarray:
        """Predicted reward per ensemble member and candidate: (members, 1, k)."""
        design = self.design(profile, candidates)
        members = [b.predict(design, num_threads=1) for b in self.selector.model.boosters_]
        return np.vstack(members)[:, None, :]


def _number(value: Any) -> float:
    """As ``pandas.to_numeric(errors="coerce")``: numbers and booleans, else NaN."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return float("nan")
    return float("nan")


@dataclass(frozen=True)
class Ranked:
    """The champion's two-stage ranking of every customer with history, computed at
    load: row ``rows[customer]`` of ``ids`` (item positions, -1 padded) and ``scores``."""

    ids: np.ndarray  # customers × RANKED_DEPTH, int32
    scores: np.ndarray  # customers × RANKED_DEPTH, float32
    rows: dict[str, int]

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, customer: str) -> tuple[np.ndarray, np.ndarray] | None:
        row = self.rows.get(customer)
        return None if row is None else (self.ids[row], self.scores[row])


NO_RANKING = Ranked(np.zeros((0, 0), np.int32), np.zeros((0, 0), np.float32), {})


@dataclass
class Bundle:
    """Everything loaded for serving, swapped as a whole on reload."""

    snapshot_id: str | None = None
    as_of: datetime | None = None
    recommender: Recommender | None = None
    recommender_version: str | None = None
    pipeline: RecommenderPipeline | None = None
    ranked: Ranked = NO_RANKING
    selectors: dict[str, Selector] = field(default_factory=dict)
    selector_versions: dict[str, str] = field(default_factory=dict)
    catalog: Catalog | None = None
    history: sp.csr_matrix | None = None  # snapshot users × catalog items
    history_rows: dict[str, int] = field(default_factory=dict)
    content: pd.DataFrame = field(default_factory=pd.DataFrame)
    content_features: pd.DataFrame = field(default_factory=pd.DataFrame)
    layouts: dict[str, SelectorLayout] = field(default_factory=dict)
    rules: RuleSet = field(default_factory=RuleSet)
    rules_error: str | None = None  # no valid rules loaded yet: decisions are refused
    feature_names: set[str] = field(default_factory=set)
    reasons: list[str] = field(default_factory=list)
    loaded_at: datetime | None = None
    registered_at: dict[str, float] = field(default_factory=dict)  # name → epoch seconds
    back_in_stock_hours: float = 0.0  # the longest a snapshot back-in-stock trigger lives
    online: OnlineStore | None = None  # the online store built for this snapshot
    load_errors: list[str] = field(default_factory=list)  # what this load could not load

    def versions(self, slot: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"snapshot": self.snapshot_id}
        if slot is None or slot == "recommend":
            out["recommender"] = self.recommender_version
        if slot is not None and slot != "recommend":
            out["selector"] = self.selector_versions.get(slot)
        return out


class DecisionCore:
    """Loads champions and the snapshot, answers requests, logs decisions.

    Parameters
    ----------
    settings : Settings
        ``home`` holds the event store, snapshots, MLflow and the online stores.
    tracking : str, optional
        MLflow tracking URI (default: the embedded store under ``home``).
    clock : callable, optional
        Seconds since the epoch (tests move time with it).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        tracking: str | None = None,
        clock: Any = time.time,
    ) -> None:
        self.settings = settings
        self.config = settings.serving
        self.clock = clock
        self.tracking = tracking or tracking_uri(settings.home)
        online = settings.online_dir
        self.store_error: str | None = None
        try:
            self.events_log = OnlineEventLog(online / "events.db")
            self.decisions = DecisionLog(online / "decisions.db")
            live = self._online_store(online / "profiles" / "live.db")
        except (OSError, sqlite3.Error) as error:
            # Serve nothing rather than die without a word: readiness says why.
            raise StoreUnavailable(
                f"the online folder {online} cannot be written: {error}; "
                "make it writable (TAILOR_HOME) and restart"
            ) from error
        self.store = EventStore(settings.store_dir)
        self.bundle = Bundle(reasons=["not loaded yet"], online=live)
        self._reload_lock = threading.Lock()
        self._swap_lock = threading.Lock()  # posted events vs the swap of online stores
        self._pool = DeadlinePool(max_workers=4)
        self.writer = EventWriter(
            self.events_log,
            lambda: self.online,
            max_future_skew=settings.max_future_skew,
            swap_lock=self._swap_lock,
            limits=settings.row_limits,
        )
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._stock_seen: tuple[int, float] = (0, 0.0)
        self._stock_lock = threading.Lock()
        self.last_check = 0.0
        self.counters: Counter[str] = Counter()
        self._registered: dict[tuple[str, str], float] = {}

    # ================================================================== loading
    def reload(self, *, force: bool = False) -> Status:
        """Load new champions and the newest snapshot where they changed.

        Anything that fails keeps what was loaded before and is reported in the
        status reasons; nothing here raises to a caller.
        """
        with self._reload_lock:
            old = self.bundle
            reasons: list[str] = []
            errors: list[str] = []
            try:
                snapshot_path, snapshot, online = self._newest_snapshot(old, force)
            except Exception as error:  # keep serving the snapshot that is loaded
                logger.exception("loading the newest snapshot failed")
                errors.append(f"snapshot not loaded, the previous one stays: {error}")
                snapshot_path, snapshot, online = None, None, old.online
            wanted = self._champions(reasons)
            if wanted is None:  # registry unreachable: keep every loaded model
                wanted = {RECOMMENDER_NAME: old.recommender_version} | {
                    SELECTOR_PREFIX + s: v for s, v in old.selector_versions.items()
                }
            new = Bundle(online=online)
            if snapshot is not None:
                new.snapshot_id = snapshot_path.name if snapshot_path else None
                new.as_of = snapshot.as_of
                new.feature_names = set(snapshot.customers.columns)
                new.back_in_stock_hours = _longest_back_in_stock(snapshot)
            else:
                new.snapshot_id, new.as_of = old.snapshot_id, old.as_of
                new.feature_names = old.feature_names
                new.back_in_stock_hours = old.back_in_stock_hours
            # Recommender
            version = wanted.get(RECOMMENDER_NAME)
            if version is not None and version == old.recommender_version and not force:
                new.recommender, new.recommender_version = old.recommender, version
                new.pipeline = old.pipeline
            elif version is not None:
                try:
                    loaded = self._load(RECOMMENDER_NAME, version)
                    new.recommender = _scorer(loaded)
                    new.pipeline = loaded if isinstance(loaded, RecommenderPipeline) else None
                    new.recommender_version = version
                except Exception as error:  # keep serving the old one
                    logger.exception("loading %s/%s failed", RECOMMENDER_NAME, version)
                    errors.append(f"recommender {version} failed to load: {error}")
                    new.recommender = old.recommender
                    new.recommender_version = old.recommender_version
                    new.pipeline = old.pipeline
            if new.recommender is None:
                reasons.append(f"no {RECOMMENDER_NAME} champion: popular items only")
            # Selectors
            for slot in SLOTS:
                name = SELECTOR_PREFIX + slot
                version = wanted.get(name)
                if version is not None and version == old.selector_versions.get(slot):
                    new.selectors[slot] = old.selectors[slot]
                    new.selector_versions[slot] = version
                elif version is not None:
                    try:
                        selector = self._load(name, version)
                        if not isinstance(selector, Selector):
                            raise InputError("model", name, "is not a selector")
                        new.selectors[slot] = selector
                        new.selector_versions[slot] = version
                    except Exception as error:
                        logger.exception("loading %s/%s failed", name, version)
                        errors.append(f"selector {slot} {version} failed to load: {error}")
                        if slot in old.selectors:
                            new.selectors[slot] = old.selectors[slot]
                            new.selector_versions[slot] = old.selector_versions[slot]
                if slot not in new.selectors:
                    reasons.append(f"no {name} champion: default content for {slot}")
            # Snapshot-derived arrays
            if snapshot is not None or new.recommender is not old.recommender:
                source = snapshot if snapshot is not None else self._current_snapshot(old)
                if source is not None:
                    new.catalog, new.history, new.history_rows = _catalog_and_history(
                        source, new.recommender, self.settings
                    )
                    if new.pipeline is not None and new.pipeline.reranker is not None:
                        try:
                            new.ranked = _rank_snapshot_users(new.pipeline, source, self.store)
                        except Exception as error:
                            logger.exception("two-stage ranking at load failed")
                            reasons.append(f"reranker not applied: {error}")
            else:
                new.catalog, new.history, new.history_rows = (
                    old.catalog,
                    old.history,
                    old.history_rows,
                )
                new.ranked = old.ranked
            if new.catalog is None:
                reasons.append("no feature snapshot: no recommendations, default content only")
            try:
                new.content = active_content(self.store)
                new.content_features = (
                    content_features(new.content) if len(new.content) else pd.DataFrame()
                )
            except Exception as error:
                reasons.append(f"content table unreadable: {error}")
                new.content, new.content_features = old.content, old.content_features
            for slot, selector in new.selectors.items():
                try:
                    new.layouts[slot] = SelectorLayout.build(selector, new.content_features)
                except InputError as error:
                    reasons.append(f"selector {slot} cannot score the active content: {error}")
            try:
                rules = load_rules(self.config.rules_file, new.feature_names)
                check_content(rules, content_by_slot(new.content), source=self._rules_source())
                new.rules = rules
            except InputError as error:
                if old.loaded_at is not None and old.rules_error is None:
                    # A bad edit, or content that went away: keep what was serving.
                    errors.append(f"rules not reloaded, the previous rules stay: {error}")
                    new.rules = old.rules
                else:  # nothing valid ever loaded: refuse to decide
                    new.rules_error = str(error)
                    reasons.append(f"rules not loaded, decisions refused: {error}")
            new.reasons = errors + reasons
            new.load_errors = errors
            new.loaded_at = datetime.now(UTC)
            loaded = {RECOMMENDER_NAME: new.recommender_version} | {
                SELECTOR_PREFIX + s: v for s, v in new.selector_versions.items()
            }
            new.registered_at = {
                name: self._registered[(name, version)]
                for name, version in loaded.items()
                if version is not None and (name, version) in self._registered
            }
            if new.online is not old.online and new.online is not None:
                with self._swap_lock:  # no posted event lands in the old store after this
                    self.bundle = new
                    self._catch_up(new.online)
                self._retire(old.online)
            else:
                self.bundle = new
            self.last_check = time.monotonic()
            return self.status()

    def reload_or_raise(self) -> Status:
        """:meth:`reload`, raising :class:`ReloadFailed` when something did not load."""
        status = self.reload()
        if self.bundle.load_errors:
            raise ReloadFailed("; ".join(self.bundle.load_errors))
        return status

    def start_polling(self) -> None:
        """Check the registry and snapshots every ``registry_poll_seconds`` on a
        background thread, idle or not (each worker polls, so one promotion reaches
        every worker), and check the online folder can still be written."""
        if self._poller is not None:
            return

        def poll() -> None:
            while not self._stop.wait(self.config.registry_poll_seconds):
                try:
                    self.reload()
                except Exception:  # the poller must outlive any one failure
                    logger.exception("background reload failed")
                self._probe_writable()

        self._poller = threading.Thread(target=poll, daemon=True, name="tailor-poll")
        self._poller.start()

    def _probe_writable(self) -> None:
        probe = self.settings.online_dir / f".probe-{os.getpid()}"
        try:
            with open(probe, "wb") as handle:
                handle.write(b"ok")
                handle.flush()
                os.fsync(handle.fileno())
            probe.unlink()
            self.store_error = None
        except OSError as error:
            self.store_error = (
                f"the online folder {self.settings.online_dir} cannot be written: {error}"
            )
            logger.error("%s", self.store_error)

    @property
    def online(self) -> OnlineStore:
        """The online store of the bundle being served."""
        store = self.bundle.online
        assert store is not None
        return store

    def _online_store(self, path: Path) -> OnlineStore:
        return OnlineStore(
            path,
            assume_consent_when_unknown=self.settings.features.assume_consent_when_unknown,
            attribution_window=timedelta(hours=self.settings.selectors.attribution_window_hours),
        )

    def _catch_up(self, store: OnlineStore) -> None:
        """Apply the posted events the store was built without (idempotent)."""
        seen = int(store.meta("log_seq") or 0)
        events, through = self.events_log.since(seen)
        if events:
            store.apply_events(events)
        if through != seen:
            store.set_meta("log_seq", str(through))

    def _retire(self, store: OnlineStore | None) -> None:
        """Close a replaced store once requests that started on it are done."""
        if store is None:
            return
        timer = threading.Timer(RETIRE_AFTER_SECONDS, store.close)
        timer.daemon = True
        timer.start()

    def _rules_source(self) -> str:
        return str(self.config.rules_file or DEFAULT_RULES_FILE)

    def _load(self, name: str, version: str) -> Any:
        client = registry_client(self.tracking)
        return load_version(client, name, version)

    def _champions(self, reasons: list[str]) -> dict[str, str | None] | None:
        try:
            client = registry_client(self.tracking)
            out: dict[str, str | None] = {}
            for name in [RECOMMENDER_NAME, *(SELECTOR_PREFIX + s for s in SLOTS)]:
                version = champion_version(client, name)
                out[name] = None if version is None else str(version.version)
                if version is not None and version.creation_timestamp:
                    self._registered[(name, str(version.version))] = (
                        version.creation_timestamp / 1000.0
                    )
            return out
        except Exception as error:
            logger.warning("registry unreachable: %s", error)
            reasons.append(f"registry unreachable, serving what is loaded: {error}")
            return None

    def _newest_snapshot(
        self, old: Bundle, force: bool
    ) -> tuple[Path | None, Snapshot | None, OnlineStore | None]:
        """The newest snapshot when it is new (else ``None``) and its online store,
        built aside: the store being served is never written by a load."""
        try:
            path = latest_snapshot(self.settings.features_dir)
        except NotFoundError:
            return None, None, old.online
        if path.name == old.snapshot_id and not force:
            return path, None, old.online
        snapshot = load_snapshot(path)
        return path, snapshot, self._build_online(path.name, snapshot, force)

    def _build_online(self, snapshot_id: str, snapshot: Snapshot, force: bool) -> OnlineStore:
        """The online store of a snapshot: ``profiles/<snapshot>.<build>.db``, built once
        (under a file lock, so the workers share it) and renamed into place complete."""
        folder = self.settings.online_dir / "profiles"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            built = sorted(folder.glob(f"{snapshot_id}.*.db"))
            if built and not force:
                return self._online_store(built[-1])
            final = folder / f"{snapshot_id}.{time.time_ns():020d}.db"
            building = final.with_suffix(".building")
            for leftover in folder.glob("*.building*"):
                leftover.unlink()
            store = self._online_store(building)
            try:
                pending, through = self.events_log.pending()
                store.load(
                    snapshot,
                    snapshot_id=snapshot_id,
                    store=self.store,
                    pending=pending,
                    recent_days=self.config.recent_event_days,
                )
                store.set_meta("log_seq", str(through))
                store.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                store.close()
            os.replace(building, final)
            _remove_old_stores(folder, keep=KEEP_ONLINE_STORES)
        return self._online_store(final)

    def _current_snapshot(self, old: Bundle) -> Snapshot | None:
        if old.snapshot_id is None:
            return None
        return load_snapshot(self.settings.features_dir / old.snapshot_id)

    def status(self) -> Status:
        bundle = self.bundle
        age = None
        if bundle.as_of is not None:
            age = (datetime.now(UTC) - bundle.as_of).total_seconds() / 3600.0
        stores = [e for e in (self.store_error, self.writer.error) if e is not None]
        reasons = stores + list(bundle.reasons)
        return Status(
            state="degraded" if reasons else "ready",
            reasons=reasons,
            models={
                RECOMMENDER_NAME: bundle.recommender_version,
                **{SELECTOR_PREFIX + s: bundle.selector_versions.get(s) for s in SLOTS},
            },
            snapshot=bundle.snapshot_id,
            snapshot_age_hours=age,
            model_age_hours={
                name: (time.time() - registered) / 3600.0
                for name, registered in bundle.registered_at.items()
            },
            loaded_at=None if bundle.loaded_at is None else bundle.loaded_at.isoformat(),
        )

    def ready(self) -> bool:
        return self.readiness()[0]

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready when something can be served (popular items or default content) under
        rules that loaded, and the stores the service writes can be written; with the
        reasons it is not (or is degraded)."""
        bundle = self.bundle
        problems = [e for e in (self.store_error, self.writer.error) if e is not None]
        if bundle.rules_error is not None:
            problems.append(f"the rules did not load: {bundle.rules_error}")
        if bundle.catalog is None and len(bundle.content) == 0:
            problems.append("nothing to serve: no feature snapshot and no active content")
        if problems:
            return False, problems
        return True, list(bundle.reasons)

    def _decide_with(self) -> Bundle:
        """The bundle to decide with; refused while no valid rules are loaded."""
        bundle = self.bundle
        if bundle.rules_error is not None:
            raise NotReady(f"the rules did not load: {bundle.rules_error}")
        return bundle

    # ================================================================== recommend
    def recommend(self, request: RecommendRequest) -> Recommendation:
        batch = RecommendBatchRequest(
            customer_ids=[request.customer_id],
            n=request.n,
            filters=request.filters,
            context=request.context,
        )
        decision_ids = [request.decision_id or _new_id()]
        deadline = self.config.deadline_ms / 1000.0
        return Recommendation(**self._recommend(batch, decision_ids, "recommend", deadline)[0])

    def recommend_batch(self, request: RecommendBatchRequest) -> RecommendBatchResponse:
        if len(request.customer_ids) > self.config.batch_limit:
            raise BatchTooLarge(
                "customer_ids",
                len(request.customer_ids),
                f"at most {self.config.batch_limit} recipients per call (batch_limit)",
            )
        ids = _new_ids(len(request.customer_ids))
        deadline = self.config.batch_deadline_ms / 1000.0
        results = self._recommend(request, ids, "recommend_batch", deadline)
        return RecommendBatchResponse.model_validate(  # one validation for the whole batch
            {"results": results, "strategies": Counter(r["strategy"] for r in results)}
        )

    def _recommend(
        self,
        request: RecommendBatchRequest,
        decision_ids: list[str],
        endpoint: str,
        deadline: float,
    ) -> list[dict[str, Any]]:
        """Recommendation fields per recipient (dicts: the caller validates them once)."""
        started = time.monotonic()
        bundle = self._decide_with()
        n = request.n or self.config.default_n
        now = self.clock()
        asked = request.customer_ids
        canonical = self.online.resolve(asked)
        people = [canonical[c] for c in asked]
        as_of = bundle.as_of.timestamp() if bundle.as_of is not None else 0.0
        needed = bundle.rules.names("recommend")
        profiles = self.online.profiles(
            sorted(set(people)),
            recent=trigger_events(
                now, as_of, self.settings.features.triggers, bundle.back_in_stock_hours
            ),
            responses=False,
            features=bool(needed - BUILTIN_NAMES),
        )
        purchased = (
            self.online.purchased(sorted(set(people))) if request.filters.exclude_purchased else {}
        )
        allowed = self._allowed(bundle, request.filters)
        plans: list[tuple[str, str | None, str | None]] = []  # (strategy, rule, reason)
        # Rules over segments and trigger names alone are matched once per distinct
        # combination: a campaign batch has few of them.
        memo: dict[tuple[Any, ...], Match | None] | None = {} if needed <= MEMO_NAMES else None
        model_rows: list[int] = []
        trigger_items: dict[int, list[str]] = {}
        holdout = self.config.holdout_share > 0
        for i, person in enumerate(people):
            profile = profiles[person]
            if holdout and self._in_holdout(person):
                plans.append(("holdout", None, None))
                continue
            if not profile.known and not profile.personalised:
                plans.append(("fallback:cold_start", None, "customer not in the snapshot"))
                continue
            if not profile.personalised:
                plans.append(("consent", None, "no personalisation consent"))
                continue
            triggers = self._triggers(profile, now) if needed else []
            match = None
            if needed:
                key = (
                    tuple(profile.segments),
                    tuple(sorted({t.trigger for t in triggers})),
                    profile.known,
                )
                if memo is not None and key in memo:
                    match = memo[key]
                else:
                    variables = _variables(
                        profile, triggers, "recommend", request.context, now, needed
                    )
                    match = bundle.rules.match("recommend", variables)
                    if memo is not None:
                        memo[key] = match
            if match is not None and match.strategy == "popular":
                plans.append((f"rule:{match.rule.name}", match.rule.name, None))
                continue
            if match is not None and match.strategy == "trigger_items":
                trigger_items[i] = [t.item_id for t in triggers if t.item_id is not None]
                plans.append((f"rule:{match.rule.name}", match.rule.name, None))
                model_rows.append(i)
                continue
            default = bundle.rules.segment_default("recommend", profile.segments)
            if default is not None and default[1] == "popular" and match is None:
                plans.append((f"fallback:segment:{default[0]}", None, "segment default"))
                continue
            plans.append(("model", match.rule.name if match else None, None))
            model_rows.append(i)

        scored: dict[int, tuple[list[int], list[float]]] = {}
        model_error: str | None = None
        exclude_items = set(request.filters.exclude_items)
        if bundle.ranked and bundle.as_of is not None:
            # The two-stage ranking computed at load, unless events posted since
            # moved the customer: then the collaborative stage re-solves from them.
            still, cached_rows, ranked_rows = [], [], []
            for row in model_rows:
                at = bundle.ranked.rows.get(people[row])
                if at is not None and not any(
                    ts >= as_of for ts, _, _ in profiles[people[row]].recent
                ):
                    cached_rows.append(row)
                    ranked_rows.append(at)
                else:
                    still.append(row)
            model_rows = still
            if cached_rows:
                # This request's filters over the cached rankings, for all rows at once:
                # each row keeps its first allowed items, enough to survive its
                # exclusions and the trigger items placed before them.
                slack = [
                    len(purchased.get(people[row], ()))
                    + len(exclude_items)
                    + len(trigger_items.get(row, ()))
                    for row in cached_rows
                ]
                scored.update(
                    _filter_ranked(bundle.ranked, ranked_rows, allowed, n, slack, cached_rows)
                )
        no_history: set[int] = set()
        if model_rows and bundle.catalog is not None:
            # Without product history the model has nothing personal to say: its
            # scores would be the same for everyone (e.g. customers with e-mails only).
            weights = self.settings.features.interaction_weights
            columns = bundle.catalog.position
            usable = [
                row
                for row in model_rows
                if people[row] in bundle.history_rows
                or any(
                    ts >= as_of and item in columns and weights.get(kind, 0.0) > 0
                    for ts, kind, item in profiles[people[row]].recent
                )
            ]
            no_history = set(model_rows).difference(usable)
            model_rows = usable
        if model_rows and bundle.recommender is not None and bundle.catalog is not None:
            remaining = max(deadline - (time.monotonic() - started), 0.001)
            try:
                ids, scores = self._pool.run(
                    remaining,
                    self._score,
                    bundle,
                    [people[i] for i in model_rows],
                    [profiles[people[i]] for i in model_rows],
                    purchased,
                    allowed,
                    n,
                    request.filters.exclude_items,
                    now,
                )
                scored.update(
                    {row: (ids[k].tolist(), scores[k].tolist()) for k, row in enumerate(model_rows)}
                )
            except DeadlineExceeded as error:
                logger.info("%s past its deadline: %s", endpoint, error)
                model_error = "deadline"
            except Exception as error:  # a model bug must not fail the request
                logger.exception("recommender failed")
                model_error = f"model error: {type(error).__name__}"
        elif model_rows:
            model_error = "no recommender loaded"

        results: list[dict[str, Any]] = []
        records: list[DecisionRecord] = []
        popular: list[str] | None = None
        versions = bundle.versions("recommend")
        names = bundle.catalog.item_list if bundle.catalog is not None else []
        for i, (person, (strategy, _rule, reason)) in enumerate(zip(people, plans, strict=True)):
            chosen: list[str] = []
            chosen_scores: list[float | None] = []
            bought = purchased.get(person)
            exclude = exclude_items.union(bought) if bought else exclude_items
            if i in trigger_items:
                for item, _ in self._trigger_first(bundle, trigger_items[i], allowed, exclude, n):
                    chosen.append(item)
                    chosen_scores.append(None)
            if i in scored:
                have = set(chosen)
                for position, score in zip(*scored[i], strict=True):
                    if position < 0 or len(chosen) >= n:
                        break
                    item = names[position]
                    if item not in have and item not in exclude:
                        chosen.append(item)
                        chosen_scores.append(score)
                        have.add(item)
            elif strategy == "model" or i in trigger_items:
                if i in no_history:
                    reason = "no product history to personalise from"
                else:
                    reason = model_error or "no model"
                if strategy == "model":
                    strategy = "fallback:popular"
            if len(chosen) < n:
                if bundle.catalog is None:
                    if not chosen:
                        reason = reason or "no feature snapshot loaded"
                else:
                    if popular is None:  # once per batch
                        popular = _popular(bundle.catalog, allowed)
                    extra = _top_up(popular, chosen, exclude, n)
                    chosen += extra
                    chosen_scores += [None] * len(extra)
            results.append(
                {
                    "customer_id": asked[i],
                    "decision_id": decision_ids[i],
                    "items": chosen,
                    "scores": chosen_scores,
                    "strategy": strategy,
                    "model_version": bundle.recommender_version if i in scored else None,
                    "snapshot": bundle.snapshot_id,
                    "fallback_reason": reason if strategy.startswith("fallback") else None,
                    "sendable": profiles[person].sendable,
                    "reason": None
                    if len(chosen) >= n
                    else (reason or self._short_reason(bundle, request.filters, allowed)),
                }
            )
            records.append(
                DecisionRecord(
                    decision_ids[i],
                    endpoint,
                    person,
                    "recommend",
                    strategy,
                    chosen,
                    1.0,
                    chosen_scores,
                    versions,
                    request.context,
                )
            )
        self.counters.update(r["strategy"].split(":")[0] for r in results)
        self.decisions.append(records)
        return results

    def _score(
        self,
        bundle: Bundle,
        people: list[str],
        profiles: list[Profile],
        purchased: dict[str, list[str]],
        allowed: np.ndarray,
        n: int,
        exclude_items: list[str],
        now: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top n per person from the recommender, history = snapshot row + live events."""
        model, catalog = bundle.recommender, bundle.catalog
        assert model is not None and catalog is not None and bundle.history is not None
        n_items = len(catalog.item_ids)
        weights = self.settings.features.interaction_weights
        as_of = bundle.as_of.timestamp() if bundle.as_of else 0.0
        rows, cols, vals = [], [], []
        exclude_rows, exclude_cols = [], []
        users = np.full(len(people), -1, dtype=np.int64)
        known_rows = model.user_rows(people) if model.user_ids_ is not None else users
        blocked = {catalog.position[i] for i in exclude_items if i in catalog.position}
        for k, (person, profile) in enumerate(zip(people, profiles, strict=True)):
            live = False
            for ts, kind, item in profile.recent:
                if ts >= as_of and item is not None and item in catalog.position:
                    weight = weights.get(kind, 0.0)
                    if weight > 0:
                        rows.append(k)
                        cols.append(catalog.position[item])
                        vals.append(weight)
                        live = True
            # Known users keep their trained factors unless live events moved them.
            users[k] = -1 if live else known_rows[k]
            for item in purchased.get(person, []):
                if item in catalog.position:
                    exclude_rows.append(k)
                    exclude_cols.append(catalog.position[item])
            for position in blocked:
                exclude_rows.append(k)
                exclude_cols.append(position)
        live_matrix = sp.csr_matrix(
            (np.asarray(vals, np.float32), (rows, cols)), shape=(len(people), n_items)
        )
        snapshot_rows = np.array([bundle.history_rows.get(p, -1) for p in people])
        base = bundle.history[np.maximum(snapshot_rows, 0)]
        base = sp.diags((snapshot_rows >= 0).astype(np.float32)) @ base
        history = (base + live_matrix).tocsr()
        exclude = sp.csr_matrix(
            (np.ones(len(exclude_rows), np.float32), (exclude_rows, exclude_cols)),
            shape=(len(people), n_items),
        )
        exclude.data[:] = 1.0
        return model.recommend(users, history, n=n, exclude=exclude, allowed=allowed, num_threads=1)

    def _trigger_first(
        self, bundle: Bundle, items: list[str], allowed: np.ndarray, exclude: set[str], n: int
    ) -> list[tuple[str, float | None]]:
        out: list[tuple[str, float | None]] = []
        catalog = bundle.catalog
        for item in items:
            if item in exclude or any(x[0] == item for x in out):
                continue
            if catalog is not None and item in catalog.position:
                if not allowed[catalog.position[item]]:
                    continue
            out.append((item, None))
            if len(out) >= n:
                break
        return out

    def _allowed(self, bundle: Bundle, filters: Filters) -> np.ndarray:
        catalog = bundle.catalog
        if catalog is None:
            return np.zeros(0, dtype=bool)
        mask = np.ones(len(catalog.item_ids), dtype=bool)
        if filters.in_stock_only:
            mask &= self._in_stock(catalog)
        if filters.categories is not None:
            mask &= np.isin(catalog.categories, filters.categories)
        return mask

    def _short_reason(self, bundle: Bundle, filters: Filters, allowed: np.ndarray) -> str:
        """Why an answer has fewer items than asked."""
        if bundle.catalog is None:
            return "no feature snapshot loaded: no catalog to recommend from"
        if filters.categories is not None:
            known = set(bundle.catalog.categories.tolist())
            unknown = sorted(set(filters.categories) - known)
            if unknown:
                return f"unknown categories {unknown[:10]}: no item of the catalog has them"
        if not allowed.any():
            return "no item passes the filters (categories, in stock)"
        return "fewer items pass the filters and exclusions than asked"

    def _in_stock(self, catalog: Catalog) -> np.ndarray:
        """The snapshot's stock, updated by stock_change events posted since."""
        version = self.online.stock_version()
        if version == (0, 0.0):
            return catalog.in_stock
        with self._stock_lock:
            if version != self._stock_seen or not hasattr(self, "_stock_mask"):
                mask = catalog.in_stock.copy()
                for item, flag in self.online.stock_changes().items():
                    if item in catalog.position:
                        mask[catalog.position[item]] = flag
                self._stock_mask = mask
                self._stock_seen = version
            return self._stock_mask

    # ================================================================== similar items
    def similar_items(self, request: SimilarItemsRequest) -> SimilarItemsResponse:
        bundle = self.bundle
        n = request.n or self.config.default_n
        catalog = bundle.catalog
        if catalog is None or request.item_id not in catalog.position:
            raise NotFoundError(f"item_id {request.item_id!r} is not in the catalog")
        allowed = self._allowed(bundle, request.filters)
        exclude = set(request.filters.exclude_items) | {request.item_id}
        model = bundle.recommender
        items: list[tuple[str, float | None]] = []
        strategy = "fallback:category_popular"
        if model is not None:
            position = catalog.position[request.item_id]
            ids, scores = model.similar_items(np.array([position]), n=n + len(exclude) + 50)
            for idx, score in zip(ids[0], scores[0], strict=True):
                if idx < 0 or len(items) >= n:
                    continue
                item = str(catalog.item_ids[idx])
                if allowed[idx] and item not in exclude:
                    items.append((item, float(score)))
            strategy = "model"
        if len(items) < n:
            same = allowed & (
                catalog.categories == catalog.categories[catalog.position[request.item_id]]
            )
            have = [x[0] for x in items]
            items += [(item, None) for item in _top_up(_popular(catalog, same), have, exclude, n)]
        return SimilarItemsResponse(
            item_id=request.item_id,
            items=[x[0] for x in items],
            scores=[x[1] for x in items],
            strategy=strategy,
            model_version=bundle.recommender_version if strategy == "model" else None,
        )

    # ================================================================== choose
    def choose(self, request: ChooseRequest) -> Choice:
        started = time.monotonic()
        bundle = self._decide_with()
        slot = request.slot
        content = bundle.content
        slot_content = content[content["slot"] == slot] if len(content) else content
        active = [str(c) for c in slot_content["content_id"]] if len(slot_content) else []
        if request.candidates is None:
            candidates = active
            if not candidates:
                raise UnknownCandidates("slot", slot, "has no active content; pass candidates")
        else:
            candidates = list(dict.fromkeys(request.candidates))
            unknown = [c for c in candidates if c not in set(active)]
            if unknown:
                raise UnknownCandidates(
                    "candidates", unknown, f"not active content of slot {slot!r}"
                )
            if not candidates:
                raise InputError("candidates", [], "give at least one candidate")
        decision_id = request.decision_id or _new_id()
        person = self.online.resolve([request.customer_id])[request.customer_id]
        profile = self.online.profiles([person])[person]
        now = self.clock()
        default, default_note = _slot_default(bundle.rules.defaults.get(slot), slot, candidates)
        k = len(candidates)
        probabilities = np.zeros(k)
        scores: np.ndarray | None = None
        reason: str | None = None
        model_version: str | None = None
        if self._in_holdout(person):
            strategy = "holdout"
        elif not profile.personalised:
            strategy = "consent" if profile.known else "fallback:cold_start"
            reason = None if profile.known else "customer not in the snapshot"
        else:
            needed = bundle.rules.names(slot)
            triggers = self._triggers(profile, now)
            variables = _variables(profile, triggers, slot, request.context, now, needed)
            match = bundle.rules.match(slot, variables, candidates=candidates)
            if match is not None and match.content_id is not None:
                default = match.content_id
                strategy = f"rule:{match.rule.name}"
            else:
                strategy, scores, probabilities, reason = self._model_choice(
                    bundle, slot, profile, candidates, decision_id, started
                )
                if strategy == "model":
                    model_version = bundle.selector_versions.get(slot)
                else:
                    segment = bundle.rules.segment_default(slot, profile.segments)
                    if segment is not None and segment[1] in candidates:
                        default = segment[1]
                        strategy = f"fallback:segment:{segment[0]}"
                        default_note = None
        if strategy == "model" or strategy.startswith("rule:"):
            default_note = None
        if default_note is not None:  # the slot default answered, chosen by sort order
            reason = default_note if reason is None else f"{reason}; {default_note}"
        if strategy != "model":
            probabilities = np.zeros(k)
            probabilities[candidates.index(default)] = 1.0
            if strategy.startswith("fallback") and self.config.fallback_epsilon > 0 and k > 1:
                # Explore around the default so the log can train a first selector.
                eps = self.config.fallback_epsilon
                probabilities = (1 - eps) * probabilities + eps / k
        chosen = int(choose(probabilities[None, :], [decision_id])[0])
        result = Choice(
            customer_id=request.customer_id,
            slot=slot,
            decision_id=decision_id,
            content_id=candidates[chosen],
            propensity=float(probabilities[chosen]),
            candidates=[
                CandidateScore(
                    content_id=c,
                    score=None if scores is None else float(scores[j]),
                    probability=float(probabilities[j]),
                )
                for j, c in enumerate(candidates)
            ],
            strategy=strategy,
            model_version=model_version,
            snapshot=bundle.snapshot_id,
            fallback_reason=(
                reason if strategy.startswith("fallback") or default_note is not None else None
            ),
            sendable=profile.sendable,
        )
        self.counters[strategy.split(":")[0]] += 1
        self.decisions.append(
            [
                DecisionRecord(
                    decision_id=decision_id,
                    endpoint="choose",
                    customer_id=person,
                    slot=slot,
                    strategy=strategy,
                    chosen=result.content_id,
                    propensity=result.propensity,
                    candidates=[[c.content_id, c.score, c.probability] for c in result.candidates],
                    versions=bundle.versions(slot),
                    context=request.context,
                )
            ]
        )
        return result

    def _model_choice(
        self,
        bundle: Bundle,
        slot: str,
        profile: Profile,
        candidates: list[str],
        decision_id: str,
        started: float,
    ) -> tuple[str, np.ndarray | None, np.ndarray, str | None]:
        selector = bundle.selectors.get(slot)
        k = len(candidates)
        if selector is None:
            return "fallback:default", None, np.zeros(k), "no selector loaded"
        layout = bundle.layouts.get(slot)
        if layout is None:
            return "fallback:default", None, np.zeros(k), "selector has no content layout"
        try:
            remaining = self.config.deadline_ms / 1000.0 - (time.monotonic() - started)
            members = self._pool.run(max(remaining, 0.001), layout.scores, profile, candidates)
        except DeadlineExceeded as error:
            logger.info("choose past its deadline: %s", error)
            return "fallback:default", None, np.zeros(k), "deadline"
        except Exception as error:
            logger.exception("selector %s failed", slot)
            return "fallback:default", None, np.zeros(k), f"model error: {type(error).__name__}"
        probabilities = selector.policy.probabilities(members, candidates)[0]
        return "model", members.mean(axis=0)[0], probabilities, None

    # ================================================================== events
    def ingest_events(self, records: list[dict[str, Any]]) -> EventsResponse:
        """Store posted events durably (group commit, :mod:`serving.events`) and apply
        them to the online store. Each row stands alone: bad ones come back rejected
        with their reasons (and are quarantined), even when every row is bad."""
        if len(records) > self.config.max_events_per_call:
            raise BatchTooLarge(
                "events",
                len(records),
                f"at most {self.config.max_events_per_call} events per call",
            )
        return self.writer.post(records)

    # ================================================================== customers
    def customer(self, customer_id: str) -> CustomerView:
        person = self.online.resolve([customer_id])[customer_id]
        profile = self.online.profiles([person])[person]
        if not profile.known and not profile.recent:
            raise NotFoundError(f"customer {customer_id!r} is not known")
        now = self.clock()
        triggers = self._triggers(profile, now) if profile.personalised else []
        return CustomerView(
            customer_id=customer_id,
            canonical_id=person,
            known=profile.known,
            personalised=profile.personalised,
            sendable=profile.sendable,
            features=_live_features(profile, now) if profile.personalised else {},
            segments=profile.segments,
            triggers=[
                TriggerView(
                    trigger=t.trigger,
                    item_id=t.item_id,
                    fired_at=_iso(t.fired_at),
                    expires_at=_iso(t.expires_at),
                )
                for t in triggers
            ],
            holdout=self._in_holdout(person),
        )

    # ================================================================== helpers
    def _triggers(self, profile: Profile, now: float) -> list[ActiveTrigger]:
        return profile_triggers(profile, now, self.settings.features.triggers)

    def _in_holdout(self, person: str) -> bool:
        share = self.config.holdout_share
        if share <= 0:
            return False
        digest = hashlib.sha256(f"holdout:{person}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < share

    def close(self) -> None:
        self._stop.set()
        self.writer.close()
        self._pool.shutdown()
        self.events_log.close()


# ====================================================================== module helpers
def _new_id() -> str:
    return _new_ids(1)[0]


def _new_ids(count: int) -> list[str]:
    """Decision ids: 16 hex digits of time (ns), then 16 random ones — unique across
    workers, and in time order, so the decision log's id index grows at one end."""
    stamp = f"{time.time_ns():016x}"
    noise = os.urandom(8 * count).hex()
    return [stamp + noise[16 * k : 16 * k + 16] for k in range(count)]


def _remove_old_stores(folder: Path, *, keep: int) -> None:
    """Remove all but the newest ``keep`` online store builds (and their WAL files)."""
    builds = sorted(
        (p for p in folder.glob("*.db") if p.name != "live.db"), key=lambda p: p.stat().st_mtime
    )
    for old in builds[:-keep]:
        for path in (old, old.with_name(old.name + "-wal"), old.with_name(old.name + "-shm")):
            path.unlink(missing_ok=True)


def _filter_ranked(
    ranked: Ranked,
    at: list[int],
    allowed: np.ndarray,
    n: int,
    slack: list[int],
    keys: list[int],
) -> dict[int, tuple[list[int], list[float]]]:
    """Rows ``at`` of the cached ranking with disallowed items dropped, each cut to
    ``n`` plus its ``slack`` items; keyed by ``keys``."""
    ids = ranked.ids[at]
    scores = ranked.scores[at]
    ok = ids >= 0
    ok[ok] = allowed[ids[ok]]
    limit = n + np.asarray(slack)[:, None]
    keep = ok & (np.cumsum(ok, axis=1) <= limit)
    ends = np.cumsum(keep.sum(axis=1)).tolist()
    flat_ids = ids[keep].tolist()
    flat_scores = scores[keep].tolist()
    out: dict[int, tuple[list[int], list[float]]] = {}
    start = 0
    for key, end in zip(keys, ends, strict=True):
        out[key] = (flat_ids[start:end], flat_scores[start:end])
        start = end
    return out


def _longest_back_in_stock(snapshot: Snapshot) -> float:
    """Hours the longest-lived back-in-stock trigger of the snapshot lives (it may
    have been built under another time to live than the one configured now)."""
    triggers = snapshot.triggers
    rows = triggers[triggers["trigger"] == "back_in_stock"]
    if rows.empty:
        return 0.0
    lives = pd.to_datetime(rows["expires_at"]) - pd.to_datetime(rows["fired_at"])
    return float(lives.max().total_seconds()) / 3600.0


def _top_up(popular: list[str], have: list[str], exclude: set[str], n: int) -> list[str]:
    """Items of ``popular`` (in order) to add to ``have`` to reach ``n``, skipping
    those excluded or already there."""
    taken = set(have)
    out: list[str] = []
    for item in popular:
        if len(have) + len(out) >= n:
            break
        if item not in exclude and item not in taken:
            out.append(item)
            taken.add(item)
    return out


def _popular(catalog: Catalog, allowed: np.ndarray) -> list[str]:
    """Allowed items, most popular first."""
    order = catalog.popularity_order
    return [catalog.item_list[p] for p in order[allowed[order]].tolist()]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _scorer(model: Any) -> Recommender:
    """The recommender that scores at request time: a plain recommender, or the
    pipeline's collaborative-filtering generator (ALS first)."""
    if isinstance(model, Recommender):
        return model
    if isinstance(model, RecommenderPipeline):
        for name in ("als", "bpr", "item_knn"):
            if name in model.generators:
                return model.generators[name]
        return next(iter(model.generators.values()))
    raise InputError("model", type(model).__name__, "is not a recommender")


def _catalog_and_history(
    snapshot: Snapshot, model: Recommender | None, settings: Settings
) -> tuple[Catalog, sp.csr_matrix, dict[str, int]]:
    """Item arrays in the model's item order and the snapshot's interactions in it."""
    items = snapshot.items.drop_duplicates("item_id").set_index("item_id")
    if model is not None and model.item_ids_ is not None:
        item_ids = np.asarray(model.item_ids_).astype(str)
    else:
        item_ids = snapshot.item_ids.astype(str)
    position = {item: i for i, item in enumerate(item_ids)}
    aligned = items.reindex(item_ids)
    categories = aligned["category"].astype(object).where(aligned["category"].notna(), "")
    in_stock = aligned["in_stock"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    popularity = aligned.get("purchases_30d", pd.Series(0, index=aligned.index)).fillna(0)
    views = aligned.get("views_30d", pd.Series(0, index=aligned.index)).fillna(0)
    order = np.lexsort((-views.to_numpy(dtype=float), -popularity.to_numpy(dtype=float)))
    catalog = Catalog(
        item_ids=item_ids,
        position=position,
        categories=categories.to_numpy(dtype=str),
        in_stock=in_stock,
        popularity_order=order,
        item_list=[str(i) for i in item_ids],
    )
    # Snapshot interactions re-indexed to the model's columns (unknown items dropped).
    matrix = snapshot.interactions.tocoo()
    column = np.array([position.get(i, -1) for i in snapshot.item_ids.astype(str)])
    mapped = column[matrix.col]
    keep = mapped >= 0
    history = sp.csr_matrix(
        (matrix.data[keep].astype(np.float32), (matrix.row[keep], mapped[keep])),
        shape=(len(snapshot.user_ids), len(item_ids)),
    )
    rows = {str(u): i for i, u in enumerate(snapshot.user_ids)}
    return catalog, history, rows


RANKED_DEPTH = 100
"""Items kept per customer from the two-stage ranking computed at load."""


def _rank_snapshot_users(
    pipeline: RecommenderPipeline, snapshot: Snapshot, store: EventStore, *, chunk: int = 2000
) -> Ranked:
    """The pipeline's two-stage ranking of every customer it knows with history, as of
    the snapshot — the reranker's pair features need the whole log, so they are
    computed once per load, not per request."""
    log, _ = interaction_log_from_store(store, snapshot)
    index = pipeline.index
    generator = next(iter(pipeline.generators.values()))
    if generator.item_ids_ is None or not np.array_equal(
        np.asarray(generator.item_ids_).astype(str), index.item_ids.astype(str)
    ):
        raise InputError("pipeline", "index", "generators and index disagree on items")
    as_of = pd.Timestamp(snapshot.as_of)
    half_life = float(pipeline.settings.get("half_life_days", 14.0))
    history = interaction_matrix(
        log, index, as_of=as_of, half_life_days=half_life, decay=pipeline.decay
    )
    recent = recent_history(log, index, as_of=as_of)
    users = np.flatnonzero(np.diff(history.indptr) > 0)
    ids = np.full((len(users), RANKED_DEPTH), -1, dtype=np.int32)
    scores = np.zeros((len(users), RANKED_DEPTH), dtype=np.float32)
    for start in range(0, len(users), chunk):
        block = users[start : start + chunk]
        got, got_scores = pipeline.rank(block, history, recent, log, as_of=as_of, n=RANKED_DEPTH)
        width = min(got.shape[1], RANKED_DEPTH)
        ids[start : start + len(block), :width] = got[:, :width]
        scores[start : start + len(block), :width] = got_scores[:, :width]
    rows = {str(index.user_ids[u]): k for k, u in enumerate(users)}
    logger.info("two-stage ranking of %d customers at load", len(rows))
    return Ranked(ids=ids, scores=scores, rows=rows)


def _slot_default(
    configured: str | None, slot: str, candidates: list[str]
) -> tuple[str, str | None]:
    """The default content of ``slot`` among ``candidates``, and, when it is not the
    configured one, a note saying how it was chosen: the candidate id first in sort
    order (the same answer whatever order the content or the request lists them in)."""
    chosen = default_content({} if configured is None else {slot: configured}, slot, candidates)
    if chosen == configured:
        return chosen, None
    why = (
        f"no default content for slot {slot!r}"
        if configured is None
        else f"default {configured!r} of slot {slot!r} is not a candidate"
    )
    return chosen, f"{why}: {chosen!r}, the first candidate id in sort order"


def content_by_slot(content: pd.DataFrame) -> dict[str, list[str]]:
    """Active content ids of each slot."""
    if content.empty:
        return {}
    return {
        str(slot): [str(c) for c in group["content_id"]]
        for slot, group in content.groupby("slot", sort=True)
    }


def active_content(store: EventStore) -> pd.DataFrame:
    content = store.read("content")
    if content.empty:
        return content
    active = content["active"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    content = content[active].reset_index(drop=True)
    return content[["content_id", "slot", "text", "attributes"]].astype(
        {"content_id": str, "slot": str}
    )


def _variables(
    profile: Profile,
    triggers: list[ActiveTrigger],
    slot: str,
    context: dict[str, Any],
    now: float,
    names: frozenset[str] | None = None,
) -> dict[str, Any]:
    """What a rule's expression sees (features only when ``names`` asks for some)."""
    needs_features = names is None or bool(names - BUILTIN_NAMES)
    variables = _live_features(profile, now) if needs_features else {}
    variables.update(
        segments=list(profile.segments),
        triggers=sorted({t.trigger for t in triggers}),
        trigger_items=[t.item_id for t in triggers if t.item_id is not None],
        known=profile.known,
        slot=slot,
        context=dict(context),
    )
    return variables


def _live_features(profile: Profile, now: float) -> dict[str, Any]:
    """The snapshot's features with recency brought up to ``now`` from live events."""
    features = dict(profile.features)
    last_event = _later(features.get("last_event_ts"), profile.last_event_ts)
    last_purchase = _later(features.get("last_purchase_ts"), profile.last_purchase_ts)
    if last_event is not None:
        features["last_event_ts"] = _iso(last_event)
        features["days_since_last_event"] = (now - last_event) / 86400.0
    if last_purchase is not None:
        features["last_purchase_ts"] = _iso(last_purchase)
        features["recency_days"] = (now - last_purchase) / 86400.0
    return features


def _later(snapshot_value: Any, live_value: float | None) -> float | None:
    values = [live_value] if live_value is not None else []
    if snapshot_value is not None:
        values.append(pd.Timestamp(snapshot_value).timestamp())
    return max(values) if values else None
