"""Knowledge distillation loss (Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", 2015)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

#: Reductions: ``batchmean`` is docs/method.md's default (per-sample KL, mean over the batch);
#: ``elementmean`` follows one published transcription of the Variational Student loss
#: (KL averaged over batch *and* classes, weighted 2 T^2 instead of T^2).
KD_REDUCTIONS = ("batchmean", "elementmean")


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float, reduction: str = "batchmean") -> Tensor:
    """Soft-target distillation loss.

    .. math::

        L_{KD} = T^2 \\cdot \\frac1B \\sum_i KL\\big(\\mathrm{softmax}(z_t^i / T)\\,\\|\\,\\mathrm{softmax}(z_s^i / T)\\big)

    With ``reduction="elementmean"`` the KL is averaged over the B x C elements and weighted 2 T^2.

    Args:
        student_logits: (B, C) logits of the student (extra dims are flattened into the batch).
        teacher_logits: (B, C) logits of the teacher; treated as constants.
        temperature: T > 0.
        reduction: one of ``KD_REDUCTIONS``.
    """
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if reduction not in KD_REDUCTIONS:
        raise ConfigError(f"kd reduction must be one of {', '.join(KD_REDUCTIONS)}, got {reduction!r}")
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ in shape"
        )
    classes = student_logits.shape[-1]
    log_p_student = F.log_softmax(student_logits.reshape(-1, classes) / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach().reshape(-1, classes) / temperature, dim=-1)
    pointwise = log_p_teacher.exp() * (log_p_teacher - log_p_student)
    if reduction == "batchmean":
        return temperature**2 * pointwise.sum() / log_p_student.shape[0]
    return 2.0 * temperature**2 * pointwise.mean()
