"""The study's one table writer: mean and spread over seeds, as Markdown and CSV."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from .cells import RowResult


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample standard deviation over seeds (0 with one seed)
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Stat":
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
        return cls(mean, std, n)


@dataclass(frozen=True)
class Summary:
    """One (fraction, row) over its seeds."""

    label: str
    kind: str
    fraction: float
    accuracy: Stat
    sparsity: Stat
    nnz: Stat
    compression: Stat
    memory_reduction: Stat
    teacher_accuracy: Stat
    wall_time_s: Stat
    all_pruned: int = 0  # seeds whose student kept no weight at all (compression is meaningless there)
    near_chance: int = 0  # seeds whose student is at or near chance accuracy
    target: Optional[float] = None
    measures: dict = field(default_factory=dict)  # name -> Stat, or name -> {batch size: Stat}


def _measure_stats(members: Sequence[RowResult]) -> dict:
    """Mean/spread of every measure all seeds have (numbers, or numbers by batch size)."""
    stats: dict = {}
    for name, value in members[0].measures.items():
        values = [m.measures.get(name) for m in members]
        if any(v is None for v in values):
            continue
        if isinstance(value, dict):
            stats[name] = {key: Stat.of([v[key] for v in values]) for key in value}
        else:
            stats[name] = Stat.of([float(v) for v in values])
    return stats


def summarise(results: Sequence[RowResult]) -> list[Summary]:
    """Group by (fraction, label), in the order rows first appear."""
    groups: dict[tuple[float, str], list[RowResult]] = {}
    for result in results:
        groups.setdefault((result.fraction, result.label), []).append(result)
    summaries = []
    for (fraction, label), members in groups.items():
        summaries.append(
            Summary(
                label=label, kind=members[0].kind, fraction=fraction,
                accuracy=Stat.of([m.accuracy for m in members]), sparsity=Stat.of([m.sparsity for m in members]),
                nnz=Stat.of([m.nnz for m in members]), compression=Stat.of([m.compression_vs_teacher for m in members]),
                memory_reduction=Stat.of([m.memory_reduction_vs_teacher for m in members]),
                teacher_accuracy=Stat.of([m.teacher_accuracy for m in members]), wall_time_s=Stat.of([m.wall_time_s for m in members]),
                all_pruned=sum(1 for m in members if m.kind != "teacher" and m.nnz == 0),
                near_chance=sum(1 for m in members if m.near_chance), target=members[0].target,
                measures=_measure_stats(members),
            )
        )
    return summaries


def _with_spread(mean: str, spread: str, stat: Stat) -> str:
    """``mean ± spread``; the spread is left out with one seed, where it is undefined."""
    return f"{mean} ± {spread}" if stat.n > 1 else mean


def _pct(stat: Stat) -> str:
    return _with_spread(f"{100 * stat.mean:.2f}", f"{100 * stat.std:.2f}", stat)


def _compression_cells(s: Summary) -> str:
    """Compression and memory reduction; a student with no weight left has no meaningful ratio."""
    if s.all_pruned:
        return f"all weights pruned ({s.all_pruned} of {s.accuracy.n} seeds) | -"
    return (
        f"{_with_spread(f'{s.compression.mean:.1f}x', f'{s.compression.std:.1f}', s.compression)} | "
        f"{_with_spread(f'{s.memory_reduction.mean:.1f}x', f'{s.memory_reduction.std:.1f}', s.memory_reduction)}"
    )


def _stat_cell(stat: Optional[Stat], scale: float, digits: int, suffix: str = "") -> str:
    if stat is None:
        return "-"
    return _with_spread(f"{scale * stat.mean:.{digits}f}{suffix}", f"{scale * stat.std:.{digits}f}", stat)


def _measure_columns(summaries: Sequence[Summary]) -> list[tuple[str, Callable[[Summary], str]]]:
    """Extra columns for the measures some row has: MACs, params, accuracy right after pruning, speed-up."""
    present = {name for s in summaries for name in s.measures}
    columns: list[tuple[str, Callable[[Summary], str]]] = []
    if "mac_reduction_vs_teacher" in present:
        columns.append(("MAC reduction vs teacher (%)", lambda s: _stat_cell(s.measures.get("mac_reduction_vs_teacher"), 100, 1)))
        columns.append(("params (M)", lambda s: _stat_cell(s.measures.get("params"), 1e-6, 3)))
    if "pruned_accuracy" in present:
        columns.append(("top-1 right after pruning (%)", lambda s: _stat_cell(s.measures.get("pruned_accuracy"), 100, 2)))
    batches = sorted({b for s in summaries for b in s.measures.get("speedup", {})}, key=int)
    for batch in batches:
        columns.append((f"CPU speed-up, batch {batch}", lambda s, b=batch: _stat_cell(s.measures.get("speedup", {}).get(b), 1, 2, "x")))
    return columns


def to_markdown(summaries: Sequence[Summary], title: str, notes: Sequence[str] = ()) -> str:
    fractions = sorted({s.fraction for s in summaries}, reverse=True)
    lines = [f"### {title}", ""]
    extra = _measure_columns(summaries)
    names = ["row", "top-1 accuracy (%)", "sparsity (%)", "non-zero weights", "compression vs teacher",
             "memory reduction vs teacher"] + [name for name, _ in extra] + ["seeds"]
    header = "| " + " | ".join(names) + " |"
    for fraction in fractions:
        members = [s for s in summaries if s.fraction == fraction]
        if len(fractions) > 1:
            lines += [f"**{100 * fraction:g}% of the training set**", ""]
        teacher = members[0].teacher_accuracy
        lines += [header, "|" + "---|" * len(names)]
        teacher_extra = ["0.0" if name.startswith("MAC") else "1.00x" if name.startswith("CPU") else "-" for name, _ in extra]
        lines.append("| " + " | ".join(["teacher", _pct(teacher), "0", "-", "1x", "1x"] + teacher_extra + [str(teacher.n)]) + " |")
        for s in members:
            chance = f" (near chance in {s.near_chance} of {s.accuracy.n} seeds)" if s.near_chance else ""
            cells = [s.label, _pct(s.accuracy) + chance, _pct(s.sparsity), _with_spread(f"{s.nnz.mean:,.0f}", f"{s.nnz.std:,.0f}", s.nnz),
                     _compression_cells(s)] + [render(s) for _, render in extra] + [str(s.accuracy.n)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines).rstrip() + "\n"


def _flat_measures(measures: dict) -> dict:
    """``{"speedup": {"1": 2.0}}`` -> ``{"speedup_batch_1": 2.0}``; numbers stay as they are."""
    flat = {}
    for name, value in measures.items():
        if isinstance(value, dict):
            flat.update({f"{name}_batch_{key}": v for key, v in value.items()})
        else:
            flat[name] = value
    return flat


def to_csv(results: Sequence[RowResult]) -> str:
    buffer = io.StringIO()
    columns = ["label", "kind", "fraction", "seed", "epochs", "accuracy", "teacher_accuracy", "nnz", "weights", "sparsity",
               "compression_vs_teacher", "memory_bytes", "memory_reduction_vs_teacher", "target", "wall_time_s", "near_chance"]
    flat = [_flat_measures(r.measures) for r in results]
    columns += list(dict.fromkeys(name for measures in flat for name in measures))
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for result, measures in zip(results, flat):
        writer.writerow({**result.to_dict(), **measures})
    return buffer.getvalue()
