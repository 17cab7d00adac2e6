"""The torch-pruning side of the structured Variational Student: "remove channels at these epochs".

The core (:mod:`vs_plugin.pipeline.structured`) trains the channel-gated student on its one loop
with the core objective; this hook gates the student, hands the core its objective and optimizer
parameter groups, and after each scheduled epoch removes channels through torch-pruning's
dependency graph (:class:`.pruner.VariationalStudentPruner`), records what it removed and
replaces the optimizer (the pruned parameters are new tensors). It also saves and replays the
pruning steps for checkpoints (:mod:`.structured_resume`).
"""

from __future__ import annotations

import copy
from typing import Iterable

import torch
import torch.nn as nn

from vs_plugin.layers.channel import ChannelGateLayer
from vs_plugin.losses.kl import KLWarmup
from vs_plugin.losses.objective import VariationalStudentObjective
from vs_plugin.metrics.accuracy import evaluate_accuracy
from vs_plugin.pipeline.settings import CompressSettings
from vs_plugin.training.fit import Fit
from vs_plugin.training.loop import EpochRecord
from vs_plugin.training.optim import adam

from .plan import PlanItem, zero_shifts
from .pruner import VariationalStudentPruner
from .structured_resume import restore_pruner, steps_to_json
from .structured_settings import GATE_LR_FACTOR, STRUCTURED_INIT_LOG_SIGMA2, StructuredSettings, prune_epochs


class ChannelPruning:
    """Gates ``student`` (in place) and prunes its channels at the scheduled epochs.

    Args:
        student / teacher: the dense student (on its device) and the trained teacher.
        example_inputs: a batch of one on the student's device.
        num_train_samples: N of the KL/N term.
        settings / structured: the run's settings.
        from_teacher: the student starts from the teacher's weights (sets the default gate init).
        steps_per_epoch: for the KL warm-up.
        test_loader / device: where the accuracies at pruning time are measured.
    """

    def __init__(
        self, student: nn.Module, teacher: nn.Module, example_inputs: torch.Tensor, *, num_train_samples: int,
        settings: CompressSettings, structured: StructuredSettings, from_teacher: bool, steps_per_epoch: int,
        test_loader: Iterable, device: torch.device,
    ) -> None:
        self.settings, self.structured = settings, structured
        self.schedule = prune_epochs(settings.epochs, structured.prune_steps)
        init = settings.init_log_sigma2 if settings.init_log_sigma2 is not None else STRUCTURED_INIT_LOG_SIGMA2
        self.warmup = KLWarmup.from_epochs(settings.kl_warmup_epochs, steps_per_epoch, settings.kl_hold_epochs)
        self.pruner = VariationalStudentPruner(
            student, example_inputs, num_train_samples=num_train_samples, teacher=teacher, objective=settings.variational_objective_config(),
            warmup=self.warmup, prune=structured.prune_config(settings.threshold),
            variational=settings.replace(init_log_sigma2=init).variational_config(student_from_teacher=from_teacher),
        )
        self.gate_lr = structured.gate_lr if structured.gate_lr is not None else GATE_LR_FACTOR * settings.lr
        self.test_loader, self.device = test_loader, device
        self.extra: dict = {"prune_by": structured.prune_by,
                            "target_macs_ratio": structured.target_macs if structured.prune_by == "macs" else None,
                            "gate_init_log_sigma2": init, "gate_lr": self.gate_lr, "steps": []}

    @property
    def objective(self) -> VariationalStudentObjective:
        """The core objective of the gated student (data terms, KL and BSR)."""
        return self.pruner.variational_objective

    @property
    def plan(self) -> list[PlanItem]:
        return list(self.pruner.history)

    def optimizer(self) -> torch.optim.Optimizer:
        """Adam over the student's current parameters, the gates at ``gate_lr``."""
        return adam(self.pruner.parameter_groups(self.settings.lr, self.gate_lr), lr=self.settings.lr)

    def measure(self, fit: Fit, record: EpochRecord) -> None:
        """A ``measure`` hook of the core loop: gates at the threshold; pruning at the scheduled epochs."""
        record.extra["gates_at_threshold"] = _gates_pruned_fraction(fit.model)
        if fit.epoch not in self.schedule:
            return
        last = fit.epoch == self.schedule[-1]
        reference = copy.deepcopy(fit.model) if last and self.structured.prune_by == "threshold" else None
        if last:
            self.extra["masked_accuracy"] = record.extra["test_accuracy"]
        self.pruner.step()
        done = self.pruner.steps[-1]
        if reference is not None:
            zero_shifts(reference, done.removed)
            self.extra["reference_accuracy"] = evaluate_accuracy(reference, self.test_loader, self.device)
        self.extra["steps"].append({"epoch": fit.epoch, "macs_before": done.macs_before, "macs_after": done.macs_after,
                                    "plan_items": len(done.plan), "channels_removed": sum(len(v) for v in done.removed.values())})
        record.extra["macs_ratio"] = done.macs_after / self.pruner.initial_macs
        fit.optimizer = self.optimizer()

    def state(self) -> dict:
        """What a checkpoint needs to rebuild the student as pruned so far."""
        return {"steps": steps_to_json(self.pruner.steps), "regularize_calls": self.pruner.regularize_calls, "extra": self.extra}

    def restore(self, checkpoint: dict) -> None:
        """Replay the checkpoint's pruning steps on the freshly gated student."""
        restore_pruner(self.pruner, checkpoint["steps"], int(checkpoint["regularize_calls"]))
        self.extra = dict(checkpoint["extra"])


def _gates_pruned_fraction(model: nn.Module) -> float:
    gates = [layer.log_alpha() >= layer.threshold for layer in model.modules() if isinstance(layer, ChannelGateLayer)]
    if not gates:
        return 0.0
    return float(torch.cat([g.flatten() for g in gates]).float().mean())



__all__ = ["ChannelPruning"]
