"""Accuracy against compression, one line per method, as PNG bytes (the runner writes them atomically).

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend change).
"""

from __future__ import annotations

import io
from typing import Sequence

from .tables import ResultRow


def render_accuracy_vs_compression(rows: Sequence[ResultRow], title: str) -> bytes:
    """The plot of ``rows`` as PNG bytes: x = compression vs teacher (log scale), y = accuracy."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    methods = [row.method for row in rows if not row.reference]
    for method in dict.fromkeys(methods):
        points = sorted((row.compression_vs_teacher, 100 * row.accuracy) for row in rows if row.method == method and not row.reference)
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
    for row, style in zip((r for r in rows if r.reference), ("--", ":")):
        axes.axhline(100 * row.accuracy, linestyle=style, color="grey", linewidth=1, label=f"{row.method} ({100 * row.accuracy:.1f}%)")
    axes.set_xscale("log")
    axes.set_xlabel("compression vs teacher (teacher weights / non-zero weights)")
    axes.set_ylabel("top-1 test accuracy (%)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


__all__ = ["render_accuracy_vs_compression"]
