"""Step functions: what one batch computes, for the teacher (CE) and the student (VS objective)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..features import FeatureTap
from ..losses.kl import KLWarmup
from ..losses.objective import VariationalStudentObjective


class ClassifierStep:
    """Plain cross-entropy step (used to train the teacher)."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model = model
        self.device = device

    def __call__(self, batch: tuple, global_step: int) -> dict:
        inputs, targets = batch[0].to(self.device), batch[1].to(self.device)
        loss = F.cross_entropy(self.model(inputs), targets)
        return {"loss": loss, "ce": loss.detach()}

    def close(self) -> None:
        pass


class StudentStep:
    """One Variational Student step: frozen teacher forward, student forward, every loss term."""

    def __init__(
        self,
        student: nn.Module,
        teacher: Optional[nn.Module],
        objective: VariationalStudentObjective,
        warmup: KLWarmup,
        device: torch.device,
    ) -> None:
        self.student = student
        self.teacher = teacher
        self.objective = objective
        self.warmup = warmup
        self.device = device
        config = objective.config
        self.needs_teacher_logits = teacher is not None and config.kd_weight > 0
        self.taps: Optional[tuple[FeatureTap, FeatureTap]] = None
        if config.lp_gamma > 0:
            self.taps = (FeatureTap(student, config.lp_student_layer), FeatureTap(teacher, config.lp_teacher_layer))
        if teacher is not None:
            teacher.eval()

    def __call__(self, batch: tuple, global_step: int) -> dict:
        inputs, targets = batch[0].to(self.device), batch[1].to(self.device)
        teacher_logits = None
        if self.teacher is not None and (self.needs_teacher_logits or self.taps is not None):
            with torch.no_grad():
                teacher_logits = self.teacher(inputs)
        student_logits = self.student(inputs)
        features = {}
        if self.taps is not None:
            features = {"student_features": self.taps[0].take(), "teacher_features": self.taps[1].take().detach()}
        terms = self.objective(
            student_logits, teacher_logits, targets, beta=self.warmup.beta(global_step), **features
        )
        return {k: (v if k == "loss" else v.detach()) for k, v in terms.items()}

    def close(self) -> None:
        if self.taps is not None:
            for tap in self.taps:
                tap.remove()
