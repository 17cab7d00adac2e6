"""The two recipes every method shares, on the one loop (:func:`.fit.fit`).

- :func:`train_classifier`: cross-entropy training with Adam (every teacher of vs-plugin);
- :func:`distill`: CE + KD (+ LP) training of a plain student: the core objective with its KL
  and BSR terms off (a plain model has no posterior), so every method's fine-tuning is the
  Variational Student's own data terms, term for term. Pruned weights (``masks``) stay at zero:
  their gradients are zeroed before each Adam step and the weights re-masked after it.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from typing import Any, Iterable, Mapping, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..losses.kl import KLWarmup
from ..losses.objective import ObjectiveConfig, VariationalStudentObjective
from ..metrics.accuracy import evaluate_accuracy
from ..pruning.masking import MaskKeeper
from .fit import Fit, fit
from .optim import adam, lr_schedule_hooks
from .steps import AutocastFactory, ClassifierStep, StudentStep


def accuracy_hook(model: nn.Module, batches: Iterable, device: torch.device):
    """An ``evaluate`` hook for :func:`.fit.fit`: ``{"test_accuracy": top-1 on batches}``."""
    return lambda: {"test_accuracy": evaluate_accuracy(model, batches, device)}


def distillation_step(
    student: nn.Module, teacher: Optional[nn.Module], objective: ObjectiveConfig, device: torch.device,
    forward: Optional[nn.Module] = None, autocast: AutocastFactory = nullcontext,
) -> StudentStep:
    """A CE + KD (+ LP) step: the core objective with the KL and BSR terms switched off.

    ``forward``: the module to call for the student (a DDP wrapper), default ``student``.
    """
    config = dataclasses.replace(objective, kl_weight=0.0, bsr_weight=0.0)
    partner = teacher if config.uses_teacher else None
    loss = VariationalStudentObjective(student, partner, config, num_train_samples=1).to(device)
    return StudentStep(forward or student, partner, loss, KLWarmup(end_step=0), device, autocast)


def train_classifier(
    model: nn.Module, batches: Iterable, *, epochs: int, lr: float, device: torch.device, phase: str = "teacher",
    optimizer_state: Optional[dict] = None, forward: Optional[nn.Module] = None, autocast: AutocastFactory = nullcontext,
    lr_schedule: str = "constant", **loop: Any,
) -> Fit:
    """Cross-entropy training with Adam (``lr``) for ``epochs`` epochs; the model is left in eval mode.

    Args:
        lr_schedule: ``constant`` or ``cosine`` (per epoch, :func:`.optim.scheduled_lr`); a resumed
            run continues the schedule at ``start_epoch``.
        optimizer_state: the optimizer's state to resume from (with ``start_epoch`` in ``loop``).
        forward: the module to call (a DDP wrapper), default ``model``.
        autocast: the mixed-precision context of the forward pass.
        loop: passed to :func:`.fit.fit` (``start_epoch``, ``history``, ``evaluate``, hooks, ...).
    """
    optimizer = adam(model.parameters(), lr=lr)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    loop["measure"] = [*lr_schedule_hooks(optimizer, lr, lr_schedule, epochs, start_epoch=loop.get("start_epoch", 0)),
                       *loop.get("measure", ())]
    state = fit(model, optimizer, batches, ClassifierStep(forward or model, device, autocast), epochs=epochs, phase=phase, **loop)
    model.eval()
    return state


def mask_keeper(model: nn.Module, masks: Mapping[str, Mapping[str, Tensor]]) -> MaskKeeper:
    """A :class:`MaskKeeper` for NNI-style ``{module: {parameter: 0/1 mask}}`` masks."""
    keeper = MaskKeeper()
    for module_name, targets in masks.items():
        module = model.get_submodule(module_name)
        for target, mask in targets.items():
            param = getattr(module, target, None)
            if mask is not None and isinstance(param, nn.Parameter):
                keeper.add(param, mask.expand_as(param) != 0)
    return keeper


def distill(
    student: nn.Module, teacher: Optional[nn.Module], batches: Iterable, *, epochs: int, lr: float, objective: ObjectiveConfig,
    device: torch.device, masks: Optional[Mapping[str, Mapping[str, Tensor]]] = None, phase: str = "finetune",
    optimizer_state: Optional[dict] = None, lr_schedule: str = "constant", **loop: Any,
) -> Fit:
    """Train ``student`` with Adam on the objective's data terms (CE, KD, LP) for ``epochs`` epochs.

    Args:
        student / teacher: the models (the teacher is only run, never trained; None when the
            objective needs none).
        objective: loss weights; its KL and BSR weights are ignored.
        masks: NNI-style masks of pruned weights, kept at zero throughout.
        optimizer_state: the optimizer's state to resume from (with ``start_epoch`` in ``loop``).
        lr_schedule: ``constant`` or ``cosine`` (per epoch over ``epochs``, :func:`.optim.scheduled_lr`).
        loop: passed to :func:`.fit.fit` (``evaluate``, ``after_backward``, hooks, ``log``, ...).
    """
    keeper = mask_keeper(student, masks or {})
    keeper.apply()
    optimizer = adam(student.parameters(), lr=lr)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    loop["measure"] = [*lr_schedule_hooks(optimizer, lr, lr_schedule, epochs, start_epoch=loop.get("start_epoch", 0)),
                       *loop.get("measure", ())]
    keeper.attach(optimizer)
    step = distillation_step(student, teacher, objective, device)
    try:
        state = fit(student, optimizer, batches, step, epochs=epochs, phase=phase, **loop)
    finally:
        step.close()
        keeper.detach()
    student.eval()
    return state


__all__ = ["accuracy_hook", "distillation_step", "train_classifier", "mask_keeper", "distill"]
