"""Figures of a training run: plain data in, a matplotlib ``Figure`` out.

Built without pyplot (no global figure state, no GUI backend) and without MLflow:
:mod:`training.tracking` logs them as run artifacts.
"""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure


def plot_metric_curves(curves: Mapping[str, Mapping[int, float]], metric: str) -> Figure:
    """One line per model: ``metric`` against the cut-off k.

    Parameters
    ----------
    curves : mapping of str to mapping of int to float
        ``{model_name: {k: value}}``.
    metric : str
        Axis label and title (e.g. ``"ndcg"``).

    Returns
    -------
    matplotlib.figure.Figure
        Built without pyplot (no global figure state, no GUI backend).
    """
    return _lines_against_k(curves, ylabel=metric, title=f"{metric} vs k", legend=bool(curves))


def plot_feature_importance(importance: Mapping[str, float], *, top: int = 30) -> Figure:
    """Horizontal bar chart of the ``top`` most important features (largest on top)."""
    ranked = sorted(importance.items(), key=lambda item: item[1], reverse=True)[:top]
    figure = Figure(figsize=(6, 0.3 * len(ranked) + 1.2), layout="constrained")
    axes = figure.add_subplot()
    names = [name for name, _ in reversed(ranked)]
    axes.barh(names, [value for _, value in reversed(ranked)])
    axes.set_xlabel("importance")
    axes.set_title("feature importance")
    return figure


def plot_run_curves(curves: Mapping[str, Mapping[int, float]]) -> Figure:
    """One run's per-k curves ``{"ndcg": {5: 0.3, 10: 0.35}}``, one line per metric."""
    return _lines_against_k(curves, ylabel="value", title="metrics vs k", legend=True)


def _lines_against_k(
    lines: Mapping[str, Mapping[int, float]], *, ylabel: str, title: str, legend: bool
) -> Figure:
    """One line per entry ``{label: {k: value}}``, against the cut-off k."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    for label, by_k in lines.items():
        ks = sorted(by_k)
        axes.plot(ks, [by_k[k] for k in ks], marker="o", label=label)
    axes.set_xlabel("k")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if legend:
        axes.legend()
    return figure
