"""A self-contained HTML page: headings, prose, tables and plots, no outside assets.

A report is read by a marketer, often offline or from an attachment: the page holds
its own style and its plots (PNG, inline), loads nothing from anywhere and runs no
script.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem;
       color: #1d1d1f; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.7rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f6; }
p.note { color: #555; font-size: 0.9rem; }
p.verdict { font-size: 1.05rem; padding: 0.6rem 0.8rem; background: #f4f7fb;
            border-left: 4px solid #3a6ea5; }
img { max-width: 100%; }
"""


class Page:
    """An HTML page built in order: ``heading``, ``text``, ``table``, ``figure``."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]

    def heading(self, text: str) -> None:
        self._parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, *, kind: str = "") -> None:
        css = f' class="{kind}"' if kind else ""
        self._parts.append(f"<p{css}>{html.escape(text)}</p>")

    def table(self, frame: pd.DataFrame, *, formats: dict[str, str] | None = None) -> None:
        """A table of ``frame`` (its index is not shown), each column formatted by
        ``formats`` (a ``str.format`` spec such as ``{:.2%}``) where given."""
        formats = formats or {}
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        rows = []
        for values in frame.itertuples(index=False):
            cells = "".join(
                f"<td>{html.escape(_cell(value, formats.get(str(column))))}</td>"
                for column, value in zip(frame.columns, values, strict=True)
            )
            rows.append(f"<tr>{cells}</tr>")
        self._parts.append(f"<table><tr>{head}</tr>{''.join(rows)}</table>")

    def figure(self, figure: Figure, *, alt: str) -> None:
        """The figure as an inline PNG (the figure is closed)."""
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        self._parts.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')

    def html(self) -> str:
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(self._parts)}</body></html>\n"
        )

    def write(self, path: Path) -> Path:
        """Write the page atomically (a reader never sees half a report)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(self.html(), encoding="utf-8")
        partial.replace(path)
        return path


def text_table(frame: pd.DataFrame, *, formats: dict[str, str] | None = None) -> str:
    """The same table for a terminal: aligned columns, the same formats."""
    formats = formats or {}
    columns = [str(c) for c in frame.columns]
    cells = [
        [_cell(v, formats.get(c)) for c, v in zip(columns, values, strict=True)]
        for values in frame.itertuples(index=False)
    ]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(_pad(c, w, i) for i, (c, w) in enumerate(zip(columns, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(_pad(v, w, i) for i, (v, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    ]
    return "\n".join(lines)


def _pad(text: str, width: int, index: int) -> str:
    return text.ljust(width) if index == 0 else text.rjust(width)


def _cell(value: object, spec: str | None) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if spec is not None:
        try:
            return spec.format(value)
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def bars_with_intervals(
    labels: Sequence[str],
    values: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    *,
    title: str,
    ylabel: str,
) -> Figure:
    """One bar per label with its interval as an error bar."""
    figure, ax = plt.subplots(figsize=(6.5, 3.2))
    # An interval's end a rounding error inside its value draws as no bar.
    errors = [
        [max(v - lo, 0.0) for v, lo in zip(values, lows, strict=True)],
        [max(hi - v, 0.0) for v, hi in zip(values, highs, strict=True)],
    ]
    ax.bar(list(labels), list(values), yerr=errors, capsize=4, color="#3a6ea5")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    figure.tight_layout()
    return figure
