"""The Variational Student's loss terms added to the user's loss through NNI's ``patch_loss``.

NNI calls ``patch(original_loss, batch)`` after the user's ``training_step``. The user's loss
plays the role of the cross-entropy term; the core's objective adds the rest:

.. math::

    L = w_{CE}\\,L_{user} + \\lambda_T T^2 KD + \\lambda_V \\beta(step) \\frac{KL}{N} + \\lambda_g BSR + \\gamma L_{LP}

(w_CE = 1, or 1 - lambda_T with ``ce_weighting="complement"``). The student's logits are the
output of the model's last forward (recorded by a hook), the teacher's come from
``teacher_predict(batch, teacher)``, the labels from ``batch_targets(batch)``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn as nn
from torch import Tensor

from vs_plugin.errors import ConfigError
from vs_plugin.features import FeatureTap
from vs_plugin.losses.kl import KLWarmup
from vs_plugin.losses.objective import VariationalStudentObjective

TeacherPredict = Callable[[Any, nn.Module], Tensor]
BatchTargets = Callable[[Any], Tensor]


def default_teacher_predict(batch: Any, teacher: nn.Module) -> Tensor:
    """Teacher logits for ``(inputs, labels, ...)`` batches or a bare input tensor."""
    inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(inputs, Tensor):
        raise ConfigError(
            f"cannot find the inputs in a batch of type {type(batch).__name__}; pass teacher_predict=(batch, teacher) -> logits"
        )
    device = next(teacher.parameters()).device
    return teacher(inputs.to(device))


def default_batch_targets(batch: Any) -> Tensor:
    """Class labels of ``(inputs, labels, ...)`` batches."""
    if isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[1], Tensor):
        return batch[1]
    raise ConfigError(
        f"cannot find the labels in a batch of type {type(batch).__name__}; pass batch_targets=(batch) -> labels"
    )


class VariationalLossPatch:
    """Callable ``(original_loss, batch) -> loss`` for ``evaluator.patch_loss``.

    Args:
        student: the bound (wrapped) student; its output is recorded by a forward hook.
        teacher: the frozen teacher, or None when the objective needs none.
        objective: the core objective over the student's variational layers.
        warmup: KL warm-up schedule; ``step()`` returns the current optimizer step.
        step: returns the number of optimizer steps taken so far.
        teacher_predict / batch_targets: how to get teacher logits and labels from a batch.

    ``last_terms`` holds the detached terms of the latest call (``loss`` is the patched total).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: Optional[nn.Module],
        objective: VariationalStudentObjective,
        warmup: KLWarmup,
        step: Callable[[], int],
        teacher_predict: TeacherPredict,
        batch_targets: BatchTargets,
    ) -> None:
        self.teacher = teacher
        self.objective = objective
        self.warmup = warmup
        self.step = step
        self.teacher_predict = teacher_predict
        self.batch_targets = batch_targets
        self.last_terms: dict[str, Tensor] = {}
        config = objective.config
        self._logits = FeatureTap(student, "")  # output of the whole model: the logits
        self._features: Optional[tuple[FeatureTap, FeatureTap]] = None
        if config.lp_gamma > 0:
            self._features = (FeatureTap(student, config.lp_student_layer), FeatureTap(teacher, config.lp_teacher_layer))

    def __call__(self, original_loss: Tensor, batch: Any) -> Tensor:
        config = self.objective.config
        try:
            student_logits = self._logits.take()
        except RuntimeError:
            raise ConfigError("the training step returned a loss without calling the model; the student's logits are needed") from None
        if not isinstance(student_logits, Tensor):
            raise ConfigError(f"the model must return a logits tensor, got {type(student_logits).__name__}")
        teacher_logits = None
        if self.teacher is not None and (config.kd_weight > 0 or config.lp_gamma > 0):
            with torch.no_grad():
                teacher_logits = self.teacher_predict(batch, self.teacher)
            teacher_logits = teacher_logits.to(student_logits.device)
        features = {}
        if self._features is not None:
            features = {"student_features": self._features[0].take(), "teacher_features": self._features[1].take().detach()}
        targets = self.batch_targets(batch).to(student_logits.device)
        terms = self.objective(student_logits, teacher_logits, targets, beta=self.warmup.beta(self.step()), **features)
        ce_weight = config.ce_weight
        # The objective's own CE is on the same logits and labels; the user's loss replaces it.
        loss = ce_weight * original_loss + (terms["loss"] - ce_weight * terms["ce"])
        self.last_terms = {**{k: v.detach() for k, v in terms.items()}, "loss": loss.detach(), "user_loss": original_loss.detach()}
        return loss

    def remove(self) -> None:
        """Take the forward hooks off the student and teacher."""
        self._logits.remove()
        if self._features is not None:
            for tap in self._features:
                tap.remove()


__all__ = ["VariationalLossPatch", "default_teacher_predict", "default_batch_targets", "TeacherPredict", "BatchTargets"]
