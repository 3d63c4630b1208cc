"""Personal data, at the bottom of ``features``: what every other part uses to keep it
out of where it does not belong.

* :mod:`~features.pii.hashing`: keyed hashes (HMAC-SHA256, rotatable) of e-mails,
  phones and ids, and :func:`~features.pii.hashing.redact` for text that quotes input;
* :mod:`~features.pii.contacts`: e-mails and phones in one normal form, placeholders,
  and contact keys (the keyed hash of a normalised contact);
* :mod:`~features.pii.masking`: which attributes are personal data, and how a kept raw
  row (the quarantine's) or a logged context hides them.
"""
