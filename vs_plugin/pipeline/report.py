"""The report of a compression run (``report.json``) and its printed summary table."""

from __future__ import annotations

import platform
from typing import Optional

import torch

from .._version import __version__
from ..metrics.footprint import ModelFootprint
from ..metrics.health import health_warnings

REPORT_FORMAT = "vs-plugin-report/1"
MEASUREMENT_NOTES = {
    "weights": "weight tensors of Linear/Conv layers; biases, norm and other parameters counted apart as other_params",
    "compression_vs_teacher": "teacher weights / student non-zero weights",
    "compression_vs_dense_student": "student weights / student non-zero weights",
    "memory_bytes": (
        "student stored sparse: each weight tensor as CSR (out x fan_in) with 4-byte values, 2-byte column "
        "indices when a row has < 65536 columns (else 4) and 4-byte row pointers, plus every other parameter "
        "and floating-point buffer as dense fp32"
    ),
    "teacher.memory_bytes": "dense fp32: 4 bytes per parameter and floating-point buffer",
    "memory_reduction_vs_teacher": "teacher dense fp32 bytes / student sparse bytes",
    "storage_bytes": (
        "student stored in its smallest honest form: each weight tensor dense fp32 or CSR (as memory_bytes), "
        "whichever is smaller, named in storage_format; every other parameter and buffer dense fp32"
    ),
    "storage_reduction_vs_teacher": "teacher dense fp32 bytes / student storage_bytes (below 1: the student is larger)",
    "accuracy": "top-1 on the test split named in dataset.test_split",
}


def model_section(footprint: ModelFootprint, accuracy: float, name: Optional[str]) -> dict:
    return {
        "name": name,
        "accuracy": accuracy,
        "params": footprint.params,
        "weights": footprint.weights,
        "other_params": footprint.other_params,
        "nnz": footprint.nnz,
        "sparsity": footprint.sparsity,
        "dense_memory_bytes": footprint.dense_bytes,
        "layers": [layer.to_dict() for layer in footprint.layers],
    }


def build_report(
    *,
    teacher: ModelFootprint,
    teacher_accuracy: float,
    student: ModelFootprint,
    dense_student: ModelFootprint,
    student_accuracy: float,
    names: dict,
    dataset: dict,
    config: dict,
    history: dict,
    wall_time_s: float,
    device: torch.device,
    world_size: int = 1,
) -> dict:
    """Everything measured in one run; ratios say what they are against (see ``measurement``)."""
    teacher_section = model_section(teacher, teacher_accuracy, names.get("teacher"))
    teacher_section["memory_bytes"] = teacher.dense_bytes
    student_section = model_section(student, student_accuracy, names.get("student"))
    nnz = max(student.nnz, 1)
    student_section.update(
        {
            "initialised_from": names.get("student_init"),
            "compression_vs_teacher": teacher.weights / nnz,
            "compression_vs_dense_student": dense_student.weights / nnz,
            "memory_bytes": student.sparse_bytes,
            "memory_reduction_vs_teacher": teacher.dense_bytes / student.sparse_bytes,
            "storage_bytes": student.smallest_bytes,
            "storage_format": student.smallest_format,
            "storage_reduction_vs_teacher": teacher.dense_bytes / student.smallest_bytes,
            "accuracy_drop_vs_teacher": teacher_accuracy - student_accuracy,
        }
    )
    return {
        "format": REPORT_FORMAT,
        "warnings": collapse_warnings(student, dataset.get("train_samples"))
        + health_warnings(student_accuracy, dataset.get("num_classes"), student.nnz, dataset.get("train_samples")),
        "vs_plugin_version": __version__,
        "dataset": dataset,
        "teacher": teacher_section,
        "student": student_section,
        "measurement": MEASUREMENT_NOTES,
        "history": history,
        "config": config,
        "wall_time_s": wall_time_s,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": str(device),
            "processes": world_size,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
    }


def collapse_warnings(student: ModelFootprint, train_samples: Optional[int]) -> list[str]:
    """Say when whole weight tensors were pruned: the layers after them no longer see the input.

    The KL term is scaled by 1/N (docs/method.md, "Loss"), so with few training samples it can outweigh the
    data terms and prune everything: the ELBO's honest answer, but rarely what a user wants.
    """
    empty = [layer.name for layer in student.layers if layer.weights and layer.nnz == 0]
    if not empty:
        return []
    data = f" with N = {train_samples:,} training samples" if train_samples else ""
    return [
        f"every weight of {len(empty)} layer(s) was pruned ({', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''}): "
        f"the student's output no longer depends on its input there. The KL term (scaled 1/N{data}) outweighed "
        "the data terms; lower --kl-weight, lengthen --kl-warmup-epochs, raise --threshold or train on more data"
    ]


def summary_table(report: dict) -> str:
    """A short human-readable table of the report's headline numbers."""
    teacher, student = report["teacher"], report["student"]
    rows = [
        ("", "teacher", "student"),
        ("model", str(teacher["name"]), str(student["name"])),
        ("top-1 accuracy", f"{100 * teacher['accuracy']:.2f}%", f"{100 * student['accuracy']:.2f}%"),
        ("weights", f"{teacher['weights']:,}", f"{student['weights']:,}"),
        ("non-zero weights", f"{teacher['nnz']:,}", f"{student['nnz']:,}"),
        ("sparsity", f"{100 * teacher['sparsity']:.2f}%", f"{100 * student['sparsity']:.2f}%"),
        ("memory", _bytes(teacher["memory_bytes"]) + " dense", _student_storage(student)),
    ]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in width))
    lines.append(
        f"compression: {student['compression_vs_teacher']:.1f}x fewer non-zero weights than the teacher, "
        f"{student['compression_vs_dense_student']:.1f}x vs the dense student; "
        f"memory {_ratio_phrase(_storage_reduction(student), 'smaller', 'larger')} than the teacher"
    )
    lines.append(f"wall time: {report['wall_time_s']:.1f} s")
    lines += [f"WARNING: {warning}" for warning in report.get("warnings", ())]
    return "\n".join(lines)


def _student_storage(student: dict) -> str:
    """The student's smallest storage form (reports written before it existed: CSR)."""
    if "storage_bytes" in student:
        return f"{_bytes(student['storage_bytes'])} {student['storage_format']}"
    return _bytes(student["memory_bytes"]) + " CSR"


def _storage_reduction(student: dict) -> float:
    return student.get("storage_reduction_vs_teacher", student["memory_reduction_vs_teacher"])


def _ratio_phrase(ratio: float, below: str, above: str) -> str:
    """``"2.0x smaller"`` for a ratio of 2, ``"1.1x larger"`` for 0.9: never "0.9x smaller"."""
    if ratio >= 1:
        return f"{ratio:.1f}x {below}"
    return f"{1 / ratio:.1f}x {above}" if ratio > 0 else f"infinitely {above}"


def _bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)
