"""NNI 3.0's pruners as ``vs-plugin compare`` baselines: prune at the target, then fine-tune.

Each baseline prunes a copy of the starting student at the target sparsity (``sparse_ratio``
in every config_list item) with NNI's own pruner, bakes the masks into the weights, then
fine-tunes ``epochs`` epochs with the comparison's CE + KD loss, pruned weights kept at zero.
The pruners that need training to score weights train on the same CE + KD loss first:

- ``level`` (magnitude), ``l1``, ``l2``, ``fpgm``: one-shot, no training;
- ``taylor``: first-order Taylor scores collected over ``training_steps`` (default one epoch);
- ``slim``: BatchNorm scaling factors trained with an L1 penalty for ``training_steps``
  (default one epoch; ``regular_scale`` default 1); the config_list must select BatchNorm layers;
- ``movement``: movement pruning over ``pruning_epochs`` (default 1) epochs, sparsity ramped
  cubically from the first tenth to two thirds of them (``regular_scale`` default 1).

Those pruning-phase epochs come on top of the fine-tuning budget and show in the wall time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch.nn as nn
from nni.compression.pruning import FPGMPruner, L1NormPruner, L2NormPruner, LevelPruner, MovementPruner, SlimPruner, TaylorPruner

from vs_plugin.compare.config import MethodEntry
from vs_plugin.compare.method import MethodContext, MethodOutcome
from vs_plugin.errors import ConfigError

from ..masks import bake_masks
from .common import (
    check_baseline_config_list, check_options, check_selects_modules, distillation_evaluator, epochs_for, number_option,
    positive_int_option, with_sparse_ratio,
)

#: prune(model, config_list, context, entry) -> (pruner after compress(), details)
Prune = Callable[[nn.Module, list, MethodContext, MethodEntry], tuple[Any, dict]]


def _one_shot(pruner_class: type) -> Prune:
    def prune(model: nn.Module, config_list: list, context: MethodContext, entry: MethodEntry) -> tuple[Any, dict]:
        pruner = pruner_class(model, config_list)
        pruner.compress()
        return pruner, {"pruning_steps": 0}

    return prune


def _taylor(model: nn.Module, config_list: list, context: MethodContext, entry: MethodEntry) -> tuple[Any, dict]:
    steps = positive_int_option(entry, "training_steps", context.budget.steps_per_epoch)
    context.progress.add_epochs(epochs_for(steps, context.budget.steps_per_epoch))
    pruner = TaylorPruner(model, config_list, distillation_evaluator(model, context), training_steps=steps)
    pruner.compress()
    return pruner, {"pruning_steps": steps}


def _slim(model: nn.Module, config_list: list, context: MethodContext, entry: MethodEntry) -> tuple[Any, dict]:
    steps = positive_int_option(entry, "training_steps", context.budget.steps_per_epoch)
    scale = number_option(entry, "regular_scale", 1.0)
    context.progress.add_epochs(epochs_for(steps, context.budget.steps_per_epoch))
    pruner = SlimPruner(model, config_list, distillation_evaluator(model, context), training_steps=steps, regular_scale=scale)
    pruner.compress()
    return pruner, {"pruning_steps": steps}


def _movement(model: nn.Module, config_list: list, context: MethodContext, entry: MethodEntry) -> tuple[Any, dict]:
    epochs = positive_int_option(entry, "pruning_epochs", 1)
    scale = number_option(entry, "regular_scale", 1.0)
    steps = epochs * context.budget.steps_per_epoch
    warmup, cooldown = steps // 10, max(steps * 2 // 3, steps // 10 + 1)
    if cooldown > steps:
        raise ConfigError(f"method {entry.label!r}: movement pruning needs at least 2 training steps, got {steps}")
    context.progress.add_epochs(epochs)
    pruner = MovementPruner(model, config_list, distillation_evaluator(model, context), warmup_step=warmup,
                            cooldown_begin_step=cooldown, regular_scale=scale)
    pruner.compress(max_steps=steps, max_epochs=None)
    return pruner, {"pruning_steps": steps, "warmup_step": warmup, "cooldown_begin_step": cooldown}


@dataclass(frozen=True)
class NNIBaseline:
    """An NNI pruner as a compare method: ``plan`` checks the entry, ``run`` prunes and fine-tunes."""

    name: str
    prune: Prune
    options: tuple[str, ...] = ()

    def plan(self, entry: MethodEntry, default_targets: tuple[float, ...]) -> tuple[Optional[float], ...]:
        check_options(entry, self.options)
        check_baseline_config_list(entry)
        return tuple(entry.targets or default_targets)

    def check_student(self, entry: MethodEntry, student: nn.Module) -> None:
        check_selects_modules(entry, student)

    def run(self, context: MethodContext, entry: MethodEntry, target: Optional[float]) -> MethodOutcome:
        if target is None:
            raise ConfigError(f"method {entry.label!r} ({self.name}) needs a target sparsity")
        model = context.fresh_student()
        pruner, details = self.prune(model, with_sparse_ratio(entry, target), context, entry)
        masks = pruner.get_masks()
        pruner.unwrap_model()
        bake_masks(model, masks)
        context.finetune(model, masks)
        return MethodOutcome(model=model, target=target, details=details)


LEVEL = NNIBaseline("level", _one_shot(LevelPruner))
L1 = NNIBaseline("l1", _one_shot(L1NormPruner))
L2 = NNIBaseline("l2", _one_shot(L2NormPruner))
FPGM = NNIBaseline("fpgm", _one_shot(FPGMPruner))
TAYLOR = NNIBaseline("taylor", _taylor, ("training_steps",))
SLIM = NNIBaseline("slim", _slim, ("training_steps", "regular_scale"))
MOVEMENT = NNIBaseline("movement", _movement, ("pruning_epochs", "regular_scale"))

__all__ = ["NNIBaseline", "LEVEL", "L1", "L2", "FPGM", "TAYLOR", "SLIM", "MOVEMENT"]
