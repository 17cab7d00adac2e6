"""The comparison's names for the core recipes (:mod:`vs_plugin.training.recipes`).

The teacher trains with cross-entropy; the dense student and every baseline's fine-tuning with
CE + KD, i.e. the core objective with the KL, BSR and LP terms off; pruned weights stay zero.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..losses.objective import ObjectiveConfig
from ..training import recipes
from ..training.fit import each_epoch
from ..training.steps import StudentStep

#: Called after every training epoch (progress bars).
EpochCallback = Callable[[], None]


def train_classifier(
    model: nn.Module, batches: Iterable, epochs: int, lr: float, device: torch.device,
    phase: str = "teacher", on_epoch: Optional[EpochCallback] = None,
) -> None:
    """Cross-entropy training with Adam (the teacher)."""
    recipes.train_classifier(model, batches, epochs=epochs, lr=lr, device=device, phase=phase, after_epoch=each_epoch(on_epoch))


def distillation_step(
    student: nn.Module, teacher: nn.Module, kd_weight: float, temperature: float, num_train_samples: int, device: torch.device
) -> StudentStep:
    """A CE + KD step: the core objective with the KL, BSR and LP terms switched off."""
    return recipes.distillation_step(student, teacher, ObjectiveConfig(kd_weight=kd_weight, temperature=temperature), device)


def distil(
    student: nn.Module, teacher: nn.Module, batches: Iterable, *, epochs: int, lr: float, kd_weight: float, temperature: float,
    num_train_samples: int, device: torch.device, masks: Optional[Mapping[str, Mapping[str, Tensor]]] = None,
    phase: str = "fine-tune", on_epoch: Optional[EpochCallback] = None,
) -> None:
    """Train ``student`` with CE + KD for ``epochs`` epochs; pruned weights (``masks``) stay zero."""
    recipes.distill(student, teacher, batches, epochs=epochs, lr=lr, objective=ObjectiveConfig(kd_weight=kd_weight, temperature=temperature),
                    device=device, masks=masks, phase=phase, after_epoch=each_epoch(on_epoch))


__all__ = ["train_classifier", "distillation_step", "distil", "EpochCallback"]
