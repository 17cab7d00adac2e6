"""The study's one plotter: PNG plots, rendered to bytes (the runner writes them atomically).

matplotlib's object API with the Agg canvas: no pyplot, no global backend change.
"""

from __future__ import annotations

import io
from typing import Optional, Sequence

from .cells import RowResult
from .summary import Summary


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(figure)
    return figure


def _figure_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def accuracy_vs_compression(summaries: Sequence[Summary], title: str) -> bytes:
    """Mean accuracy against mean compression (log x), error bars = std over seeds; full data only."""
    figure = _figure(7, 4.5)
    axes = figure.add_subplot(1, 1, 1)
    full = [s for s in summaries if s.fraction == max(x.fraction for x in summaries)]
    for s in full:
        if s.all_pruned:  # no weight left: no finite compression to plot (the table says so)
            continue
        axes.errorbar(s.compression.mean, 100 * s.accuracy.mean, xerr=s.compression.std, yerr=100 * s.accuracy.std,
                      fmt="o", capsize=3, label=s.label)
    if full:
        axes.axhline(100 * full[0].teacher_accuracy.mean, color="grey", linestyle="--", linewidth=1, label="teacher")
    axes.set_xscale("log")
    axes.set_xlabel("compression vs teacher (teacher weights / student non-zero weights)")
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, loc="lower left")
    axes.grid(True, which="both", alpha=0.3)
    return _figure_bytes(figure)


def low_data(summaries: Sequence[Summary], title: str) -> Optional[bytes]:
    """Accuracy and compression against the training fraction, one line per row; None with one fraction."""
    fractions = sorted({s.fraction for s in summaries})
    if len(fractions) < 2:
        return None
    figure = _figure(11, 4.2)
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for label in dict.fromkeys(s.label for s in summaries):
        points = sorted((s for s in summaries if s.label == label), key=lambda s: s.fraction)
        xs = [100 * s.fraction for s in points]
        left.errorbar(xs, [100 * s.accuracy.mean for s in points], yerr=[100 * s.accuracy.std for s in points], marker="o", capsize=3, label=label)
        kept = [s for s in points if not s.all_pruned]  # students with no weight left have no finite compression
        right.errorbar([100 * s.fraction for s in kept], [s.compression.mean for s in kept], yerr=[s.compression.std for s in kept],
                       marker="o", capsize=3, label=label)
    for axes, ylabel in ((left, "top-1 accuracy (%)"), (right, "compression vs teacher")):
        axes.set_xscale("log")
        axes.set_xlabel("training data used (%)")
        axes.set_ylabel(ylabel)
        axes.grid(True, which="both", alpha=0.3)
    right.set_yscale("log")
    right.set_title("(students pruned to nothing are left out)", fontsize=8)
    left.legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    return _figure_bytes(figure)


def threshold_curves(results: Sequence[RowResult], title: str) -> Optional[bytes]:
    """Accuracy against sparsity over the log alpha thresholds swept (mean over seeds); None without sweeps."""
    swept = [r for r in results if r.threshold_sweep and r.fraction == max(x.fraction for x in results)]
    if not swept:
        return None
    figure = _figure(7, 4.5)
    axes = figure.add_subplot(1, 1, 1)
    for label in dict.fromkeys(r.label for r in swept):
        runs = [r for r in swept if r.label == label]
        thresholds = sorted({p["threshold"] for r in runs for p in r.threshold_sweep})
        xs, ys = [], []
        for threshold in thresholds:
            points = [p for r in runs for p in r.threshold_sweep if p["threshold"] == threshold]
            xs.append(100 * sum(p["sparsity"] for p in points) / len(points))
            ys.append(100 * sum(p["accuracy"] for p in points) / len(points))
        axes.plot(xs, ys, marker="o", label=label)
    axes.set_xlabel("sparsity (%) as the log alpha threshold varies")
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    return _figure_bytes(figure)


def accuracy_vs_macs(summaries: Sequence[Summary], title: str) -> Optional[bytes]:
    """Left: accuracy against MAC reduction; right: measured CPU speed-up (error bars = std over
    seeds, the teacher as a reference line); None when no row measured MACs."""
    full = [s for s in summaries if "mac_reduction_vs_teacher" in s.measures and s.fraction == max(x.fraction for x in summaries)]
    if not full:
        return None
    figure = _figure(11, 4.2)
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    methods = dict.fromkeys(s.label.split(" @ ")[0] for s in full)
    batches = sorted({b for s in full for b in s.measures.get("speedup", {})}, key=int)
    for index, method in enumerate(methods):
        points = sorted((s for s in full if s.label.split(" @ ")[0] == method), key=lambda s: s.measures["mac_reduction_vs_teacher"].mean)
        xs = [100 * s.measures["mac_reduction_vs_teacher"].mean for s in points]
        style = ("-o", "--s", "-.^", ":D", "-v")[index % 5]
        left.errorbar(xs, [100 * s.accuracy.mean for s in points], yerr=[100 * s.accuracy.std for s in points], fmt=style, capsize=3, label=method)
        for batch in batches:
            speedups = [s.measures.get("speedup", {}).get(batch) for s in points]
            if all(v is not None for v in speedups):
                right.errorbar(xs, [v.mean for v in speedups], yerr=[v.std for v in speedups], fmt=style, capsize=3,
                               alpha=1.0 if batch == batches[0] else 0.5, label=f"{method}, batch {batch}")
    left.axhline(100 * full[0].teacher_accuracy.mean, color="grey", linestyle="--", linewidth=1, label="teacher (dense)")
    right.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    left.set_ylabel("top-1 accuracy (%)")
    right.set_ylabel("CPU speed-up vs the teacher (measured)")
    for axes in (left, right):
        axes.set_xlabel("MAC reduction vs the teacher (%)")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    return _figure_bytes(figure)
