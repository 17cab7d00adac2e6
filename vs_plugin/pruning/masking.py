"""Turn keep masks into pruned plain layers, and keep pruned weights at zero while fine-tuning.

The third phase of the recipe (prune to the target, then fine-tune the survivors with KD) and
the magnitude baselines share this: after :func:`apply_keep_masks` the model holds plain layers
with exact zeros, and a :class:`MaskKeeper` attached to the optimizer zeroes the gradients of
pruned weights before each step and the weights themselves after it (Adam's moments would
otherwise move them off zero).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import ConfigError
from ..variationalize import finalize, variational_layers


def _weight_shaped(mask: Tensor, weight: Tensor, name: str) -> tuple[Tensor, Optional[Tensor]]:
    """(weight mask, bias mask or None) from a weight-shaped or per-output-channel mask."""
    mask = mask.to(device=weight.device, dtype=torch.bool)
    if mask.shape == weight.shape:
        return mask, None
    if mask.dim() == 1 and mask.numel() == weight.shape[0]:
        return mask.view(-1, *([1] * (weight.dim() - 1))).expand_as(weight).clone(), mask
    raise ConfigError(
        f"mask of layer {name!r} has shape {tuple(mask.shape)}; expected the weight's {tuple(weight.shape)} "
        f"or one entry per output channel ({weight.shape[0]})"
    )


def apply_keep_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> "MaskKeeper":
    """Make ``model``'s layers plain with exactly the masked units kept, in place.

    Variational layers are finalized with every unit kept (theta, or the gated weight) and then
    masked, so the kept set is ``masks``, not the log alpha threshold. Plain layers named in
    ``masks`` are masked as they are. Returns the :class:`MaskKeeper` of the result.
    """
    for _, layer in variational_layers(model):
        layer.threshold = math.inf
    finalize(model)
    modules = dict(model.named_modules())
    keeper = MaskKeeper()
    with torch.no_grad():
        for name, mask in masks.items():
            module = modules.get(name)
            if module is None or not isinstance(getattr(module, "weight", None), Tensor):
                raise ConfigError(f"a mask names layer {name!r}, which has no weight in this model")
            weight_mask, bias_mask = _weight_shaped(mask, module.weight, name)
            keeper.add(module.weight, weight_mask)
            if bias_mask is not None and getattr(module, "bias", None) is not None:
                keeper.add(module.bias, bias_mask)
    keeper.apply()
    return keeper


class MaskKeeper:
    """Keeps chosen entries of parameters at a fixed value (zero unless told) through optimizer steps."""

    def __init__(self) -> None:
        self._pairs: list[tuple[Tensor, Tensor]] = []
        self._dropped: list[tuple[Tensor, float]] = []  # per pair: ~keep and the value pruned entries hold
        self._handles: list = []

    def add(self, parameter: Tensor, keep: Tensor, fill: float = 0.0) -> None:
        """Hold the entries of ``parameter`` where ``keep`` is False at ``fill`` (a variational
        layer's log sigma^2 is held at a value that marks the unit pruned, see ``gradual.py``)."""
        if keep.shape != parameter.shape:
            raise ConfigError(f"mask shape {tuple(keep.shape)} differs from the parameter's {tuple(parameter.shape)}")
        keep = keep.to(device=parameter.device, dtype=torch.bool)
        self._pairs.append((parameter, keep))
        self._dropped.append((~keep, float(fill)))

    def apply(self) -> None:
        """Set the pruned entries of every parameter (zero those of its gradient, when there is one)."""
        with torch.no_grad():
            for (parameter, _), (dropped, fill) in zip(self._pairs, self._dropped):
                parameter.masked_fill_(dropped, fill)
                if parameter.grad is not None:
                    parameter.grad.masked_fill_(dropped, 0.0)

    def attach(self, optimizer: torch.optim.Optimizer) -> "MaskKeeper":
        """Zero pruned gradients before each ``optimizer.step()`` and pruned weights after it."""
        self._handles.append(optimizer.register_step_pre_hook(lambda *_: self._zero_grads()))
        self._handles.append(optimizer.register_step_post_hook(lambda *_: self.apply()))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _zero_grads(self) -> None:
        with torch.no_grad():
            for (parameter, _), (dropped, _) in zip(self._pairs, self._dropped):
                if parameter.grad is not None:
                    parameter.grad.masked_fill_(dropped, 0.0)

    @property
    def kept(self) -> int:
        """Number of kept entries over every masked parameter that is a weight (dim > 1)."""
        return int(sum(int(keep.sum()) for parameter, keep in self._pairs if parameter.dim() > 1))
