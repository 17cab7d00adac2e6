"""Where NNI 3.0 needs care, handled locally (nothing of NNI is patched globally).

- NNI looks up how to wrap a module by its class name in ``PruningSetting.registry``; the
  variational classes (``VariationalLinear``, ``GatedConv2d``...) are registered with NNI's own
  ``PruningSetting.register`` (the extension point its error message names), with the same
  settings NNI uses for the plain layer, when a pruner is first built.
- ``LightningEvaluator.train`` fails with Lightning 2.x (NNI 3.0 assigns the read-only
  ``Trainer.max_steps``), so this pruner refuses it with a message to use ``TorchEvaluator``.
- Evaluators record the optimizer's parameters by name from the "pure" model the first time a
  compressor sees them; :func:`record_optimizer_parameters` does it before the layers are made
  variational, so the traced optimizer keeps training theta and the biases.
- NNI selects modules for ``op_types`` by their class name (``type(module).__name__``), so a
  distiller fused after this pruner with ``op_types: ['Linear']`` would miss the layers it made
  variational; :func:`expand_op_types` adds the variational class names beside the plain ones.
- ``Evaluator.patch_optim_param_group`` fails with an ``IndexError`` on a model with a top-level
  parameter (ViT's ``cls_token``, ``pos_embed``: NNI takes the module prefix of every parameter
  name); :func:`join_param_groups` places the variational parameters as NNI means to (in the
  param group holding their layer's weight, else the first optimizer's first group) by identity.
"""

from __future__ import annotations

from typing import Any, Mapping, MutableSequence, Sequence

import torch.nn as nn
from torch.optim import Optimizer
from nni.compression.base.setting import PruningSetting
from nni.compression.utils.evaluator import Evaluator, LightningEvaluator

from vs_plugin.errors import ConfigError
from vs_plugin.layers.base import VariationalLayer
from vs_plugin.layers.registry import GRANULARITIES, layer_kind, layer_kind_names


def register_variational_settings() -> None:
    """Tell NNI how to wrap every variational layer class: like the plain layer it replaces."""
    for kind_name in layer_kind_names():
        kind = layer_kind(kind_name)
        plain_setting = PruningSetting.registry.get(kind.plain.__name__, PruningSetting.default_setting)
        for granularity in GRANULARITIES:
            cls = kind.variational_type(granularity)
            for variant in (cls, *cls.__subclasses__()):  # the depthwise gated convolutions too
                if variant.__name__ not in PruningSetting.registry:
                    PruningSetting.register(variant.__name__, plain_setting)


def check_evaluator(evaluator: object) -> Evaluator:
    """The evaluator, if this pruner can train through it; a clear error otherwise."""
    if evaluator is None:
        raise ConfigError("VariationalStudentPruner trains the student: pass an evaluator (nni.compression.TorchEvaluator)")
    if isinstance(evaluator, LightningEvaluator):
        raise ConfigError(
            "LightningEvaluator does not work with NNI 3.0 and Lightning 2.x (NNI sets the read-only Trainer.max_steps); "
            "use nni.compression.TorchEvaluator with your training loop instead"
        )
    if not isinstance(evaluator, Evaluator):
        raise ConfigError(f"evaluator must be an NNI Evaluator (e.g. TorchEvaluator), got {type(evaluator).__name__}")
    return evaluator


def record_optimizer_parameters(evaluator: Evaluator, model: nn.Module) -> None:
    """Let the evaluator record its optimizers' parameters by name on ``model`` (once)."""
    if not evaluator._initialization_complete:
        evaluator._init_optimizer_helpers(model)


def join_param_groups(
    optimizers: Sequence[Optimizer], layers: Mapping[nn.Module, Sequence[nn.Parameter]]
) -> None:
    """Add each layer's new parameters to the user's optimizer, to the param group that holds the
    layer's other parameters (its ``weight``, which NNI's wrapper holds while wrapped: pass the
    wrapper as the layer), so they share its learning rate and schedule, or else to the first
    optimizer's first group (NNI's ``patch_optim_param_group`` rule, without its parsing of
    parameter names)."""
    if not optimizers:
        raise ConfigError("the evaluator has no optimizer to add the variational parameters to; pass variational_lr=...")
    for layer, params in layers.items():
        new = {id(p) for p in params}
        own = {id(p) for p in layer.parameters() if id(p) not in new}
        target = next(
            (group for optimizer in optimizers for group in optimizer.param_groups if any(id(p) in own for p in group["params"])),
            optimizers[0].param_groups[0],
        )
        present = {id(p) for p in target["params"]}
        target["params"].extend(p for p in params if id(p) not in present)


#: config_list keys that name module classes (NNI 3.0's ``select_modules_by_config``).
OP_TYPE_KEYS = ("op_types", "exclude_op_types")


def expand_op_types(config_list: MutableSequence[Any], model: nn.Module) -> None:
    """Let ``op_types`` / ``exclude_op_types`` naming a plain layer type (``Linear``, ``Conv2d``) also
    name the variational classes that replace it in ``model`` (``VariationalLinear``, ``GatedLinear``...).

    Each changed item is replaced in the list by a changed copy (the caller's dicts stay as they
    were); items that name no replaced type are left alone.
    """
    replacing: dict[str, set[str]] = {}
    for module in model.modules():
        if isinstance(module, VariationalLayer):
            replacing.setdefault(module.plain_type.__name__, set()).add(type(module).__name__)
    for index, item in enumerate(config_list):
        if not isinstance(item, Mapping):
            continue  # NNI's schema check reports it
        changed = {}
        for key in OP_TYPE_KEYS:
            names = item.get(key)
            if isinstance(names, (list, tuple)):
                extra = sorted({v for name in names if isinstance(name, str) for v in replacing.get(name, ())} - set(names))
                if extra:
                    changed[key] = [*names, *extra]
        if changed:
            config_list[index] = {**item, **changed}


__all__ = [
    "register_variational_settings", "check_evaluator", "record_optimizer_parameters", "join_param_groups",
    "OP_TYPE_KEYS", "expand_op_types",
]
