"""How a long job reports progress: a callable taking one line of text.

Jobs take ``progress: Progress | None`` and call it with a short line at each step
("events: 250,000 rows read …"); the command line passes one that prints to stderr, tests
and library callers pass nothing or collect the lines.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]
