"""Privacy: the ledger, erasure, retention, at the top of ``features``.

Builds on every other part (the data layer, identity, snapshots, and
:mod:`features.pii` for keyed hashes):

* :mod:`~features.privacy.ledger`: one SQLite file (``TAILOR_HOME/privacy``) with the
  suppression list, the erased ids, the erasure receipts and the audit log of every
  administrative action;
* :mod:`~features.privacy.erasure`: a person's ids, and their rows out of every data
  store (event store, quarantine, snapshots, posted events, decision log, overrides);
* :mod:`~features.privacy.retention`: old events, decisions and quarantined rows out;
* :mod:`~features.privacy.scrub`: SQLite files vacuumed after deletions.
"""
