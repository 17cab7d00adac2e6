"""torch-pruning methods for ``vs-plugin compare``, registered in pyproject.toml under the
``vs_plugin.methods`` entry-point group: ``tp-magnitude``, ``tp-taylor``, ``tp-group-norm`` and
the structured Variational Student ``vs-structured``.

A compare target is read as the fraction of the starting student's MACs to remove (0.5: half the
MACs; the model keeps ``1 - target``), so these rows sit at matched MACs. Every method spends the
comparison's epoch budget (baselines: see :mod:`.baselines`; ``vs-structured``: gate training
with pruning steps, then ``finetune_epochs`` of the budget spent fine-tuning) and returns its
pruned model written back into the starting student's shapes with zeros
(:func:`.embedding.expand_to_original`), as the comparison's contract asks; the details record
MACs and parameters of the physically pruned model.

Entry options (``options:`` of a method in the compare config):

- all: ``global_pruning`` (true), ``max_layer_ratio`` (0.9);
- ``tp-group-norm``: ``sparse_fraction`` (0.5), ``group_norm_reg`` (5e-4);
- ``tp-taylor``: ``taylor_batches`` (8);
- ``vs-structured``: ``prune_steps`` (1), ``finetune_epochs`` (0), ``gate_lr`` (10 x lr),
  ``init_log_sigma2`` (-6), ``kl_weight`` (1), ``kl_warmup_epochs`` (half the epochs).

These methods use the dependency graph, not NNI's config_list: a non-empty config_list is an error.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch

from vs_plugin.compare.config import MethodEntry
from vs_plugin.compare.method import MethodContext, MethodOutcome
from vs_plugin.errors import ConfigError
from vs_plugin.losses.objective import ObjectiveConfig
from vs_plugin.pipeline.settings import CompressSettings
from vs_plugin.pipeline.structured import train_structured

from .baselines import GROUP_NORM_REG, TAYLOR_BATCHES, run_tp_baseline
from .embedding import expand_to_original
from .macs import count_macs_params
from .structured_settings import StructuredSettings

COMMON_OPTIONS = ("global_pruning", "max_layer_ratio")
BASELINE_OPTIONS = {
    "tp-magnitude": COMMON_OPTIONS,
    "tp-taylor": COMMON_OPTIONS + ("taylor_batches",),
    "tp-group-norm": COMMON_OPTIONS + ("sparse_fraction", "group_norm_reg"),
}
STRUCTURED_OPTIONS = COMMON_OPTIONS + ("prune_steps", "finetune_epochs", "gate_lr", "init_log_sigma2", "kl_weight", "kl_warmup_epochs")


def _check_entry(entry: MethodEntry, accepted: tuple[str, ...]) -> None:
    if entry.config_list:
        raise ConfigError(f"{entry.label}: torch-pruning methods take no config_list (the dependency graph decides what is coupled)")
    unknown = sorted(set(entry.options) - set(accepted))
    if unknown:
        raise ConfigError(f"{entry.label}: unknown option(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")


def _example(context: MethodContext) -> torch.Tensor:
    inputs = next(iter(context.train_batches))[0]
    return torch.zeros_like(inputs[:1]).to(context.device)


def _details(original, pruned, example, target: float, extra: dict) -> dict:
    macs_before, params_before = count_macs_params(original, example)
    macs_after, params_after = count_macs_params(pruned, example)
    return {"target_kind": "fraction of MACs removed", "macs_before": macs_before, "macs_after": macs_after,
            "macs_ratio": macs_after / macs_before, "params_before": params_before, "params_after": params_after,
            "target_macs_ratio": 1.0 - target, **extra}


class TorchPruningMethod:
    """A torch-pruning baseline of :mod:`.baselines` as a compare method."""

    def __init__(self, name: str) -> None:
        self.name = name

    def plan(self, entry: MethodEntry, default_targets: tuple[float, ...]) -> tuple[Optional[float], ...]:
        _check_entry(entry, BASELINE_OPTIONS[self.name])
        return entry.targets or default_targets

    def run(self, context: MethodContext, entry: MethodEntry, target: Optional[float]) -> MethodOutcome:
        options: dict[str, Any] = dict(entry.options)
        student = context.fresh_student()
        original = copy.deepcopy(student)
        example = _example(context)
        budget = context.budget
        result = run_tp_baseline(
            self.name, student, context.teacher, context.train_batches, example, target_macs_ratio=1.0 - target,
            epochs=budget.epochs, lr=budget.lr, device=context.device,
            objective=ObjectiveConfig(kd_weight=budget.kd_weight, temperature=budget.temperature, kl_weight=0.0),
            global_pruning=bool(options.get("global_pruning", True)), max_layer_ratio=float(options.get("max_layer_ratio", 0.9)),
            sparse_fraction=float(options.get("sparse_fraction", 0.5)), group_norm_reg=float(options.get("group_norm_reg", GROUP_NORM_REG)),
            taylor_batches=int(options.get("taylor_batches", TAYLOR_BATCHES)), on_epoch=context.progress.tick,
            finetune_lr_schedule=budget.finetune_lr_schedule,
        )
        student.eval()
        details = _details(original, student, example, target, {"pruned_accuracy": result.pruned_accuracy, "ratio": result.ratio})
        return MethodOutcome(expand_to_original(original, student, result.plan, example), target, details, deployed=student)


class StructuredStudentMethod:
    """The structured Variational Student (:func:`vs_plugin.pipeline.structured.train_structured`) as a compare method."""

    name = "vs-structured"

    def plan(self, entry: MethodEntry, default_targets: tuple[float, ...]) -> tuple[Optional[float], ...]:
        _check_entry(entry, STRUCTURED_OPTIONS)
        finetune = entry.options.get("finetune_epochs", 0)
        if not isinstance(finetune, int) or finetune < 0:
            raise ConfigError(f"{entry.label}: finetune_epochs must be an integer >= 0, got {finetune!r}")
        return entry.targets or default_targets

    def run(self, context: MethodContext, entry: MethodEntry, target: Optional[float]) -> MethodOutcome:
        options = dict(entry.options)
        budget = context.budget
        finetune = int(options.get("finetune_epochs", 0))
        epochs = budget.epochs - finetune
        if epochs < 1:
            raise ConfigError(f"{entry.label}: finetune_epochs ({finetune}) leaves no epoch of the budget ({budget.epochs}) for training")
        settings = CompressSettings(
            epochs=epochs, lr=budget.lr, kd_weight=budget.kd_weight, temperature=budget.temperature, progress=False,
            finetune_lr_schedule=budget.finetune_lr_schedule,
            device=str(context.device.type), kl_weight=float(options.get("kl_weight", 1.0)),
            kl_warmup_epochs=float(options.get("kl_warmup_epochs", epochs / 2)),
            init_log_sigma2=options.get("init_log_sigma2"),
        )
        structured = StructuredSettings(
            prune_by="macs", target_macs=1.0 - target, prune_steps=int(options.get("prune_steps", 1)), finetune_epochs=finetune,
            global_pruning=bool(options.get("global_pruning", True)), max_layer_ratio=float(options.get("max_layer_ratio", 0.9)),
            gate_lr=options.get("gate_lr"),
        )
        student = context.fresh_student()
        original = copy.deepcopy(student)
        example = _example(context)
        outcome = train_structured(
            student, context.teacher, context.train_batches, context.test_batches, example, num_train_samples=context.num_train_samples,
            settings=settings, structured=structured, from_teacher=False, device=context.device, log=lambda message: None,
            on_epoch=context.progress.tick,
        )
        details = _details(original, outcome.student, example, target, {"pruned_accuracy": outcome.extra["pruned_accuracy"]})
        return MethodOutcome(expand_to_original(original, outcome.student, outcome.plan, example), target, details, deployed=outcome.student)


TP_MAGNITUDE = TorchPruningMethod("tp-magnitude")
TP_TAYLOR = TorchPruningMethod("tp-taylor")
TP_GROUP_NORM = TorchPruningMethod("tp-group-norm")
VS_STRUCTURED = StructuredStudentMethod()

__all__ = ["TorchPruningMethod", "StructuredStudentMethod", "TP_MAGNITUDE", "TP_TAYLOR", "TP_GROUP_NORM", "VS_STRUCTURED"]
