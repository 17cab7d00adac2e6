"""Keep masks (from NNI's pruners, or any other source) -> a physically smaller model.

NNI 3.0's own ``ModelSpeedup`` fails on current PyTorch; torch-pruning's dependency graph does
the surgery instead. :func:`apply_masks` bakes the masks into the weights (NNI's
``unwrap_model()`` restores the unmasked ones), reads which output channels each layer has
masked, and removes the channels that are masked in every coupled layer (the rule of
:class:`MaskImportance`), consistently across residual adds, depthwise convolutions and attention
heads. The result equals the masked model once the shifts of the removed channels are zeroed
(:func:`zero_shifts`, applied here to the pruned-away channels only, so nothing observable).
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence, Union

import torch
import torch.nn as nn
from torch import Tensor

from vs_plugin.errors import ConfigError
from vs_plugin.layers.channel import ChannelGateLayer

from .graph import ExampleInputs, build_pruner, resolve_layers
from .importance import MaskImportance
from .plan import ChannelRemoval, apply_plan, dead_channel_plan, removed_channels

#: Layer types whose masks say which output channels are gone.
CHANNEL_LAYERS = (nn.Linear, nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)

MaskEntry = Union[Tensor, Mapping[str, Tensor]]


def _entry(name: str, value: MaskEntry) -> dict[str, Tensor]:
    """One layer's masks as {parameter name: tensor}; NNI's ``None`` for a missing target (a layer
    without bias: ``{'weight': mask, 'bias': None}``) is dropped."""
    if isinstance(value, Tensor):
        return {"weight": value}
    if isinstance(value, Mapping):
        wrong = [f"{k!r} ({type(v).__name__})" for k, v in value.items() if v is not None and not isinstance(v, Tensor)]
        if not wrong:
            return {k: v for k, v in value.items() if v is not None}
        raise ConfigError(
            f"mask of {name!r}: every value must be a tensor or None, got {', '.join(wrong)}; "
            "accepted: a tensor, or a mapping of parameter name to tensor or None"
        )
    raise ConfigError(
        f"mask of {name!r} must be a tensor or a mapping of parameter name to tensor or None, got {type(value).__name__}"
    )


def channel_keep_mask(module: nn.Module, weight_mask: Tensor) -> Tensor:
    """True for the output channels whose weight mask keeps anything.

    ``weight_mask`` may be weight-shaped (per weight, NNI's form) or one value per output channel.
    """
    mask = torch.as_tensor(weight_mask).detach().cpu()
    channels = module.weight.shape[0]
    if mask.dim() == 1 and mask.numel() == channels:
        return mask != 0
    if tuple(mask.shape) != tuple(module.weight.shape):
        raise ConfigError(f"mask of shape {tuple(mask.shape)} fits neither the weight {tuple(module.weight.shape)} nor its {channels} output channels")
    return mask.reshape(channels, -1).ne(0).any(dim=1)


def _bake(module: nn.Module, name: str, entry: Mapping[str, Tensor]) -> None:
    with torch.no_grad():
        for parameter_name, mask in entry.items():
            parameter = getattr(module, parameter_name, None)
            if not isinstance(parameter, torch.Tensor):
                raise ConfigError(f"mask for {name}.{parameter_name}: {type(module).__name__} has no such parameter")
            mask = torch.as_tensor(mask).to(parameter.device, parameter.dtype)
            if mask.dim() == 1 and parameter.dim() > 1 and mask.numel() == parameter.shape[0]:
                mask = mask.view(-1, *([1] * (parameter.dim() - 1)))
            parameter.mul_(mask)


def apply_masks(
    model: nn.Module, masks: Mapping[str, MaskEntry], example_inputs: ExampleInputs, ignored_layers: Sequence[str] = ()
) -> ChannelRemoval:
    """Remove the masked channels from ``model`` in place.

    Args:
        model: the plain (unwrapped) model the masks were made for.
        masks: layer name -> weight mask, or -> ``{"weight": mask, "bias": mask or None}`` as NNI's
            ``pruner.compress()`` returns (None: the layer has no such parameter). Masks of Conv/Linear/BatchNorm layers decide channel
            removal; any mask is baked into its parameter.
        example_inputs: a batch of one, for tracing.
        ignored_layers: module names whose output channels are kept (the head always is).

    Returns:
        the plan applied and each layer's removed output channels (numbered as before).

    Raises:
        ConfigError: for an unknown layer name or a mask that fits no parameter.
    """
    if any(isinstance(m, ChannelGateLayer) for m in model.modules()):
        raise ConfigError("apply_masks expects a plain model; use VariationalStudentPruner for a channel-gated student")
    entries = {name: _entry(name, value) for name, value in masks.items()}
    modules = dict(zip(entries, resolve_layers(model, list(entries), "masks")))
    keep = {}
    others = []
    for name, entry in entries.items():
        module = modules[name]
        _bake(module, name, entry)
        if isinstance(module, CHANNEL_LAYERS) and "weight" in entry and getattr(module, "weight", None) is not None:
            keep[module] = channel_keep_mask(module, entry["weight"])
        else:
            others.append(f"{name} ({type(module).__name__})")
    if others:
        warnings.warn(f"masks baked but not turned into channel removal: {', '.join(others)}", stacklevel=2)
    pruner = build_pruner(model, example_inputs, MaskImportance(keep), ignored_layers=ignored_layers)
    plan = dead_channel_plan(pruner, lambda scores: scores < 0.5)
    removed = removed_channels(model, pruner.DG, plan)
    applied = apply_plan(model, pruner.DG, plan)
    return ChannelRemoval(applied, removed)


def masks_from_zero_channels(model: nn.Module) -> dict[str, Tensor]:
    """Per-output-channel keep masks of every Conv/Linear whose weight rows are all zero somewhere.

    A finalized channel-mode student (``vs-plugin compress --granularity channel``) stores its
    pruned channels as zero rows (weight and bias); these masks turn it into a smaller model
    with :func:`apply_masks`.
    """
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) and module.weight is not None:
            rows = module.weight.detach().reshape(module.weight.shape[0], -1).ne(0).any(dim=1)
            if module.bias is not None:
                rows = rows | module.bias.detach().ne(0)
            if not bool(rows.all()):
                found[name] = rows.cpu()
    return found


__all__ = ["CHANNEL_LAYERS", "channel_keep_mask", "apply_masks", "masks_from_zero_channels"]
