"""Privacy: the keyed hash that stands for personal data, and the privacy ledger.

* :mod:`~features.privacy.hashing`: keyed hashes (HMAC-SHA256, rotatable) of
  e-mails, phones and ids, the only form in which Tailor keeps them outside the
  customer table of the event store;
* :mod:`~features.privacy.ledger`: one SQLite file (``TAILOR_HOME/privacy``) with the
  suppression list, the erased ids, the erasure receipts and the audit log of every
  administrative action.
"""
