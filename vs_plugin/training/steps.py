"""Step functions: what one batch computes, for the teacher (CE) and the student (VS objective)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..features import FeatureTap
from ..losses.kl import KLWarmup
from ..losses.objective import VariationalStudentObjective

AutocastFactory = Callable[[], ContextManager]


class ClassifierStep:
    """Plain cross-entropy step (used to train the teacher).

    Args:
        model: the module to call (a DistributedDataParallel wrapper in distributed runs).
        device: where the batch goes.
        autocast: returns the context the forward runs in (mixed precision), or a no-op.
    """

    def __init__(self, model: nn.Module, device: torch.device, autocast: AutocastFactory = nullcontext) -> None:
        self.model = model
        self.device = device
        self.autocast = autocast

    def __call__(self, batch: tuple, global_step: int) -> dict:
        inputs, targets = batch[0].to(self.device), batch[1].to(self.device)
        with self.autocast():
            logits = self.model(inputs)
        loss = F.cross_entropy(logits.float(), targets)
        return {"loss": loss, "ce": loss.detach()}

    def close(self) -> None:
        pass


class StudentStep:
    """One Variational Student step: frozen teacher forward, student forward, every loss term.

    Args:
        student: the module to call for the student (a DDP wrapper in distributed runs); the
            objective holds the plain student for the KL and BSR terms.
        teacher: the frozen teacher, or None when no term needs it.
        objective: the VS objective.
        warmup: the KL warm-up schedule (beta per global step).
        device: where the batch goes.
        autocast: returns the context the forward passes run in; the KL and BSR terms are
            computed in fp32 by the objective whatever it is.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: Optional[nn.Module],
        objective: VariationalStudentObjective,
        warmup: KLWarmup,
        device: torch.device,
        autocast: AutocastFactory = nullcontext,
    ) -> None:
        self.student = student
        self.teacher = teacher
        self.objective = objective
        self.warmup = warmup
        self.device = device
        self.autocast = autocast
        config = objective.config
        self.needs_teacher_logits = teacher is not None and config.kd_weight > 0
        self.taps: Optional[tuple[FeatureTap, FeatureTap]] = None
        if config.lp_gamma > 0:
            plain_student = getattr(student, "module", student)
            self.taps = (FeatureTap(plain_student, config.lp_student_layer), FeatureTap(teacher, config.lp_teacher_layer))
        if teacher is not None:
            teacher.eval()

    def __call__(self, batch: tuple, global_step: int) -> dict:
        inputs, targets = batch[0].to(self.device), batch[1].to(self.device)
        # Batches may carry the teacher's outputs, computed once (see training/teacher_cache.py).
        teacher_logits = batch[2].to(self.device) if len(batch) > 2 else None
        teacher_features = batch[3].to(self.device) if len(batch) > 3 else None
        teacher_needed = self.teacher is not None and (self.needs_teacher_logits or self.taps is not None)
        run_teacher = teacher_needed and (teacher_logits is None or (self.taps is not None and teacher_features is None))
        with self.autocast():
            if run_teacher:
                with torch.no_grad():
                    teacher_logits = self.teacher(inputs)
            student_logits = self.student(inputs)
        features = {}
        if self.taps is not None:
            if run_teacher:
                teacher_features = self.taps[1].take().detach()
            features = {"student_features": self.taps[0].take(), "teacher_features": teacher_features}
        terms = self.objective(
            student_logits, teacher_logits, targets, beta=self.warmup.beta(global_step), **features
        )
        return {k: (v if k == "loss" else v.detach()) for k, v in terms.items()}

    def close(self) -> None:
        if self.taps is not None:
            for tap in self.taps:
                tap.remove()
