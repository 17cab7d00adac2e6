"""Gradual magnitude pruning with KD: the strongest simple baseline, with no NNI needed.

Zhu & Gupta 2017 ("To prune, or not to prune"): train with the comparison's CE + KD loss for the
whole budget; every ``prune_every_steps`` steps during the first ``ramp_fraction`` of it, prune
the smallest-magnitude weights to the cubic schedule's sparsity (:func:`vs_plugin.pruning.cubic_sparsity`),
then keep training the survivors with the target reached. Weights are ranked by |w| over all the
selected layers at once, each layer keeping at least ``floor`` of its weights: the same ranking
and floor the Variational Student's target uses (:func:`vs_plugin.pruning.global_keep_masks`), so
both land on exactly the same number of weights.

Budget: ``epochs`` epochs in total, the same as the Variational Student's (no separate fine-tune).
With the budget's ``finetune_lr_schedule: cosine`` the rate anneals over the epochs after the
last pruning step (the part of the budget that is a fine-tune of the final mask).

config_list: items with ``op_types`` (e.g. ``[Linear, Conv2d]``), ``op_names`` and/or
``exclude_op_names``; the sparsity comes from the comparison's ``targets``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch.nn as nn

from ..errors import ConfigError
from ..pruning import DEFAULT_LAYER_FLOOR, MaskKeeper, apply_keep_masks, cubic_sparsity, global_keep_masks, magnitude_scores
from ..training.fit import each_epoch, fit
from ..training.optim import adam, lr_schedule_hooks
from .config import MethodEntry
from .method import MethodContext, MethodOutcome
from ..training.recipes import distillation_step

SELECTION = ("op_types", "op_names", "exclude_op_names")
OPTIONS = ("ramp_fraction", "prune_every_steps", "floor")


def selected_layers(model: nn.Module, entry: MethodEntry) -> tuple[str, ...]:
    """Names of the modules with a weight that some config_list item selects (and none excludes)."""
    chosen: list[str] = []
    for index, item in enumerate(entry.config_list):
        unknown = sorted(set(item) - set(SELECTION))
        if unknown:
            raise ConfigError(
                f"method {entry.label!r} config_list[{index}] has unknown key(s) {', '.join(unknown)}; accepted: "
                f"{', '.join(SELECTION)} (the sparsity comes from targets)"
            )
        types, names, excluded = (set(item.get(k) or ()) for k in SELECTION)
        for name, module in model.named_modules():
            if getattr(module, "weight", None) is None or name in excluded or name in chosen:
                continue
            if (not types or type(module).__name__ in types) and (not names or name in names):
                chosen.append(name)
    return tuple(chosen)


class GradualMagnitudeMethod:
    """``gradual_magnitude``: cubic-schedule magnitude pruning during CE + KD training."""

    def plan(self, entry: MethodEntry, default_targets: tuple[float, ...]) -> tuple[Optional[float], ...]:
        unknown = sorted(set(entry.options) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"method {entry.label!r} has unknown option(s) {', '.join(unknown)}; accepted: {', '.join(OPTIONS)}")
        ramp = entry.options.get("ramp_fraction", 2 / 3)
        if isinstance(ramp, bool) or not isinstance(ramp, (int, float)) or not 0 < ramp <= 1:
            raise ConfigError(f"method {entry.label!r} option ramp_fraction must lie in (0, 1], got {ramp!r}")
        every = entry.options.get("prune_every_steps", 1)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"method {entry.label!r} option prune_every_steps must be a positive integer, got {every!r}")
        floor = entry.options.get("floor", DEFAULT_LAYER_FLOOR)
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 <= floor < 1:
            raise ConfigError(f"method {entry.label!r} option floor must lie in [0, 1), got {floor!r}")
        if not entry.config_list:
            raise ConfigError(f"method {entry.label!r} needs a config_list naming the layers to prune, e.g. [{{op_types: [Linear]}}]")
        return tuple(entry.targets or default_targets)

    def check_student(self, entry: MethodEntry, student: nn.Module) -> None:
        if not selected_layers(student, entry):
            raise ConfigError(f"method {entry.label!r}: the config_list selects no layer of the student")

    def run(self, context: MethodContext, entry: MethodEntry, target: Optional[float]) -> MethodOutcome:
        if target is None:
            raise ConfigError(f"method {entry.label!r} (gradual_magnitude) needs a target sparsity")
        budget = context.budget
        model = context.fresh_student()
        layers = selected_layers(model, entry)
        total_steps = budget.epochs * budget.steps_per_epoch
        ramp_steps = max(1, round(entry.options.get("ramp_fraction", 2 / 3) * total_steps))
        every = entry.options.get("prune_every_steps", 1)
        floor = entry.options.get("floor", DEFAULT_LAYER_FLOOR)
        optimizer = adam(model.parameters(), lr=budget.lr)
        # the rate anneals (finetune_lr_schedule) from the first epoch after the last pruning step
        anneal_from = math.ceil(ramp_steps / budget.steps_per_epoch)
        lr_hooks = lr_schedule_hooks(optimizer, budget.lr, budget.finetune_lr_schedule, budget.epochs, anneal_from=anneal_from)
        inner = distillation_step(model, context.teacher, budget.objective(), context.device)
        state: dict = {"keeper": MaskKeeper(), "updates": 0}

        def prune_then_step(batch: tuple, global_step: int) -> dict:
            done = global_step + 1  # steps finished once this one is taken
            if done <= ramp_steps and (done % every == 0 or done == ramp_steps):
                state["keeper"].detach()
                masks = global_keep_masks(magnitude_scores(model, layers), cubic_sparsity(done, ramp_steps, target), floor)
                state["keeper"] = apply_keep_masks(model, masks).attach(optimizer)
                state["updates"] += 1
            return inner(batch, global_step)

        try:
            fit(model, optimizer, context.distill_batches(), prune_then_step, epochs=budget.epochs, phase=entry.label,
                measure=lr_hooks, after_epoch=each_epoch(context.progress.tick))
        finally:
            inner.close()
            state["keeper"].detach()
        model.eval()
        return MethodOutcome(model=model, target=target, details={"mask_updates": state["updates"], "ramp_steps": ramp_steps})


__all__ = ["GradualMagnitudeMethod", "selected_layers"]
