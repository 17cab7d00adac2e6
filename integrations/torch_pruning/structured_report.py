"""The ``structured`` section of a report: sizes, MACs and CPU latency of teacher and pruned
student, with ratios against the teacher; and its printed summary."""

from __future__ import annotations

import torch
import torch.nn as nn

from .latency import measure_latency
from .macs import count_macs_params
from .structured_settings import StructuredSettings

NOTES = {
    "macs": "torch_pruning.utils.count_ops_and_params for one sample of the input shape (Conv/Linear/attention multiply-accumulates plus element-wise work)",
    "params": "all parameters of the model as deployed (the pruned student is a plain model)",
    "latency": "CPU, torch.inference_mode, median ms per forward pass of a batch, teacher and student interleaved in one process",
    "masked_accuracy": "gated student (gates at the threshold) just before the last pruning step",
    "reference_accuracy": "threshold pruning only: the masked student with the shifts of removed channels zeroed; equals pruned_accuracy",
    "pruned_accuracy": "physically pruned student, before fine-tuning",
    "target_macs_ratio": "relative to the dense student's MACs",
}


def model_size(model: nn.Module, input_shape) -> dict:
    macs, params = count_macs_params(model, torch.zeros(1, *input_shape))
    return {"params": params, "macs": macs}


def structured_section(
    teacher: nn.Module, student: nn.Module, dense_student: dict, input_shape, structured: StructuredSettings, extra: dict
) -> dict:
    """Sizes, MACs and latency of teacher and pruned student, with ratios against the teacher."""
    teacher_size, student_size = model_size(teacher, input_shape), model_size(student, input_shape)
    latency = measure_latency(
        {"teacher": teacher, "student": student}, input_shape, structured.latency_batch_sizes, structured.latency_repeats,
        threads=structured.latency_threads,
    )
    for timings in latency["batch_sizes"].values():
        timings["speedup"] = timings["teacher"] / timings["student"]
    return {
        "teacher": teacher_size,
        "dense_student": dense_student,
        "student": student_size,
        "macs_ratio_vs_teacher": student_size["macs"] / teacher_size["macs"],
        "mac_reduction_vs_teacher": 1.0 - student_size["macs"] / teacher_size["macs"],
        "macs_ratio_vs_dense_student": student_size["macs"] / dense_student["macs"],
        "params_ratio_vs_teacher": student_size["params"] / teacher_size["params"],
        "latency": latency,
        **extra,
        "notes": NOTES,
    }


def summary_lines(report: dict) -> list[str]:
    """Human-readable lines for the structured section of a report."""
    section = report["structured"]
    lines = [
        f"structured: params {section['teacher']['params']:,} -> {section['student']['params']:,} "
        f"({section['params_ratio_vs_teacher']:.1%} of the teacher), MACs {section['teacher']['macs']:,} -> "
        f"{section['student']['macs']:,} ({section['mac_reduction_vs_teacher']:.1%} fewer)",
        f"accuracy: teacher {report['teacher']['accuracy']:.2%}, masked student {section.get('masked_accuracy', float('nan')):.2%}, "
        f"pruned {section['pruned_accuracy']:.2%}, final {report['student']['accuracy']:.2%}",
    ]
    for batch, timings in section["latency"]["batch_sizes"].items():
        lines.append(
            f"CPU latency batch {batch}: teacher {timings['teacher']:.2f} ms, student {timings['student']:.2f} ms "
            f"({timings['speedup']:.2f}x, {section['latency']['threads']} threads, median of {section['latency']['repeats']})"
        )
    return lines


__all__ = ["NOTES", "model_size", "structured_section", "summary_lines"]
