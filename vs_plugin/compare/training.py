"""Training shared by every method of a comparison, on the core's epoch loop and steps.

- the teacher: cross-entropy (:class:`vs_plugin.training.steps.ClassifierStep`);
- the dense student, and every baseline's fine-tuning: CE + KD, i.e. the core objective with
  the KL, BSR and LP terms off (:class:`vs_plugin.training.steps.StudentStep`), so the loss is
  the Variational Student's own CE + KD term for term;
- fine-tuning keeps pruned weights at exactly zero: their gradients are zeroed before each Adam
  step (Adam without weight decay then never moves them) and the masks are re-applied after
  every epoch.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..losses.kl import KLWarmup
from ..losses.objective import ObjectiveConfig, VariationalStudentObjective
from ..training.loop import train_one_epoch
from ..training.steps import ClassifierStep, StudentStep
from ..training.optim import adam

#: Called after every training epoch (progress bars).
EpochCallback = Callable[[], None]


def train_classifier(
    model: nn.Module, batches: Iterable, epochs: int, lr: float, device: torch.device,
    phase: str = "teacher", on_epoch: Optional[EpochCallback] = None,
) -> None:
    """Cross-entropy training with Adam (the teacher)."""
    optimizer = adam(model.parameters(), lr=lr)
    step = ClassifierStep(model, device)
    for epoch in range(epochs):
        train_one_epoch(model, optimizer, batches, step, epoch=epoch, first_global_step=epoch * len(batches),
                        phase=phase, progress=False, total_epochs=epochs)
        if on_epoch is not None:
            on_epoch()
    model.eval()


def distillation_step(
    student: nn.Module, teacher: nn.Module, kd_weight: float, temperature: float, num_train_samples: int, device: torch.device
) -> StudentStep:
    """A CE + KD step: the core objective with the KL, BSR and LP terms switched off."""
    config = ObjectiveConfig(kd_weight=kd_weight, temperature=temperature, kl_weight=0.0)
    teacher_or_none = teacher if config.uses_teacher else None
    objective = VariationalStudentObjective(student, teacher_or_none, config, num_train_samples=num_train_samples).to(device)
    return StudentStep(student, teacher_or_none, objective, KLWarmup(end_step=0), device)


def _parameter_masks(model: nn.Module, masks: Mapping[str, Mapping[str, Tensor]]) -> list[tuple[nn.Parameter, Tensor]]:
    """(parameter, 0/1 mask) pairs for NNI-style ``{module: {target: mask}}`` masks."""
    pairs = []
    for module_name, targets in masks.items():
        module = model.get_submodule(module_name)
        for target, mask in targets.items():
            param = getattr(module, target, None)
            if mask is not None and isinstance(param, nn.Parameter):
                pairs.append((param, mask.to(device=param.device, dtype=param.dtype)))
    return pairs


def distil(
    student: nn.Module,
    teacher: nn.Module,
    batches: Iterable,
    *,
    epochs: int,
    lr: float,
    kd_weight: float,
    temperature: float,
    num_train_samples: int,
    device: torch.device,
    masks: Optional[Mapping[str, Mapping[str, Tensor]]] = None,
    phase: str = "fine-tune",
    on_epoch: Optional[EpochCallback] = None,
) -> None:
    """Train ``student`` with CE + KD for ``epochs`` epochs; pruned weights (``masks``) stay zero."""
    pairs = _parameter_masks(student, masks or {})

    def apply_masks() -> None:
        with torch.no_grad():
            for param, mask in pairs:
                param.mul_(mask)

    def zero_pruned_gradients() -> None:
        for param, mask in pairs:
            if param.grad is not None:
                param.grad.mul_(mask)

    apply_masks()
    optimizer = adam(student.parameters(), lr=lr)
    step = distillation_step(student, teacher, kd_weight, temperature, num_train_samples, device)
    try:
        for epoch in range(epochs):
            train_one_epoch(
                student, optimizer, batches, step, epoch=epoch, first_global_step=epoch * len(batches), phase=phase,
                progress=False, total_epochs=epochs, after_backward=zero_pruned_gradients if pairs else None,
            )
            apply_masks()
            if on_epoch is not None:
                on_epoch()
    finally:
        step.close()
    student.eval()


__all__ = ["train_classifier", "distillation_step", "distil", "EpochCallback"]
