"""Mean and spread over seeds, as Markdown and CSV tables."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Sequence

from .rows import RowResult


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
                near_chance=sum(1 for m in members if m.near_chance),
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


def to_markdown(summaries: Sequence[Summary], title: str, notes: Sequence[str] = ()) -> str:
    fractions = sorted({s.fraction for s in summaries}, reverse=True)
    lines = [f"### {title}", ""]
    header = "| row | top-1 accuracy (%) | sparsity (%) | non-zero weights | compression vs teacher | memory reduction vs teacher | seeds |"
    for fraction in fractions:
        members = [s for s in summaries if s.fraction == fraction]
        if len(fractions) > 1:
            lines += [f"**{100 * fraction:g}% of the training set**", ""]
        teacher = members[0].teacher_accuracy
        lines += [header, "|---|---|---|---|---|---|---|"]
        lines.append(f"| teacher | {_pct(teacher)} | 0 | - | 1x | 1x | {teacher.n} |")
        for s in members:
            chance = f" (near chance in {s.near_chance} of {s.accuracy.n} seeds)" if s.near_chance else ""
            lines.append(
                f"| {s.label} | {_pct(s.accuracy)}{chance} | {_pct(s.sparsity)} | {_with_spread(f'{s.nnz.mean:,.0f}', f'{s.nnz.std:,.0f}', s.nnz)} | "
                f"{_compression_cells(s)} | {s.accuracy.n} |"
            )
        lines.append("")
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines).rstrip() + "\n"


def to_csv(results: Sequence[RowResult]) -> str:
    buffer = io.StringIO()
    columns = ["label", "kind", "fraction", "seed", "epochs", "accuracy", "teacher_accuracy", "nnz", "weights", "sparsity",
               "compression_vs_teacher", "memory_bytes", "memory_reduction_vs_teacher", "target", "wall_time_s"]
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for result in results:
        writer.writerow(result.to_dict())
    return buffer.getvalue()
