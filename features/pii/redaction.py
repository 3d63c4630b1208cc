"""Masking e-mail addresses and phone numbers in text that quotes input back (a
validation reason, an error message, a raw line that could not be parsed).

It imports nothing of Tailor: the root exception (:mod:`features.errors`) uses it.
"""

from __future__ import annotations

import re

# A local part, an @ and a domain with at least one dot (``map@10`` is a metric name).
_EMAIL = re.compile(r"[^\s@<>(),;:\"']{1,64}@[^\s@<>(),;:\"'.]+(?:\.[^\s@<>(),;:\"'.]+)+")
# International numbers (+ and 7-15 digits, separators allowed) and the usual
# national shapes ((555) 123-4567, 555.123.4567); not bare digit runs, which are ids.
_PHONE = re.compile(
    r"\+\d(?:[\s().-]?\d){6,14}(?!\d)|(?<!\d)\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?!\d)"
)


def redact(text: str) -> str:
    """``text`` with anything shaped like an e-mail address or a phone number masked
    (``<email>``, ``<phone>``): for messages that quote input back."""
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))
