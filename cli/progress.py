"""The progress lines long commands print on stderr (stdout keeps their results)."""

from __future__ import annotations

import sys


def progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)
