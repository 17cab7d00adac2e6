"""The structured experiment's plot (``results.png``, ``seeds.png``): accuracy and measured speed-up
against the MAC reduction, one line per method, the dense teacher as a reference line. Rows that
carry ``accuracy_std`` / ``speedup_std`` (a summary over seeds) get error bars of one std."""

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
        accuracy_std = [100 * r["accuracy_std"] for r in points] if all("accuracy_std" in r for r in points) else None
        left.errorbar(reduction, [100 * r["accuracy"] for r in points], yerr=accuracy_std, fmt=styles[index % len(styles)],
                      capsize=3, label=method)
        for batch in batches:
            speedup_std = [r["speedup_std"][batch] for r in points] if all("speedup_std" in r for r in points) else None
            right.errorbar(reduction, [r["speedup"].get(batch) for r in points], yerr=speedup_std, fmt=styles[index % len(styles)],
                           capsize=3, alpha=1.0 if batch == batches[0] else 0.5, label=f"{method}, batch {batch}")
    if teacher is not None:
        left.axhline(100 * teacher["accuracy"], color="grey", linestyle="--", linewidth=1, label="teacher (dense)")
    right.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    left.set_ylabel("top-1 accuracy (%)")
    right.set_ylabel("CPU speed-up vs the teacher (measured)")
    for axes in (left, right):
        axes.set_xlabel("MAC reduction vs the teacher (%)")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    seeds = results.get("seeds")
    over = f", mean ± std over seeds {', '.join(map(str, seeds))}" if seeds else ""
    figure.suptitle(f"{results['teacher']} on {results['dataset']}: structured pruning at matched MACs{over}", fontsize=10)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
