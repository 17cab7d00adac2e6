"""NNI masks from the variational layers' log_alpha, and masks baked into a plain model.

NNI's masks are ``{module_name: {target_name: mask}}`` with 1 = keep. For a variational layer:

- threshold mode: the weight mask is the core's ``keep_mask()`` (log_alpha < threshold),
  per weight, or per output channel broadcast over the weight;
- ratio mode: NNI ranks ``-log_alpha`` (NNI prunes the smallest metric), so the units with the
  highest log_alpha are pruned;
- the bias mask (structured mode, or when ``bias`` is a target) keeps an output unit's bias while
  any of its weights is kept, as NNI's ``align`` rule does.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
import torch.nn as nn
from torch import Tensor

from vs_plugin.errors import ConfigError
from vs_plugin.layers.base import VariationalLayer
from vs_plugin.variationalize import finalize


@contextmanager
def current_theta(wrapper: nn.Module) -> Iterator[VariationalLayer]:
    """The wrapped variational layer, its ``weight`` pointing at theta's current values.

    NNI keeps the trainable theta in ``wrapper.weight`` and writes the masked copy into the
    layer's ``weight`` slot on every forward; after an optimizer step that slot still holds the
    previous values. Inside this context the layer reads the current, unmasked theta; the slot is
    restored afterwards (the next forward overwrites it anyway).
    """
    layer = wrapper.module
    previous = layer.weight
    layer.weight = wrapper.weight.detach()  # a plain tensor: stored in the buffer slot NNI made
    try:
        yield layer
    finally:
        layer.weight = previous


def expand_channel_mask(keep: Tensor, weight: Tensor) -> Tensor:
    """A per-output-channel mask (C,) broadcast to the weight's shape (C, ...)."""
    return keep.view(-1, *([1] * (weight.dim() - 1))).expand_as(weight)


def bias_mask_from_weight(weight_mask: Tensor, weight_shape: torch.Size) -> Tensor:
    """Keep an output unit's bias while any of its weights is kept (NNI's ``align`` on dim 0)."""
    return weight_mask.expand(weight_shape).reshape(weight_shape[0], -1).amax(dim=1)


def _is_wrapped(model: nn.Module) -> bool:
    return any(hasattr(module, "_nni_wrapper") for module in model.modules())


def bake_masks(model: nn.Module, masks: Mapping[str, Mapping[str, Tensor]]) -> nn.Module:
    """Write NNI masks into the weights of an unwrapped model and return it (in place).

    Variational layers named in ``masks`` become plain layers (channel gates folded into the
    weights) holding ``weight * mask`` and ``bias * mask``; plain layers are multiplied in place.
    The result's ``state_dict`` loads into the original architecture.

    Args:
        model: the pruned model after ``pruner.unwrap_model()``.
        masks: ``{module_name: {target_name: mask}}`` as returned by ``pruner.compress()``.

    Raises:
        ConfigError: when the model is still wrapped by NNI or a mask names an unknown module.
    """
    if _is_wrapped(model):
        raise ConfigError("the model is still wrapped by NNI; call pruner.unwrap_model() before bake_masks")
    modules = dict(model.named_modules())
    unknown = sorted(set(masks) - set(modules))
    if unknown:
        raise ConfigError(f"masks name modules the model does not have: {', '.join(unknown)}")
    variational = [name for name in masks if isinstance(modules[name], VariationalLayer)]
    for name in variational:
        # Keep every unit in the layer's own eval map: the NNI mask below decides what is pruned.
        modules[name].threshold = float("inf")
    if variational:
        finalize(model)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, targets in masks.items():
            module = modules[name]
            for target, mask in targets.items():
                value = getattr(module, target, None)
                if mask is None or value is None:
                    continue
                value.mul_(mask.to(device=value.device, dtype=value.dtype))
    return model


__all__ = ["bake_masks", "current_theta", "expand_channel_mask", "bias_mask_from_weight"]
