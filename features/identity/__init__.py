"""Identity resolution: customer records linked into people, every event on one id.

The package imports nothing itself (so ``tailor identity`` stays light to start); import
from its modules:

- :mod:`features.identity.resolution` — the job: exact keys, probabilistic matches and
  overrides linked into people (:func:`resolve_identities`, :class:`Identity`), over
  the contacts of :mod:`features.pii.contacts` (normalised e-mails and phone numbers);
- :mod:`features.identity.match` — the probabilistic record matcher (Fellegi-Sunter);
- :mod:`features.identity.overrides` — a reviewer's merges and splits, kept across builds;
- :mod:`features.identity.explain` — why records are one person (``tailor identity explain``).
"""
