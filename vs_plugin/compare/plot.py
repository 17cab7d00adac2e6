"""Accuracy against compression, one line per method, as PNG bytes (the runner writes them atomically).

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend change). Two
panels: every method on the full accuracy range, and a zoom on the band just below the teacher,
where the strong methods sit close together; markers and line styles differ per method so that
coinciding lines stay visible.
"""

from __future__ import annotations

import io
import itertools
import textwrap
from typing import Sequence

from .tables import ResultRow

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", "-.", ":")
#: The zoomed panel shows accuracies from this many points below the teacher to 1 point above.
ZOOM_POINTS = 4.0


def render_accuracy_vs_compression(rows: Sequence[ResultRow], title: str) -> bytes:
    """The plot of ``rows`` as PNG bytes: x = compression vs teacher (log scale), y = accuracy."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.8), dpi=120)
    FigureCanvasAgg(figure)
    full, zoom = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    methods = list(dict.fromkeys(row.method for row in rows if not row.reference))
    styles = zip(itertools.cycle(MARKERS), itertools.cycle(LINESTYLES))
    references = [r for r in rows if r.reference]
    for method, (marker, linestyle) in zip(methods, styles):
        points = sorted((row.compression_vs_teacher, 100 * row.accuracy) for row in rows if row.method == method and not row.reference)
        for axes in (full, zoom):
            axes.plot([p[0] for p in points], [p[1] for p in points], marker=marker, linestyle=linestyle, markersize=6,
                      markerfacecolor="none" if marker in "os^Dv" else None, label=method)
    for row, style in zip(references, ("--", ":")):
        for axes in (full, zoom):
            axes.axhline(100 * row.accuracy, linestyle=style, color="grey", linewidth=1, label=f"{row.method} ({100 * row.accuracy:.1f}%)")
    if references:
        top = 100 * references[0].accuracy
        zoom.set_ylim(top - ZOOM_POINTS, top + 1)
    for axes, label in ((full, "all methods"), (zoom, f"zoom: within {ZOOM_POINTS:g} points of the teacher")):
        axes.set_xscale("log")
        axes.set_xlabel("compression vs teacher (teacher weights / non-zero weights)")
        axes.set_ylabel("top-1 test accuracy (%)")
        axes.set_title(label, fontsize=9)
        axes.grid(True, which="both", alpha=0.3)
    zoom.legend(fontsize="small", loc="lower left")
    figure.suptitle("\n".join(textwrap.wrap(title, 110)), fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


__all__ = ["render_accuracy_vs_compression"]
