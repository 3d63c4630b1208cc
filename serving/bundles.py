"""How the service's bundle is loaded and replaced.

:class:`BundleLoader` owns the bundle being served (one immutable
:class:`~serving.bundle_data.Bundle`: champion models, snapshot arrays, active
content, the selectors' layouts, rules, the snapshot's online store): a reload builds
a new bundle beside it (the registry's champions, the newest snapshot and its online
store, the content and the rules) and swaps the reference, so a request in flight
finishes on the bundle it started with. Anything that fails to load keeps what was
loaded before and says so in the bundle's reasons.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from features.data.online_log import OnlineEventLog
from features.data.store import EventStore
from features.errors import InputError, NotFoundError
from features.privacy.ledger import PrivacyLedger
from features.snapshot import Snapshot, latest_snapshot, load_snapshot
from models.content_features import content_features
from models.pipeline import RecommenderPipeline
from models.registry import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    load_version,
    registry_client,
)
from models.selector import Selector
from serving.bundle_data import (
    Bundle,
    _catalog_and_history,
    _longest_back_in_stock,
    _rank_snapshot_users,
    _scorer,
    active_content,
    bundle_user_ids,
    content_by_slot,
    erase_from_bundle,
    erased_parts,
)
from serving.choices import SelectorLayout
from serving.errors import NotReady
from serving.online import OnlineStore, SendRules
from serving.rules import DEFAULT_RULES_FILE, check_content, load_rules
from serving.settings import ServiceSettings

# The decision core's logger, as before the core was split: one name to filter on.
logger = logging.getLogger("serving.core")

RECOMMENDER_NAME = "tailor-recommender"
SELECTOR_PREFIX = "tailor-selector-"
SLOTS = ("subject", "offer")
KEEP_ONLINE_STORES = 3
"""Online stores kept on disk (the newest builds); older ones are removed."""
RETIRE_AFTER_SECONDS = 60.0
"""How long a replaced online store stays open for requests that started on it."""


class BundleLoader:
    """Owns the bundle being served: loads a new one and swaps it in atomically.

    Parameters
    ----------
    settings : ServiceSettings
        ``home`` holds the event store, snapshots and the online stores.
    tracking : str
        MLflow tracking URI of the registry the champions come from.
    events_log : OnlineEventLog
        The posted events a newly built online store catches up on.
    live : OnlineStore
        The online store served until a snapshot is loaded.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        tracking: str,
        events_log: OnlineEventLog,
        live: OnlineStore,
        ledger: PrivacyLedger | None = None,
    ) -> None:
        self.settings = settings
        # The privacy ledger: whom to drop from what is served (see sync_erasures).
        self.ledger = ledger
        self._erasures_seen = -1
        self._erasures_bundle: Bundle | None = None
        self.config = settings.serving
        self.tracking = tracking
        self.events_log = events_log
        self.store = EventStore(settings.store_dir)
        self.bundle = Bundle(reasons=["not loaded yet"], online=live)
        self.swap_lock = threading.Lock()  # posted events vs the swap of online stores
        self.store_error: str | None = None  # the online folder cannot be written
        self.last_check = 0.0
        self._reload_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._registered: dict[tuple[str, str], float] = {}
        # Ids erased while this process runs: every reload drops them again, so a
        # model or snapshot read before its files were rewritten cannot bring them back.
        self._erased: set[str] = set()

    @property
    def online(self) -> OnlineStore:
        """The online store of the bundle being served."""
        store = self.bundle.online
        assert store is not None
        return store

    def decide_with(self, ids: Sequence[str] = ()) -> Bundle:
        """The bundle to decide with for customers ``ids``; refused while no valid
        rules are loaded.

        Between an erasure made elsewhere (another worker, ``tailor erase``) and this
        worker's next catch-up (:meth:`sync_erasures`, on the poll thread), any of
        ``ids`` the privacy ledger lists as erased is dropped from the served models
        first: nobody is decided for from models that still hold them.
        """
        ledger = self.ledger
        if ledger is not None and ids and ledger.version() != self._erasures_seen:
            found = ledger.erased(ids)
            if found:
                self.erase(found)
        bundle = self.bundle
        if bundle.rules_error is not None:
            raise NotReady(f"the rules did not load: {bundle.rules_error}")
        return bundle

    # ================================================================== reload
    def reload(self, *, force: bool = False) -> Bundle:
        """Load new champions and the newest snapshot where they changed, and serve
        them; returns the bundle now served.

        Anything that fails keeps what was loaded before and is reported in the
        bundle's reasons; nothing here raises to a caller.
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
            _snapshot_facts(new, old, snapshot_path, snapshot)
            self._recommender(new, old, wanted.get(RECOMMENDER_NAME), force, reasons, errors)
            self._selectors(new, old, wanted, reasons, errors)
            self._snapshot_arrays(new, old, snapshot, reasons)
            self._content(new, old, reasons)
            self._rules(new, old, reasons, errors)
            new.challenger = self._challenger(new, old, snapshot, reasons, errors)
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
            if self._erased:
                erase_from_bundle(new, self._erased, memo=erased_parts(old))
            self._swap(new, old)
            self.last_check = time.monotonic()
            return new

    def _recommender(
        self,
        new: Bundle,
        old: Bundle,
        version: str | None,
        force: bool,
        reasons: list[str],
        errors: list[str],
    ) -> None:
        """The recommender champion ``version``: the loaded one where it did not change."""
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

    def _selectors(
        self,
        new: Bundle,
        old: Bundle,
        wanted: dict[str, str | None],
        reasons: list[str],
        errors: list[str],
    ) -> None:
        """The selector champion of each slot: the loaded one where it did not change."""
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

    def _snapshot_arrays(
        self, new: Bundle, old: Bundle, snapshot: Snapshot | None, reasons: list[str]
    ) -> None:
        """Catalog, history and the two-stage ranking, rebuilt when the snapshot or the
        recommender changed (its item order is theirs)."""
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

    def _content(self, new: Bundle, old: Bundle, reasons: list[str]) -> None:
        """The active content, its features, and each selector's layout over them."""
        try:
            new.content = active_content(self.store)
            new.content_features = (
                content_features(new.content) if len(new.content) else pd.DataFrame()
            )
        except Exception as error:
            reasons.append(f"content table unreadable: {error}")
            new.content, new.content_features = old.content, old.content_features
        self._layouts(new, reasons)

    def _layouts(self, new: Bundle, reasons: list[str], reuse: Bundle | None = None) -> None:
        """Each selector's layout over the active content (``reuse``'s where the
        selector is the same object)."""
        for slot, selector in new.selectors.items():
            if reuse is not None and reuse.selectors.get(slot) is selector:
                new.layouts[slot] = reuse.layouts[slot]
                continue
            try:
                new.layouts[slot] = SelectorLayout.build(selector, new.content_features)
            except InputError as error:
                reasons.append(f"selector {slot} cannot score the active content: {error}")

    def _rules(self, new: Bundle, old: Bundle, reasons: list[str], errors: list[str]) -> None:
        """The rules, checked against the active content; a bad edit keeps the rules
        that were serving, and without any valid rules decisions are refused."""
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

    def _swap(self, new: Bundle, old: Bundle) -> None:
        """Serve ``new``; a new online store first catches up on the events posted
        while it was built, under the lock the event writer takes."""
        if new.online is not old.online and new.online is not None:
            with self.swap_lock:  # no posted event lands in the old store after this
                self.bundle = new
                self._catch_up(new.online)
            self._retire(old.online)
        else:
            self.bundle = new

    # ================================================================== erasure
    def erase(self, ids: Iterable[str]) -> int:
        """Forget customers in what is served, at once: the models' users, the cached
        rankings and the snapshot history, the challenger's too.

        The served bundle is copied, the copy erased (:func:`erase_from_bundle`) and
        swapped in under the reload lock, so a reload in progress cannot put back
        what it read before: a request that already holds the old bundle finishes
        with it; the next one does not find them. Later reloads drop them again.

        Returns
        -------
        int
            How many of ``ids`` the served bundle held (0: nothing was swapped).
        """
        wanted = {str(i) for i in ids}
        with self._reload_lock:
            self._erased |= wanted
            current = self.bundle
            erased = replace(current)
            count = erase_from_bundle(erased, wanted)
            if count:
                self.bundle = erased
        logger.info("erased %d of %d ids from the served models", count, len(wanted))
        return count

    def sync_erasures(self) -> int:
        """Drop from the served models everyone the privacy ledger lists as erased
        (erased by another worker or by ``tailor erase``, or brought back by a reload
        that read what was there before): run on the poll thread, and whenever the
        ledger or the served bundle changed since the last run. Returns how many ids
        were dropped."""
        ledger = self.ledger
        if ledger is None:
            return 0
        version = ledger.version()
        bundle = self.bundle
        if version == self._erasures_seen and bundle is self._erasures_bundle:
            return 0
        dropped = 0
        if ledger.erased_keys():
            found = ledger.erased(bundle_user_ids(bundle))
            if found:
                dropped = self.erase(found)
        self._erasures_seen = version
        self._erasures_bundle = self.bundle
        return dropped

    # ================================================================== polling
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
                    self.sync_erasures()
                except Exception:  # the poller must outlive any one failure
                    logger.exception("background reload failed")
                self._probe_writable()

        self._poller = threading.Thread(target=poll, daemon=True, name="tailor-poll")
        self._poller.start()

    def stop(self) -> None:
        """Stop polling (the thread ends at its next wake-up)."""
        self._stop.set()

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

    # ================================================================== sources
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

    def _challenger(
        self,
        new: Bundle,
        old: Bundle,
        snapshot: Snapshot | None,
        reasons: list[str],
        errors: list[str],
    ) -> Bundle | None:
        """The canary bundle: ``new`` with the models of the ``challenger`` alias where
        one is set (and loads), for ``serving.challenger_share`` of the customers."""
        if self.config.challenger_share <= 0:
            return None
        wanted = self._champions(reasons, alias=CHALLENGER) or {}
        if not any(wanted.values()):
            reasons.append("challenger_share is set but no model has a challenger alias")
            return None
        prior = old.challenger if old.challenger is not None else new
        out = replace(new, challenger=None, arm="challenger", reasons=[], load_errors=[])
        version = wanted.get(RECOMMENDER_NAME)
        if version is not None and version != new.recommender_version:
            self._recommender(out, prior, version, False, reasons, errors)
            if out.recommender_version != version:  # failed to load: the champion's
                out = replace(out, recommender=new.recommender, pipeline=new.pipeline)
                out.recommender_version = new.recommender_version
            self._snapshot_arrays(out, prior if snapshot is None else new, snapshot, reasons)
        out.selectors, out.selector_versions = dict(new.selectors), dict(new.selector_versions)
        self._selectors(out, prior, wanted | _unset(new, wanted), reasons, errors)
        out.layouts = {}
        self._layouts(out, reasons, reuse=new)
        return out

    def _champions(
        self, reasons: list[str], *, alias: str = CHAMPION
    ) -> dict[str, str | None] | None:
        try:
            client = registry_client(self.tracking)
            out: dict[str, str | None] = {}
            for name in [RECOMMENDER_NAME, *(SELECTOR_PREFIX + s for s in SLOTS)]:
                version = alias_version(client, name, alias)
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
            # Every store of this loader judges sendability by the live store's ledger.
            ledger = self.online.send_rules.ledger
            built = sorted(folder.glob(f"{snapshot_id}.*.db"))
            if built and not force:
                reused = online_store(self.settings, built[-1], ledger=ledger)
                if reused.meta("snapshot_id") == snapshot_id:
                    return reused
                reused.close()  # emptied on opening (another layout): built again
            final = folder / f"{snapshot_id}.{time.time_ns():020d}.db"
            building = final.with_suffix(".building")
            for leftover in folder.glob("*.building*"):
                leftover.unlink()
            store = online_store(self.settings, building, ledger=ledger)
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
        return online_store(self.settings, final, ledger=ledger)

    def _current_snapshot(self, old: Bundle) -> Snapshot | None:
        if old.snapshot_id is None:
            return None
        return load_snapshot(self.settings.features_dir / old.snapshot_id)


# ====================================================================== module helpers
def _unset(bundle: Bundle, wanted: dict[str, str | None]) -> dict[str, str | None]:
    """The champion's selector versions for the slots with no challenger: a canary
    swaps only the models that have one."""
    return {
        SELECTOR_PREFIX + slot: version
        for slot, version in bundle.selector_versions.items()
        if wanted.get(SELECTOR_PREFIX + slot) is None
    }


def online_store(
    settings: ServiceSettings, path: Path, *, ledger: PrivacyLedger | None = None
) -> OnlineStore:
    """The online store at ``path``, opened under the settings' consent, attribution
    and sending rules (``ledger``: the privacy ledger whose suppression list applies;
    none: no suppression list)."""
    return OnlineStore(
        path,
        assume_consent_when_unknown=settings.features.assume_consent_when_unknown,
        attribution_window=timedelta(hours=settings.selectors.attribution_window_hours),
        send_rules=SendRules(
            ledger=ledger,
            frequency_caps=settings.privacy.frequency_caps,
            phone_region=settings.phone_region,
            gmail=settings.features.identity.gmail_normalisation,
        ),
    )


def _snapshot_facts(new: Bundle, old: Bundle, path: Path | None, snapshot: Snapshot | None) -> None:
    """The snapshot's id, time and feature names (the loaded one's without a new one)."""
    if snapshot is not None:
        new.snapshot_id = path.name if path else None
        new.as_of = snapshot.as_of
        new.feature_names = set(snapshot.customers.columns)
        new.back_in_stock_hours = _longest_back_in_stock(snapshot)
    else:
        new.snapshot_id, new.as_of = old.snapshot_id, old.as_of
        new.feature_names = old.feature_names
        new.back_in_stock_hours = old.back_in_stock_hours


def _remove_old_stores(folder: Path, *, keep: int) -> None:
    """Remove all but the newest ``keep`` online store builds (and their WAL files)."""
    builds = sorted(
        (p for p in folder.glob("*.db") if p.name != "live.db"), key=lambda p: p.stat().st_mtime
    )
    for old in builds[:-keep]:
        for path in (old, old.with_name(old.name + "-wal"), old.with_name(old.name + "-shm")):
            path.unlink(missing_ok=True)
