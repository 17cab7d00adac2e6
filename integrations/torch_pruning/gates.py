"""Keep the channel gates of a variational layer in step with its pruned weights.

torch-pruning prunes a Conv/Linear's ``weight`` and ``bias``; a channel-gated layer
(``vs_plugin.layers.ChannelGateLayer``) also holds one gate per output channel (``gate_mu``,
``gate_log_sigma2``), which must lose the same channels. vs-plugin calls :func:`prune_gates` on
every group just before torch-pruning prunes it, so the gated student keeps training after each
pruning step with its learned gates.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch_pruning as tp

from vs_plugin.layers.channel import ChannelGateLayer

from .importance import OUT_CHANNEL_FUNCTIONS

GATE_PARAMETERS = ("gate_mu", "gate_log_sigma2")


def _keep(parameter: nn.Parameter, keep: Sequence[int]) -> nn.Parameter:
    index = torch.as_tensor(keep, dtype=torch.long, device=parameter.device)
    pruned = nn.Parameter(parameter.detach().index_select(0, index).clone(), requires_grad=parameter.requires_grad)
    if parameter.grad is not None:
        pruned.grad = parameter.grad.index_select(0, index).clone()
    return pruned


def prune_gate_channels(layer: ChannelGateLayer, removed: Sequence[int]) -> None:
    """Remove output channels ``removed`` from the layer's gates (weights are torch-pruning's job)."""
    channels = layer.gate_mu.numel()
    drop = set(int(i) for i in removed)
    keep = [i for i in range(channels) if i not in drop]
    for name in GATE_PARAMETERS:
        setattr(layer, name, _keep(getattr(layer, name), keep))


def prune_gates(group: tp.Group) -> None:
    """Prune the gates of every channel-gated layer whose output channels ``group`` removes."""
    for dep, idxs in group:
        layer = dep.target.module
        if isinstance(layer, ChannelGateLayer) and dep.handler in OUT_CHANNEL_FUNCTIONS:
            prune_gate_channels(layer, idxs)


__all__ = ["GATE_PARAMETERS", "prune_gate_channels", "prune_gates"]
