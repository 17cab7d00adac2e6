"""The structured experiment's plot (``results.png``): accuracy and measured speed-up against the
MAC reduction, one line per method, the dense teacher as a reference line."""

from __future__ import annotations

import io


def results_plot(results: dict) -> bytes:
    """PNG bytes: left, top-1 against MAC reduction; right, CPU speed-up against MAC reduction."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), dpi=120)
    FigureCanvasAgg(figure)
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    rows = results["rows"]
    teacher = next((r for r in rows if r["target_macs_ratio"] is None), None)
    batches = sorted({b for r in rows for b in r.get("speedup", {})}, key=int)
    styles = ("-o", "--s", "-.^", ":D", "-v")
    for index, method in enumerate(dict.fromkeys(r["method"] for r in rows if r["target_macs_ratio"] is not None)):
        points = sorted((r for r in rows if r["method"] == method), key=lambda r: 1 - r["macs_ratio_vs_teacher"])
        reduction = [100 * (1 - r["macs_ratio_vs_teacher"]) for r in points]
        left.plot(reduction, [100 * r["accuracy"] for r in points], styles[index % len(styles)], label=method)
        for batch in batches:
            right.plot(reduction, [r["speedup"].get(batch) for r in points], styles[index % len(styles)],
                       alpha=1.0 if batch == batches[0] else 0.5, label=f"{method}, batch {batch}")
    if teacher is not None:
        left.axhline(100 * teacher["accuracy"], color="grey", linestyle="--", linewidth=1, label="teacher (dense)")
    right.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    left.set_ylabel("top-1 accuracy (%)")
    right.set_ylabel("CPU speed-up vs the teacher (measured)")
    for axes in (left, right):
        axes.set_xlabel("MAC reduction vs the teacher (%)")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    figure.suptitle(f"{results['teacher']} on {results['dataset']}: structured pruning at matched MACs", fontsize=10)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
