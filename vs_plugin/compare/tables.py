"""The comparison's rows, as a CSV and a Markdown table.

Measurements (METHOD.md section 3): accuracy is top-1 on the dataset's test split; nnz counts the
non-zero entries of Linear/Conv weight tensors; compression is teacher weights / nnz; memory is
the student stored sparse (CSR: 4-byte values, 2-byte column indices below 65,536 columns, 4-byte
row pointers, other parameters dense fp32) and, for the reference rows, dense fp32.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from typing import Optional, Sequence

from ..metrics.health import NEAR_CHANCE_MARK

#: ``target_from`` values: the row's target was set in the config, or is the sparsity the method reached.
TARGET_FROM_CONFIG = "config"
TARGET_ACHIEVED = "achieved"
TARGET_NONE = ""


@dataclass(frozen=True)
class ResultRow:
    """One line of the comparison.

    Attributes:
        method: the method's label (``teacher`` and ``dense student`` for the reference rows).
        target: target sparsity (None for reference rows).
        target_from: ``config``, ``achieved`` (the method chose its sparsity) or empty.
        accuracy: top-1 test accuracy in [0, 1].
        nnz: non-zero weights.
        sparsity: 1 - nnz / weights of the student architecture.
        compression_vs_teacher: teacher weights / nnz.
        memory_bytes: CSR bytes (students) or dense fp32 bytes (teacher).
        wall_time_s: seconds the method took (pruning and training), 0 for reference rows.
        reference: True for the teacher and dense-student rows.
        near_chance: the student is at or near chance accuracy (see :mod:`vs_plugin.metrics.health`).
    """

    method: str
    target: Optional[float]
    target_from: str
    accuracy: float
    nnz: int
    sparsity: float
    compression_vs_teacher: float
    memory_bytes: int
    wall_time_s: float
    reference: bool = False
    near_chance: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


CSV_COLUMNS = tuple(f.name for f in fields(ResultRow))


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def to_csv(rows: Sequence[ResultRow]) -> str:
    """Every row with every column; floats with 6 significant digits, missing values empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_csv_value(getattr(row, column)) for column in CSV_COLUMNS])
    return buffer.getvalue()


def _bytes(count: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def _target(row: ResultRow) -> str:
    if row.target is None:
        return "-"
    return f"{row.target:.3f}" + ("*" if row.target_from == TARGET_ACHIEVED else "")


def to_markdown(rows: Sequence[ResultRow], title: str, notes: Sequence[str] = ()) -> str:
    """A Markdown table of ``rows`` under ``title``, followed by the measurement notes."""
    header = ("method", "target", "accuracy", "nnz", "sparsity", "compression vs teacher", "memory", "wall time")
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row in rows:
        cells = (
            row.method,
            _target(row),
            f"{100 * row.accuracy:.2f}%" + (NEAR_CHANCE_MARK if row.near_chance else ""),
            f"{row.nnz:,}",
            f"{100 * row.sparsity:.2f}%",
            f"{row.compression_vs_teacher:.1f}x",
            _bytes(row.memory_bytes),
            f"{row.wall_time_s:.1f} s" if not row.reference else "-",
        )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if any(row.target_from == TARGET_ACHIEVED for row in rows):
        lines.append("\\* the method sets its own sparsity (log_alpha threshold): the target shown is the sparsity it reached.")
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


__all__ = ["ResultRow", "CSV_COLUMNS", "to_csv", "to_markdown", "TARGET_FROM_CONFIG", "TARGET_ACHIEVED", "TARGET_NONE"]
