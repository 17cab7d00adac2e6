"""Channel gates registered with torch-pruning: pruning functions that cut gates with their channels.

A channel-gated layer (``vs_plugin.layers.ChannelGateLayer``) holds, besides its weight and bias,
one gate per output channel (``gate_mu``, ``gate_log_sigma2``), which must lose the same channels.
:func:`gate_pruners` gives torch-pruning's ``customized_pruners`` argument: one pruning function
per gated class, the plain layer's torch-pruning function plus the gates. Any torch-pruning pruner
built with it (``MetaPruner``, ``GroupNormPruner``, ours) keeps the gates consistent:

.. code-block:: python

    pruner = tp.pruner.MetaPruner(model, x, importance=VariationalImportance(),
                                  customized_pruners=gate_pruners(), pruning_ratio=0.5, ignored_layers=[model.fc])

Depthwise gated convolutions have their own class so that their in and out channels stay coupled
(torch-pruning couples them when the pruning function is the same for both).

Importing this module also registers the variational classes with torch-pruning's MAC counter
(``tp.utils.count_ops_and_params`` looks counters up by exact class), so MACs of a variational
model are those of the plain layers it finalizes to.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch_pruning as tp
from torch_pruning.pruner import function
from torch_pruning.utils import op_counter

from vs_plugin.layers.base import VariationalLayer
from vs_plugin.layers.channel import (
    ChannelGateLayer,
    GatedConv1d,
    GatedConv2d,
    GatedDepthwiseConv1d,
    GatedDepthwiseConv2d,
    GatedLinear,
)

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


class GatedConvPruner(function.ConvPruner):
    """torch-pruning's convolution pruning, plus the gates of the removed output channels."""

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        super().prune_out_channels(layer, idxs)
        prune_gate_channels(layer, idxs)
        return layer


class GatedDepthwiseConvPruner(function.DepthwiseConvPruner):
    """torch-pruning's depthwise pruning (in = out channels), plus the gates."""

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        super().prune_out_channels(layer, idxs)
        prune_gate_channels(layer, idxs)
        return layer

    prune_in_channels = prune_out_channels


class GatedLinearPruner(function.LinearPruner):
    """torch-pruning's Linear pruning, plus the gates of the removed output features."""

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        super().prune_out_channels(layer, idxs)
        prune_gate_channels(layer, idxs)
        return layer


# One instance each: torch-pruning (and vs-plugin) compare pruning functions by identity.
_CONV = GatedConvPruner()
_DEPTHWISE = GatedDepthwiseConvPruner()
_LINEAR = GatedLinearPruner()
_GATE_PRUNERS: dict[type, function.BasePruningFunc] = {
    GatedConv1d: _CONV,
    GatedConv2d: _CONV,
    GatedDepthwiseConv1d: _DEPTHWISE,
    GatedDepthwiseConv2d: _DEPTHWISE,
    GatedLinear: _LINEAR,
}
#: Pruning functions of the gated layers' output channels (for checks on ``dep.handler``).
GATED_OUT_CHANNEL_FUNCTIONS = (_CONV.prune_out_channels, _DEPTHWISE.prune_out_channels, _LINEAR.prune_out_channels)
GATED_IN_CHANNEL_FUNCTIONS = (_CONV.prune_in_channels, _LINEAR.prune_in_channels)


def pruning_group(graph: tp.DependencyGraph, module: nn.Module, pruning_fn, idxs: Sequence[int]) -> tp.Group:
    """``graph.get_pruning_group(module, pruning_fn, idxs)``, also right for a gated depthwise root.

    torch-pruning 1.6.1's ``get_pruning_group`` replaces the function of any depthwise root by
    the module-level ``function.prune_depthwise_conv_out_channels``, which would cut the weights,
    leave the gates and not reach the layers coupled through the gate-aware function. For a gated
    depthwise root that name points to the gate-aware function during the call (restored after).
    """
    if not isinstance(module, (GatedDepthwiseConv1d, GatedDepthwiseConv2d)):
        return graph.get_pruning_group(module, pruning_fn, idxs)
    standard = function.prune_depthwise_conv_out_channels
    function.prune_depthwise_conv_out_channels = _DEPTHWISE.prune_out_channels
    try:
        return graph.get_pruning_group(module, _DEPTHWISE.prune_out_channels, idxs)
    finally:
        function.prune_depthwise_conv_out_channels = standard


def is_stray_depthwise_root(group: tp.Group) -> bool:
    """A group torch-pruning rooted at a gated depthwise layer with its own depthwise function.

    ``get_all_groups`` may reach a depthwise layer before its producer; ``get_pruning_group`` then
    gives it torch-pruning's plain depthwise function, which neither prunes the gates nor reaches
    the coupled layers. Such a group must not be pruned: the producer's group, which comes later,
    holds the same channels with the gate-aware functions.
    """
    dep = group[0].dep
    return isinstance(dep.target.module, (GatedDepthwiseConv1d, GatedDepthwiseConv2d)) and dep.handler == function.prune_depthwise_conv_out_channels


def gate_pruners() -> dict[type, function.BasePruningFunc]:
    """torch-pruning's ``customized_pruners`` for every gated layer class (a fresh dict)."""
    return dict(_GATE_PRUNERS)


def gates_registered(graph: tp.DependencyGraph) -> bool:
    """Whether ``graph`` was built with :func:`gate_pruners` (or :func:`vs_plugin` helpers that add them)."""
    return all(graph.CUSTOMIZED_PRUNERS.get(cls) is pruner for cls, pruner in _GATE_PRUNERS.items())


def _register_mac_counters() -> None:
    """Count variational layers' MACs as their plain layers' (torch-pruning looks counters up by exact class)."""
    stack = list(VariationalLayer.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        plain = getattr(cls, "plain_type", None)
        if plain in op_counter.MODULES_MAPPING and cls not in op_counter.MODULES_MAPPING:
            op_counter.MODULES_MAPPING[cls] = op_counter.MODULES_MAPPING[plain]


_register_mac_counters()


__all__ = [
    "GATE_PARAMETERS",
    "GATED_OUT_CHANNEL_FUNCTIONS",
    "GATED_IN_CHANNEL_FUNCTIONS",
    "GatedConvPruner",
    "GatedDepthwiseConvPruner",
    "GatedLinearPruner",
    "gate_pruners",
    "gates_registered",
    "pruning_group",
    "is_stray_depthwise_root",
    "prune_gate_channels",
]
