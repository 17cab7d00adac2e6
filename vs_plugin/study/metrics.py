"""The optional metrics of a study (``metrics:`` in the study file), by name.

Accuracy and footprint (non-zero weights, sparsity, compression, memory) are measured for every
row. The others are registered here, each ``(config, teacher, model, example) -> measures``:

- ``macs``: multiply-accumulates and parameters of the model as deployed (a structured method's
  physically pruned model), for one sample, with torch-pruning's counter (``torch-pruning``
  extra), and the ratio against the teacher;
- ``latency``: CPU milliseconds per batch of the teacher and the model timed side by side in this
  process (median of ``latency.repeats`` interleaved rounds at ``latency.batch_sizes``, on
  ``latency.threads`` threads), and the speed-up teacher / model.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ..registry import Registry

Metric = Callable[["StudyConfig", nn.Module, nn.Module, torch.Tensor], dict]  # noqa: F821 (config type)
STUDY_METRICS: Registry[Metric] = Registry("study metric")


def _macs(config, teacher: nn.Module, model: nn.Module, example: torch.Tensor) -> dict:
    from ..integrations.torch_pruning.macs import count_macs_params  # the adapter, only when asked for

    teacher_macs, _ = count_macs_params(teacher, example)
    macs, params = count_macs_params(model, example)
    return {"macs": macs, "params": params, "macs_ratio_vs_teacher": macs / teacher_macs,
            "mac_reduction_vs_teacher": 1.0 - macs / teacher_macs}


def _latency(config, teacher: nn.Module, model: nn.Module, example: torch.Tensor) -> dict:
    from ..integrations.torch_pruning.latency import DEFAULT_BATCH_SIZES, DEFAULT_REPEATS, measure_latency

    options = config.latency
    timings = measure_latency(
        {"teacher": teacher, "student": model}, tuple(example.shape[1:]),
        tuple(options.get("batch_sizes", DEFAULT_BATCH_SIZES)), int(options.get("repeats", DEFAULT_REPEATS)),
        threads=options.get("threads"),
    )["batch_sizes"]
    return {
        "latency_ms": {batch: t["student"] for batch, t in timings.items()},
        "teacher_latency_ms": {batch: t["teacher"] for batch, t in timings.items()},
        "speedup": {batch: t["teacher"] / t["student"] for batch, t in timings.items()},
    }


STUDY_METRICS.register("macs", _macs, "macs (torch-pruning's counter, one sample)")
STUDY_METRICS.register("latency", _latency, "latency (CPU, teacher and student interleaved)")


def extra_measures(config, teacher: nn.Module, model: nn.Module, example: torch.Tensor) -> dict:
    """Every optional metric the study asks for, measured on ``model`` (eval mode)."""
    measures: dict = {}
    was_training = model.training
    model.eval()
    for name in config.metrics:
        if name in STUDY_METRICS:
            measures.update(STUDY_METRICS.get(name)(config, teacher, model, example))
    model.train(was_training)
    return measures


__all__ = ["STUDY_METRICS", "extra_measures"]
