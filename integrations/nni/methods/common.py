"""Helpers shared by the NNI-based compare methods: option checks, config_list checks, NNI evaluators."""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn
from nni.compression.base.config import default_config_schema
from nni.compression.utils.evaluator import TorchEvaluator
from schema import SchemaError

from vs_plugin.compare.config import SPARSITY_KEYS, MethodEntry, sets_sparsity
from vs_plugin.compare.method import MethodContext
from vs_plugin.training.recipes import distillation_step
from vs_plugin.errors import ConfigError

from ..config import SELECTION_KEYS, select_modules
from ..evaluator import make_torch_evaluator

def check_options(entry: MethodEntry, accepted: Sequence[str]) -> None:
    """Reject option keys a method does not know, naming the ones it does."""
    unknown = sorted(set(entry.options) - set(accepted))
    if unknown:
        listed = ", ".join(accepted) if accepted else "none"
        raise ConfigError(f"method {entry.label!r} has unknown option(s) {', '.join(unknown)}; accepted: {listed}")


def with_sparse_ratio(entry: MethodEntry, target: float) -> list[dict]:
    """The entry's config_list with ``sparse_ratio: target`` in every item."""
    config_list = entry.config_list_copy()
    for item in config_list:
        item["sparse_ratio"] = float(target)
    return config_list


def check_baseline_config_list(entry: MethodEntry) -> None:
    """A baseline's config_list: non-empty, NNI's schema, sparsity left to ``targets``."""
    if not entry.config_list:
        raise ConfigError(f"method {entry.label!r} needs a config_list naming the modules to prune, e.g. [{{op_types: [Linear]}}]")
    schema = default_config_schema("pruning")
    for index, item in enumerate(entry.config_list):
        if sets_sparsity(item):
            raise ConfigError(
                f"method {entry.label!r} config_list[{index}] sets the sparsity; in a compare config it comes from targets"
            )
        try:
            schema.validate({**item, "sparse_ratio": 0.5})
        except SchemaError as error:
            last = str(error).strip().splitlines()[-1] if str(error).strip() else "invalid"
            raise ConfigError(f"method {entry.label!r} config_list[{index}] does not follow NNI's schema: {last}") from None


def check_selects_modules(entry: MethodEntry, model: nn.Module) -> None:
    """Every config_list item must select at least one module of the student."""
    for index, item in enumerate(entry.config_list):
        selection = {k: v for k, v in item.items() if k in SELECTION_KEYS}
        modules = select_modules(model, selection, f"method {entry.label!r} config_list[{index}]")
        if not modules:
            raise ConfigError(f"method {entry.label!r} config_list[{index}] selects no module of the student ({selection})")


def distillation_evaluator(model: nn.Module, context: MethodContext) -> TorchEvaluator:
    """An NNI evaluator training ``model`` with the comparison's CE + KD loss and budget's Adam."""
    budget = context.budget
    step = distillation_step(model, context.teacher, budget.objective(), context.device)
    return make_torch_evaluator(
        model, context.train_batches, training_step=lambda batch, _model: step(batch, 0)["loss"], lr=budget.lr,
        on_epoch=context.progress.tick,
    )


def epochs_for(steps: int, steps_per_epoch: int) -> int:
    return -(-steps // steps_per_epoch)


def positive_int_option(entry: MethodEntry, key: str, default: int) -> int:
    value = entry.options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"method {entry.label!r} option {key} must be a positive integer, got {value!r}")
    return value


def number_option(entry: MethodEntry, key: str, default: float) -> float:
    value = entry.options.get(key, default)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"method {entry.label!r} option {key} must be a number, got {value!r}")
    return float(value)


__all__ = [
    "check_options", "with_sparse_ratio", "check_baseline_config_list", "check_selects_modules", "distillation_evaluator",
    "epochs_for", "positive_int_option", "number_option", "SPARSITY_KEYS",
]
