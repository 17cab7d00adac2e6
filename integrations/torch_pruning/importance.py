"""Channel scores for torch-pruning groups: from the Variational Student's gates, from keep masks,
or frozen from an earlier scoring.

A torch-pruning *group* lists every (layer, channels) pair that must be pruned together because
the channels are coupled (a residual add, a depthwise convolution, the q/k/v of one attention
head dimension). Each item carries ``root_idxs``: the index of the coupled channel in the group's
root layer. Scores are combined over the coupled layers through those root indices; the result
is one score per root channel, higher = keep (torch-pruning's convention).
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn as nn
import torch_pruning as tp
from torch import Tensor
from torch_pruning import ops
from torch_pruning.pruner import function

from vs_plugin.errors import ConfigError
from vs_plugin.layers import functional as vf
from vs_plugin.layers.channel import ChannelGateLayer

from .gates import GATED_OUT_CHANNEL_FUNCTIONS, gates_registered, is_stray_depthwise_root

#: Pruning functions that remove a layer's output channels.
OUT_CHANNEL_FUNCTIONS = (
    function.prune_conv_out_channels,
    function.prune_linear_out_channels,
    function.prune_depthwise_conv_out_channels,
) + GATED_OUT_CHANNEL_FUNCTIONS
#: Items whose channel value is computed there (not passed through): they keep a channel alive
#: unless a mask kills it. Channel-mixing normalisations (LayerNorm, GroupNorm, InstanceNorm)
#: are listed too: a zero channel does not stay zero through them, and removing it changes
#: their statistics, so a channel they touch is never "dead".
PRODUCER_FUNCTIONS = OUT_CHANNEL_FUNCTIONS + (
    function.prune_parameter_out_channels,
    function.prune_embedding_out_channels,
    function.prune_multihead_attention_out_channels,
    function.prune_lstm_out_channels,
    function.prune_layernorm_out_channels,
    function.prune_groupnorm_out_channels,
    function.prune_instancenorm_out_channels,
)
REDUCTIONS = ("max", "mean")


def _items(group: tp.Group):
    for index, (dep, idxs) in enumerate(group):
        yield dep, list(idxs), group[index].root_idxs


def _root_count(group: tp.Group) -> int:
    return len(group[0].idxs)


def _has_unmapped(root_idxs) -> bool:
    return root_idxs is None or any(r is None for r in root_idxs)


def unclipped_log_alpha(layer: ChannelGateLayer) -> Tensor:
    """log alpha of each gate without the [-clip, clip] clamp (core formula, clip = inf).

    Ranking needs a total order: with the clamp, every gate still at its initial -8 would tie.
    The threshold test is unchanged, since the threshold lies inside the clip range.
    """
    return vf.log_alpha(layer.gate_mu, layer.gate_log_sigma2, clip=float("inf"))


class VariationalImportance(tp.importance.Importance):
    """Group scores from the channel gates' log alpha (higher = keep).

    For each root channel r of a group, over the coupled gated layers l whose output channel c
    maps to r:

    .. math::  s_r = \\max_{(l,c)\\to r} -\\log\\alpha_{l,c}   \\quad(\\text{or the mean})

    ``"max"`` (default) is conservative: a coupled channel ranks as low as its *most* needed
    copy, so it goes only when every gated layer writing it is ready to drop it. A channel is
    pruned at threshold t exactly when ``s_r <= -t``. Layers without gates (plain ones, tokens)
    have no say; a group without any gated layer gets no score and is never pruned. A model
    without gates, or one whose gates torch-pruning was not told to prune (``customized_pruners=
    gate_pruners()``), is refused with a ``ConfigError`` on the first group scored.

    Args:
        reduction: ``"max"`` or ``"mean"`` over the coupled gated layers.
    """

    def __init__(self, reduction: str = "max") -> None:
        if reduction not in REDUCTIONS:
            raise ConfigError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction
        self._checked_graphs: set[int] = set()

    def _check_graph(self, group: tp.Group) -> None:
        """Refuse a model without gates, or gates torch-pruning would not prune (once per graph)."""
        graph = getattr(group, "_DG", None)
        if graph is None or id(graph) in self._checked_graphs:
            return
        if not any(isinstance(m, ChannelGateLayer) for m in graph.model.modules()):
            raise ConfigError(
                "VariationalImportance scores channel gates, and this model has none: make it a channel-gated student "
                "first (vs_plugin.variationalize(model, VariationalConfig(granularity='channel'))) and train it"
            )
        if not gates_registered(graph):
            raise ConfigError(
                "the model's channel gates are not registered with torch-pruning, which would prune the weights but not the "
                "gates: pass customized_pruners=gate_pruners() (from vs_plugin.integrations.torch_pruning) to the pruner"
            )
        self._checked_graphs.add(id(graph))

    @torch.no_grad()
    def __call__(self, group: tp.Group) -> Optional[Tensor]:
        self._check_graph(group)
        if is_stray_depthwise_root(group):
            return None  # its producer's group holds these channels (see is_stray_depthwise_root)
        scores, roots = [], []
        for dep, idxs, root_idxs in _items(group):
            layer = dep.target.module
            if dep.handler in OUT_CHANNEL_FUNCTIONS and isinstance(layer, ChannelGateLayer) and not _has_unmapped(root_idxs):
                scores.append(-unclipped_log_alpha(layer).detach().float().cpu()[idxs])
                roots.append(torch.as_tensor(root_idxs, dtype=torch.long))
        if not scores:
            return None
        size = _root_count(group)
        values, index = torch.cat(scores), torch.cat(roots)
        counts = torch.zeros(size).index_add_(0, index, torch.ones_like(values))
        if self.reduction == "max":
            combined = torch.full((size,), -float("inf")).scatter_reduce(0, index, values, reduce="amax")
        else:
            combined = torch.zeros(size).index_add_(0, index, values) / counts.clamp_min(1)
        # Root channels no gated layer writes keep the group's best score (never pruned first).
        return torch.where(counts > 0, combined, values.max())


class MaskImportance(tp.importance.Importance):
    """1 for root channels that are alive, 0 for dead ones, from per-layer output-channel keep masks.

    Rule (conservative, so that removing dead channels leaves the function unchanged once the
    BatchNorm shifts of those channels are zeroed): a root channel is dead when every *producer*
    coupled to it has it masked. Producers are the layers that compute a channel's value:
    Conv/Linear outputs (depthwise too), unwrapped parameters (tokens, per-channel scales),
    embeddings, attention and LSTM outputs, and channel-mixing norms (always alive). A producer
    without a mask keeps its channels alive. A masked BatchNorm (weight mask, as NNI's Slim
    pruner makes) kills the channel of the producer feeding it. Pass-through items (BatchNorm,
    activations, adds, reshapes, inputs of the next layers) have no say.

    Args:
        masks: module -> bool tensor over its output channels (True = keep).
    """

    def __init__(self, masks: Mapping[nn.Module, Tensor]) -> None:
        self.masks = {module: torch.as_tensor(mask, dtype=torch.bool).flatten().cpu() for module, mask in masks.items()}

    @torch.no_grad()
    def __call__(self, group: tp.Group) -> Optional[Tensor]:
        size = _root_count(group)
        killed: dict[nn.Module, set[int]] = {}
        for dep, idxs, root_idxs in _items(group):
            mask = self.masks.get(dep.target.module)
            if dep.handler == function.prune_batchnorm_out_channels and mask is not None and not _has_unmapped(root_idxs):
                dead_roots = {r for i, r in zip(idxs, root_idxs) if not bool(mask[i])}
                for producer in dep.target.inputs:  # the BatchNorm's inputs in the data flow
                    killed.setdefault(producer.module, set()).update(dead_roots)
        alive = torch.zeros(size, dtype=torch.bool)
        for dep, idxs, root_idxs in _items(group):
            if dep.handler not in PRODUCER_FUNCTIONS and dep.target.type != ops.OPTYPE.PARAMETER:
                continue
            if _has_unmapped(root_idxs):
                return torch.ones(size)  # cannot tell which root channels it writes: keep them all
            module = dep.target.module
            mask = self.masks.get(module) if isinstance(module, nn.Module) else None
            keep = torch.ones(len(idxs), dtype=torch.bool) if mask is None else mask[idxs]
            dead = killed.get(module, set())
            if dead:
                keep = keep & torch.tensor([r not in dead for r in root_idxs], dtype=torch.bool)
            alive[torch.as_tensor(root_idxs, dtype=torch.long)[keep]] = True
        return alive.float()


class GuardedImportance(tp.importance.Importance):
    """Wraps an importance; groups touching a blocked (opaque) module or the model's output get
    no score, so no pruner prunes them."""

    def __init__(self, inner: tp.importance.Importance, blocked: frozenset[int] = frozenset()) -> None:
        self.inner = inner
        self.blocked = blocked

    def __call__(self, group: tp.Group) -> Optional[Tensor]:
        for dep, _ in group:
            if dep.target.type == ops.OPTYPE.OUTPUT or id(dep.target.module) in self.blocked:
                return None
        return self.inner(group)


GroupKey = tuple[str, bool]


def group_key(group: tp.Group, names: Mapping[nn.Module, str]) -> GroupKey:
    """(name of the group's root layer, whether its output channels are the root)."""
    dep = group[0].dep
    return names[dep.target.module], dep.handler in OUT_CHANNEL_FUNCTIONS


class FrozenImportance(tp.importance.Importance):
    """Scores taken earlier (e.g. on the model before a trial copy was made), looked up by the
    group's root layer name. Lets a bisection prune copies of a model with the original scores,
    and makes score-by-gradient importances (Taylor) usable on copies.

    Args:
        scores: (root layer name, is output root) -> scores, as made by :func:`snapshot_scores`.
        names: module -> qualified name, for the model being pruned.
    """

    def __init__(self, scores: Mapping[GroupKey, Tensor], names: Mapping[nn.Module, str]) -> None:
        self.scores = dict(scores)
        self.names = names

    def __call__(self, group: tp.Group) -> Optional[Tensor]:
        dep = group[0].dep
        if dep.target.module not in self.names:
            return None
        score = self.scores.get(group_key(group, self.names))
        if score is None or score.numel() != _root_count(group):
            return None
        return score.clone()


def ranked_groups(pruner: tp.pruner.BasePruner):
    """The groups a pruner ranks, rooted as it roots them (attention at the output projection).

    Mirrors the first phase of ``BasePruner._prune`` in torch-pruning 1.6.1 (it uses the
    pruner's attention helpers, which have no public equivalent).
    """
    for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types):
        if is_stray_depthwise_root(group):
            continue
        is_attention, _ = pruner._is_atten_group(group)
        if is_attention:
            group = pruner._downstream_node_as_root_if_attention(group)
            if group is None:
                continue
        yield group


def snapshot_scores(pruner: tp.pruner.BasePruner) -> dict[GroupKey, Tensor]:
    """Every ranked group's scores under ``pruner.importance``, keyed for :class:`FrozenImportance`."""
    names = {module: name for name, module in pruner.model.named_modules()}
    scores = {}
    with torch.no_grad():
        for group in ranked_groups(pruner):
            value = pruner.estimate_importance(group)
            if value is not None:
                scores[group_key(group, names)] = value.detach().float().cpu().clone()
    return scores


__all__ = [
    "OUT_CHANNEL_FUNCTIONS",
    "PRODUCER_FUNCTIONS",
    "REDUCTIONS",
    "unclipped_log_alpha",
    "VariationalImportance",
    "MaskImportance",
    "GuardedImportance",
    "FrozenImportance",
    "group_key",
    "ranked_groups",
    "snapshot_scores",
]
