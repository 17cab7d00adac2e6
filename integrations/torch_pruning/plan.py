"""Which channels go (a *plan*), and removing them through torch-pruning's dependency graph.

A plan is a list of :class:`PlanItem` (root layer, output or input side, channel indices), the
same triple torch-pruning records in its pruning history. Plans are JSON-serialisable, so the
saved spec of a pruned model is its plan and a fresh model is rebuilt by replaying it.

Two ways to choose channels, both over the groups torch-pruning ranks (coupled channels move
together; attention groups are rooted at the output projection, so the q, k and v of a head
dimension go together, at the same positions in every head):

- :func:`ranked_plan`: the lowest-scoring positions, globally (one ranking over all groups) or
  per layer, removing a given fraction, each group keeping at least ``1 - max_layer_ratio`` of
  its positions (and never fewer than one);
- :func:`dead_channel_plan`: every position whose score says "dead" (a log alpha at or above the
  threshold, a zero keep mask) in every channel group of the layer.

:func:`apply_plan` removes the channels (pruning the gates of channel-gated layers too) and fixes
attention attributes; :func:`removed_channels` and :func:`zero_shifts` build the masked model
that a pruned model must agree with.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch_pruning as tp
from torch import Tensor
from torch_pruning.pruner import function

from vs_plugin.errors import CheckpointError, ConfigError

from .attention import head_dims, update_attention
from .graph import module_names
from .gates import pruning_group
from .importance import OUT_CHANNEL_FUNCTIONS, PRODUCER_FUNCTIONS, GroupKey, group_key, ranked_groups

#: Per-channel items reported by :func:`removed_channels` besides the producers.
NORM_FUNCTIONS = (function.prune_batchnorm_out_channels,)


@dataclass(frozen=True)
class PlanItem:
    """Remove ``indices`` from the output (``out_channels=True``) or input channels of ``layer``;
    torch-pruning removes the coupled channels of every other layer in its group."""

    layer: str
    out_channels: bool
    indices: tuple[int, ...]

    def to_json(self) -> list:
        return [self.layer, self.out_channels, list(self.indices)]

    @classmethod
    def from_json(cls, value) -> "PlanItem":
        try:
            layer, out_channels, indices = value
            return cls(str(layer), bool(out_channels), tuple(int(i) for i in indices))
        except (TypeError, ValueError):
            raise CheckpointError(f"a pruning plan entry must be [layer, out_channels, [indices]], got {value!r}") from None


def plan_to_json(plan: Iterable[Union[PlanItem, Sequence]]) -> list:
    """JSON form of a plan: :class:`PlanItem` s or torch-pruning's ``pruning_history()`` entries
    (``[layer name, is_out_channels, indices]``, the same form)."""
    if isinstance(plan, (str, bytes)) or not isinstance(plan, Iterable):
        raise ConfigError(f"a pruning plan must be a list of PlanItem or of torch-pruning history entries, got {type(plan).__name__}")
    return [item.to_json() if isinstance(item, PlanItem) else PlanItem.from_json(list(item)).to_json() for item in plan]


def plan_from_json(value) -> list[PlanItem]:
    if not isinstance(value, list):
        raise CheckpointError(f"a pruning plan must be a list, got {type(value).__name__}")
    return [PlanItem.from_json(v) for v in value]


def _item(group: tp.Group, positions: Sequence[int], channel_groups: int, group_size: int, names) -> PlanItem:
    dep = group[0].dep
    # The same positions in every channel group (heads, grouped-conv groups), as torch-pruning does.
    indices = sorted(int(p) + g * group_size for g in range(channel_groups) for p in positions)
    return PlanItem(names[dep.target.module], dep.handler in OUT_CHANNEL_FUNCTIONS, tuple(indices))


@dataclass
class _Ranked:
    group: tp.Group
    channel_groups: int
    scores: Tensor  # per position (averaged over channel groups)
    names: tuple[str, ...]  # root and out-channel layers of the group
    key: GroupKey


Scorer = Callable[[tp.Group], Optional[Tensor]]


def _scored_groups(pruner: tp.pruner.BasePruner, score: Scorer) -> Iterator[tuple[tp.Group, int, Tensor]]:
    """(group, channel groups, scores as (channel groups, positions)) of every ranked group ``score`` scores."""
    for group in ranked_groups(pruner):
        scores = score(group)
        if scores is not None:
            channel_groups = pruner._get_channel_groups(group)
            yield group, channel_groups, scores.float().cpu().view(channel_groups, -1)


def _ranked(pruner: tp.pruner.BasePruner, names: Mapping[nn.Module, str], score: Scorer) -> list[_Ranked]:
    records = []
    with torch.no_grad():
        for group, channel_groups, per_group in _scored_groups(pruner, score):
            layers = tuple(
                names[dep.target.module]
                for i, (dep, _) in enumerate(group)
                if i == 0 or (dep.handler in OUT_CHANNEL_FUNCTIONS and dep.target.module in names)
            )
            records.append(_Ranked(group, channel_groups, per_group.mean(0), layers, group_key(group, names)))
    return records


def _pruned_count(size: int, ratio: float) -> int:
    """Positions removed at ``ratio``: ``size - int(size * (1 - ratio))``, as torch-pruning counts."""
    return size - int(size * (1.0 - ratio))


def min_positions(pruner: tp.pruner.BasePruner, max_layer_ratio: float) -> dict[GroupKey, int]:
    """Positions each ranked group must keep so that it never loses more than ``max_layer_ratio``
    of its current positions, to pass to later plans as their floor (a cumulative cap)."""
    names = module_names(pruner.model)
    floors = {}
    for group in ranked_groups(pruner):
        size = len(group[0].idxs) // pruner._get_channel_groups(group)
        floors[group_key(group, names)] = max(1, math.ceil(size * (1.0 - max_layer_ratio)))
    return floors


def _cap(size: int, max_layer_ratio: float, floor: Optional[int]) -> int:
    keep = max(1, math.ceil(size * (1.0 - max_layer_ratio)) if floor is None else floor)
    return max(0, size - keep)


def ranked_plan(
    pruner: tp.pruner.BasePruner,
    ratio: float,
    *,
    global_pruning: bool = True,
    layer_ratios: Optional[Mapping[str, float]] = None,
    max_layer_ratio: float = 0.9,
    importance: Optional[Scorer] = None,
    floors: Optional[Mapping[GroupKey, int]] = None,
    round_to: Optional[int] = None,
) -> list[PlanItem]:
    """Remove the lowest-scoring fraction ``ratio`` of channel positions.

    Args:
        pruner: gives the dependency graph and, unless ``importance`` is given, the scores.
        ratio: fraction of positions to remove (of all ranked positions when global, of each
            layer's otherwise).
        global_pruning: one ranking over all groups (scores must be comparable across layers,
            as log alpha is), else per layer.
        layer_ratios: layer name -> ratio for groups containing that layer (ranked alone).
        max_layer_ratio: no group loses more than this fraction of its positions in one plan.
        importance: scores to use instead of ``pruner.estimate_importance``.
        floors: positions each group keeps at least (:func:`min_positions`), replacing the
            per-plan ``max_layer_ratio`` cap for the groups listed.
        round_to: keep a multiple of this many positions in every pruned group (torch-pruning's
            ``round_to``): the highest-scoring of the chosen positions are spared to round up.
    """
    floors = floors or {}
    if round_to is not None and not (isinstance(round_to, int) and round_to >= 1):
        raise ConfigError(f"round_to must be an integer >= 1 or None, got {round_to!r}")
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"pruning ratio must lie in [0, 1), got {ratio}")
    layer_ratios = dict(layer_ratios or {})
    names = module_names(pruner.model)
    unknown = sorted(set(layer_ratios) - set(names.values()))
    if unknown:
        raise ConfigError(f"layer_ratios names {', '.join(map(repr, unknown))}, which the model does not have")
    records = _ranked(pruner, names, importance or pruner.estimate_importance)
    chosen: dict[int, list[int]] = {}
    pooled = []
    for index, record in enumerate(records):
        size = record.scores.numel()
        own = [layer_ratios[n] for n in record.names if n in layer_ratios]
        if own or not global_pruning:
            count = min(_pruned_count(size, own[0] if own else ratio), _cap(size, max_layer_ratio, floors.get(record.key)))
            chosen[index] = torch.argsort(record.scores, stable=True)[:count].tolist()
        else:
            pooled.append(index)
    if pooled:
        total = sum(records[i].scores.numel() for i in pooled)
        budget = _pruned_count(total, ratio)
        candidates = sorted(
            ((float(records[i].scores[p]), i, p) for i in pooled for p in range(records[i].scores.numel())),
        )
        caps = {i: _cap(records[i].scores.numel(), max_layer_ratio, floors.get(records[i].key)) for i in pooled}
        for score, i, p in candidates:
            if budget == 0:
                break
            taken = chosen.setdefault(i, [])
            if len(taken) < caps[i]:
                taken.append(p)
                budget -= 1
    plan = []
    for index, positions in chosen.items():
        if round_to is not None and positions:
            size = records[index].scores.numel()
            kept = -(-(size - len(positions)) // round_to) * round_to
            positions = sorted(positions, key=lambda p: float(records[index].scores[p]))[: max(size - kept, 0)]
        if positions:
            record = records[index]
            plan.append(_item(record.group, positions, record.channel_groups, record.scores.numel(), names))
    return plan


def dead_channel_plan(
    pruner: tp.pruner.BasePruner, is_dead: Callable[[Tensor], Tensor], importance: Optional[Scorer] = None
) -> list[PlanItem]:
    """Remove every position whose score is dead in all channel groups of its layer.

    A group whose every position is dead keeps its highest-scoring one, so the network stays
    connected (a warning names it).

    Args:
        pruner: gives the dependency graph and the scores.
        is_dead: scores -> bool tensor, e.g. ``lambda s: s <= -threshold`` for
            :class:`VariationalImportance` or ``lambda s: s < 0.5`` for :class:`MaskImportance`.
        importance: scores to use instead of ``pruner.estimate_importance``.
    """
    names = module_names(pruner.model)
    score = importance or pruner.estimate_importance
    plan = []
    with torch.no_grad():
        for group, channel_groups, per_group in _scored_groups(pruner, score):
            dead = is_dead(per_group).all(dim=0)
            positions = dead.nonzero().flatten()
            if positions.numel() == 0:
                continue
            if positions.numel() == dead.numel():
                best = int(per_group.mean(0).argmax())
                positions = positions[positions != best]
                warnings.warn(
                    f"every channel of {names[group[0].dep.target.module]} (and its coupled layers) is pruned; "
                    "one is kept so the network stays connected",
                    stacklevel=2,
                )
                if positions.numel() == 0:
                    continue
            plan.append(_item(group, positions.tolist(), channel_groups, dead.numel(), names))
    return plan


def _group_of(model: nn.Module, graph: tp.DependencyGraph, item: PlanItem) -> tp.Group:
    try:
        module = model.get_submodule(item.layer)
    except AttributeError:
        raise CheckpointError(f"the pruning plan names layer {item.layer!r}, which the model does not have") from None
    pruner = graph.get_pruner_of_module(module)
    fn = pruner.prune_out_channels if item.out_channels else pruner.prune_in_channels
    return pruning_group(graph, module, fn, list(item.indices))


def removed_channels(model: nn.Module, graph: tp.DependencyGraph, plan: Sequence[PlanItem]) -> dict[str, list[int]]:
    """Output channels each layer loses under ``plan`` (producers and BatchNorms), before it is applied."""
    names = module_names(model)
    removed: dict[str, list[int]] = {}
    for item in plan:
        for dep, idxs in _group_of(model, graph, item):
            target = dep.target.module
            if isinstance(target, nn.Module) and target in names and dep.handler in PRODUCER_FUNCTIONS + NORM_FUNCTIONS:
                removed.setdefault(names[target], [])
                removed[names[target]] = sorted(set(removed[names[target]]) | {int(i) for i in idxs})
    return removed


def zero_shifts(model: nn.Module, removed: Mapping[str, Sequence[int]]) -> list[str]:
    """Zero the shifts of the channels in ``removed``: BatchNorm bias and running mean, Conv/Linear bias.

    A masked channel reaches its BatchNorm as 0 and leaves it as the shift
    beta - gamma * mean / sqrt(var + eps), which a pruned model no longer adds (likewise a
    Conv/Linear bias left on a masked weight row). With those shifts at 0 the masked model
    computes exactly what the pruned one does. Returns the names of the layers changed.
    """
    changed = []
    with torch.no_grad():
        for name, indices in removed.items():
            module = model.get_submodule(name)
            if not indices:
                continue
            index = torch.as_tensor(list(indices), dtype=torch.long)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                if module.bias is not None:
                    module.bias[index] = 0.0
                if module.running_mean is not None:
                    module.running_mean[index] = 0.0
            elif isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) and module.bias is not None:
                module.bias[index] = 0.0
            else:
                continue
            changed.append(name)
    return changed


@dataclass(frozen=True)
class ChannelRemoval:
    """A plan as applied, and the output channels each layer lost (numbered as before)."""

    plan: list[PlanItem]
    removed: dict[str, list[int]]

    @property
    def channels_removed(self) -> int:
        """Output channels removed from Conv/Linear/BatchNorm layers, counted per layer."""
        return sum(len(v) for v in self.removed.values())


def apply_plan(
    model: nn.Module,
    graph: tp.DependencyGraph,
    plan: Sequence[PlanItem],
    rescale_queries: bool = True,
    on_group: Optional[Callable[[tp.Group], None]] = None,
) -> list[PlanItem]:
    """Remove the planned channels from ``model`` in place; returns the items applied.

    Groups are rebuilt from the graph right before each removal (indices through concatenations
    shift as other groups shrink). Gates of channel-gated layers are pruned with their weights;
    attention attributes follow (see :mod:`.attention`). An item torch-pruning refuses (it would
    remove every channel of a layer) is skipped with a warning. ``on_group`` sees every group
    just before it is pruned.
    """
    before = head_dims(model)
    applied = []
    for item in plan:
        group = _group_of(model, graph, item)
        if not graph.check_pruning_group(group):
            warnings.warn(f"skipped pruning {item.layer}: it would remove every channel of a coupled layer", stacklevel=2)
            continue
        if on_group is not None:
            on_group(group)
        group.prune(record_history=False)
        applied.append(item)
    update_attention(model, before, rescale_queries=rescale_queries)
    return applied


__all__ = [
    "PlanItem",
    "plan_to_json",
    "plan_from_json",
    "ranked_plan",
    "min_positions",
    "dead_channel_plan",
    "removed_channels",
    "zero_shifts",
    "ChannelRemoval",
    "apply_plan",
]
