"""Point-in-time feature snapshots: customers, items, interactions, segments, triggers.

A snapshot is computed *as of* a UTC time and reads only events strictly before
it, so a model trained on it never sees the future. The computation is SQL run by
DuckDB over three inputs (views named ``events``, ``customers`` and
``catalog_history``), whether those come from the Parquet event store
(:func:`build_snapshot`) or from DataFrames (:func:`compute_snapshot`); the SQL is
the one definition of every feature.

Windows are half-open, ``[as_of - N days, as_of)``: an event exactly N days old
counts in the N-day window and not in any shorter one.

Consent: customers without ``consent_personalization`` get a row with their
consent and subscription state only — no behavioural feature, segment, trigger
or interaction is computed for them.

Engagement score (last 30 days), documented weights::

    ln(1 + 1·opens + 3·clicks + 0.2·product views + 2·carts + 10·purchases)

Price sensitivity, from the catalog version current at ``as_of``: the price index
of an item is its list price over its category's median list price;
``viewed_price_index_90d`` and ``purchased_price_index`` average it over a customer's
product views (90 days) and purchases, and ``discount_purchase_share`` is the share of
purchases paid at least 1 % below list price.

Lifecycle stage, first match wins: ``loyal`` (more than 5 purchases in 90 days),
``new_subscriber`` (signed up within 14 days, no purchase ever), ``new`` (signed up
or first purchase within 30 days), ``active`` (a purchase within 90 days),
``at_risk`` (last purchase 90–180 days ago), ``lapsed`` (more than 180 days),
``engaged_no_purchase`` (3+ email clicks or 5+ product views in 30 days, no
purchase in 90), otherwise ``prospect``.

The job in files: :mod:`~features.snapshot.job` (the entry points and the stages in
order), :mod:`~features.snapshot.people` (person numbers, resolved events, consent),
:mod:`~features.snapshot.customers` (the customer table),
:mod:`~features.snapshot.attributes` (its ``attr_`` columns),
:mod:`~features.snapshot.interactions` ((person, item) weights, category affinity, the
interaction matrix), :mod:`~features.snapshot.items` (the item table),
:mod:`~features.snapshot.triggers`, :mod:`~features.snapshot.sql` (the SQL pieces they
share), :mod:`~features.snapshot.tables` (the :class:`Snapshot` and its columns) and
:mod:`~features.snapshot.persistence` (snapshot folders: write, find, read).
"""

from __future__ import annotations

from features.snapshot.attributes import ATTRIBUTE_PREFIX
from features.snapshot.job import build_snapshot, compute_snapshot
from features.snapshot.persistence import (
    latest_snapshot,
    load_identity,
    load_snapshot,
    snapshot_dir,
    snapshot_folders,
    write_snapshot,
)
from features.snapshot.sql import TYPE_CODES
from features.snapshot.tables import (
    CONSENT_COLUMNS,
    NULLABLE_CUSTOMER_FEATURES,
    SNAPSHOT_FORMAT,
    Snapshot,
    behaviour_feature_names,
)

__all__ = [
    "ATTRIBUTE_PREFIX",
    "CONSENT_COLUMNS",
    "NULLABLE_CUSTOMER_FEATURES",
    "SNAPSHOT_FORMAT",
    "TYPE_CODES",
    "Snapshot",
    "behaviour_feature_names",
    "build_snapshot",
    "compute_snapshot",
    "latest_snapshot",
    "snapshot_folders",
    "load_identity",
    "load_snapshot",
    "snapshot_dir",
    "write_snapshot",
]
