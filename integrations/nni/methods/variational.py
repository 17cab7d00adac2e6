"""The Variational Student as a ``vs-plugin compare`` method, through :class:`VariationalStudentPruner`.

It runs the three-phase recipe on the budget (the warm start is the starting student, already
distilled dense when the study trains one): a copy of the starting student is trained for
``1 - finetune_fraction`` of the budget's ``epochs`` through an NNI ``TorchEvaluator`` whose own
loss is the cross-entropy (the pruner adds KD + KL/N + BSR (+ LP), and with a target the KL
controller), pruned, then fine-tuned with CE + KD for the rest, pruned weights held at zero
(``finetune_fraction``, default 1/3 with a target: the recipe's 0.5 / 0.25 split of what
follows the warm start; 0 without one, as ``compress``'s recipe ``auto``: the whole budget goes
to the pruner and the threshold decides).

- Without ``targets`` it prunes by ``sparse_threshold`` (log_alpha, default 3) and the row's
  target is the sparsity it reached; with ``targets`` (its own, or the config's top-level ones when
  its config_list sets no sparsity: :mod:`vs_plugin.compare.config`) it prunes each target by
  ``sparse_ratio``.
- ``options``: loss settings (fields of :class:`vs_plugin.ObjectiveConfig`; ``kd_weight`` and
  ``temperature`` default to the comparison's), ``kl_warmup_epochs`` (default a third of the
  pruner's epochs), ``finetune_fraction``, ``kl_hold_epochs`` (0), ``variational_lr`` (None: the variational parameters share
  the student's Adam).
- log sigma^2 starts at the pruner's default (-10, raised per unit so log alpha starts at -6 or
  above), unless ``init_log_sigma2`` / ``min_init_log_alpha`` are set in the config_list's
  ``target_settings['weight']``.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch.nn as nn

from vs_plugin.compare.config import MethodEntry
from vs_plugin.compare.method import MethodContext, MethodOutcome
from vs_plugin.errors import ConfigError
from vs_plugin.losses.kl import KLWarmup
from vs_plugin.metrics.accuracy import evaluate_accuracy

from ..config import OBJECTIVE_KEYS, translate_config_list
from ..evaluator import make_torch_evaluator
from ..masks import bake_masks
from ..pruner import VariationalStudentPruner
from .common import SPARSITY_KEYS, check_options, number_option

SCHEDULE_KEYS = ("kl_warmup_epochs", "kl_hold_epochs", "variational_lr", "finetune_fraction")
DEFAULT_FINETUNE_FRACTION = 1 / 3
DEFAULT_CONFIG_LIST = ({"op_types": ["Linear", "Conv1d", "Conv2d"]},)


def _without_sparsity(item: dict) -> dict:
    item = {k: v for k, v in item.items() if k not in SPARSITY_KEYS}
    weight = (item.get("target_settings") or {}).get("weight")
    if isinstance(weight, dict):
        for key in SPARSITY_KEYS:
            weight.pop(key, None)
    return item


class VariationalStudentMethod:
    """``variational_student`` in a compare config."""

    name = "variational_student"

    def _config_list(self, entry: MethodEntry, target: Optional[float]) -> list[dict]:
        config_list = entry.config_list_copy() or [copy.deepcopy(dict(item)) for item in DEFAULT_CONFIG_LIST]
        if target is not None:
            config_list = [{**_without_sparsity(item), "sparse_ratio": float(target)} for item in config_list]
        return config_list

    def _objective(self, entry: MethodEntry, context_defaults: dict[str, Any]) -> dict[str, Any]:
        settings = {k: v for k, v in entry.options.items() if k in OBJECTIVE_KEYS}
        return {**context_defaults, **settings}

    def plan(self, entry: MethodEntry, default_targets: tuple[float, ...]) -> tuple[Optional[float], ...]:
        check_options(entry, OBJECTIVE_KEYS + SCHEDULE_KEYS)
        for key in ("kl_warmup_epochs", "kl_hold_epochs"):
            if number_option(entry, key, 0.0) < 0:
                raise ConfigError(f"method {entry.label!r} option {key} must be >= 0")
        lr = entry.options.get("variational_lr")
        if lr is not None and not number_option(entry, "variational_lr", 0.0) > 0:
            raise ConfigError(f"method {entry.label!r} option variational_lr must be > 0 or null")
        if not 0 <= number_option(entry, "finetune_fraction", DEFAULT_FINETUNE_FRACTION) < 1:
            raise ConfigError(f"method {entry.label!r} option finetune_fraction must lie in [0, 1)")
        return tuple(entry.targets) if entry.targets else (None,)

    def check_student(self, entry: MethodEntry, student: nn.Module) -> None:
        """Validate the config_list (and loss options) against the student, without changing it."""
        targets = entry.targets or (None,)
        for target in targets:
            try:
                translate_config_list(student, self._config_list(entry, target), self._objective(entry, {}))
            except ConfigError as error:
                raise ConfigError(f"method {entry.label!r} ({entry.name}): {error}") from None

    def run(self, context: MethodContext, entry: MethodEntry, target: Optional[float]) -> MethodOutcome:
        budget = context.budget
        model = context.fresh_student()
        default_fraction = DEFAULT_FINETUNE_FRACTION if target is not None else 0.0  # as compress's recipe "auto"
        requested = round(budget.epochs * number_option(entry, "finetune_fraction", default_fraction))
        variational_epochs = max(1, budget.epochs - requested)  # the pruner trains at least one epoch
        finetune_epochs = budget.epochs - variational_epochs
        steps = variational_epochs * budget.steps_per_epoch
        warmup_epochs = number_option(entry, "kl_warmup_epochs", variational_epochs / 3)
        hold_epochs = number_option(entry, "kl_hold_epochs", 0.0)
        lr = entry.options.get("variational_lr")
        evaluator = make_torch_evaluator(model, context.train_batches, lr=budget.lr, on_epoch=context.progress.tick)
        pruner = VariationalStudentPruner(
            model,
            self._config_list(entry, target),
            evaluator,
            context.teacher,
            training_steps=steps,
            num_train_samples=context.num_train_samples,
            objective=self._objective(entry, {"kd_weight": budget.kd_weight, "temperature": budget.temperature}),
            kl_warmup=KLWarmup.from_epochs(warmup_epochs, budget.steps_per_epoch, hold_epochs),
            variational_lr=None if lr is None else number_option(entry, "variational_lr", 0.0),
        )
        _, masks = pruner.compress()
        terms = {k: float(v) for k, v in (pruner.loss_patch.last_terms if pruner.loss_patch else {}).items()}
        pruner.unwrap_model()
        bake_masks(model, masks)
        details = {"training_steps": steps, "last_loss_terms": terms, "finetune_epochs": finetune_epochs}
        if finetune_epochs:
            model.eval()
            details["pruned_accuracy"] = evaluate_accuracy(model, context.test_batches, context.device)
            context.finetune(model, masks, epochs=finetune_epochs)
        model.eval()
        return MethodOutcome(model=model, target=target, details=details)


__all__ = ["VariationalStudentMethod"]
