"""MACs and parameters, and finding the pruning ratio that meets a MAC budget.

MACs are counted by torch-pruning's ``tp.utils.count_ops_and_params`` (multiply-accumulates of
Conv/Linear/attention layers, plus the element-wise work of norms and activations, for one
sample of the given shape) on a copy of the model on PyTorch's ``meta`` device: shapes only, no
arithmetic, so every count is fast and does not depend on CPU kernels warming up. Variational
layers are counted as the plain layers they finalize to.

Channel pruning by ranking removes a fraction of channel positions, not of MACs;
:func:`plan_for_macs` bisects that fraction on meta-device copies of the model until the pruned
copy's MACs are at most the budget (and within :data:`MACS_TOLERANCE` of it). With a fixed
ranking the removed set only grows with the fraction, so MACs fall monotonically.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import torch
import torch.nn as nn
import torch_pruning as tp
from torch import Tensor

from vs_plugin.errors import ConfigError
from vs_plugin.layers.base import VariationalLayer
from vs_plugin.variationalize import finalize

from .graph import ExampleInputs, build_pruner, module_names
from .importance import FrozenImportance, GroupKey
from .plan import PlanItem, apply_plan, ranked_plan

#: Most bisection steps on the pruning fraction (it is then known to within 2^-10).
SEARCH_ITERATIONS = 10
#: The search stops once the pruned MACs lie within this fraction below the budget.
MACS_TOLERANCE = 0.005


def to_meta(inputs: ExampleInputs) -> ExampleInputs:
    if isinstance(inputs, torch.Tensor):
        return inputs.to("meta")
    return type(inputs)(to_meta(x) for x in inputs)


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the meta device (shapes only, no data copied), variational layers finalized."""
    memo: dict = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        meta = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(meta, requires_grad=tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta
    candidate = copy.deepcopy(model, memo)
    if any(isinstance(m, VariationalLayer) for m in candidate.modules()):
        finalize(candidate)
    return candidate


@torch.no_grad()
def count_macs_params(model: nn.Module, example_inputs: ExampleInputs) -> tuple[int, int]:
    """(MACs, parameters) of ``model`` (as plain layers) for ``example_inputs`` (a batch of one)."""
    candidate = meta_copy(model).eval()
    macs, params = tp.utils.count_ops_and_params(candidate, to_meta(example_inputs))
    return int(macs), int(params)


@dataclass(frozen=True)
class MacsSearch:
    """Outcome of :func:`plan_for_macs`: the plan, the fraction of positions it removes, and MACs."""

    plan: list[PlanItem]
    ratio: float
    macs_before: int
    macs_after: int
    target_macs: float


def plan_for_macs(
    model: nn.Module,
    example_inputs: ExampleInputs,
    scores: Mapping[GroupKey, Tensor],
    target_macs: float,
    *,
    global_pruning: bool = True,
    layer_ratios: Optional[Mapping[str, float]] = None,
    max_layer_ratio: float = 0.9,
    ignored_layers: Sequence[str] = (),
    floors: Optional[Mapping[GroupKey, int]] = None,
    round_to: Optional[int] = None,
) -> MacsSearch:
    """The ranked plan with the fewest removals whose pruned model has at most ``target_macs`` MACs.

    Args:
        model: the model to prune (not changed: trials run on copies).
        example_inputs: a batch of one.
        scores: group scores of ``model`` (:func:`snapshot_scores`), higher = keep.
        target_macs: the MAC budget (absolute).
        global_pruning / layer_ratios / max_layer_ratio / floors / round_to: as in :func:`ranked_plan`.
        ignored_layers: module names whose output channels are kept.

    Raises:
        ConfigError: when even the largest allowed fraction leaves more MACs than the budget.
    """
    template = meta_copy(model)
    meta_inputs = to_meta(example_inputs)
    macs_before = int(tp.utils.count_ops_and_params(template.eval(), meta_inputs)[0])
    if macs_before <= target_macs:
        return MacsSearch([], 0.0, macs_before, macs_before, target_macs)

    def trial(ratio: float) -> tuple[list[PlanItem], int]:
        candidate = copy.deepcopy(template)
        pruner = build_pruner(
            candidate, meta_inputs, FrozenImportance(scores, module_names(candidate)), ignored_layers=ignored_layers, warn=False
        )
        plan = ranked_plan(
            pruner, ratio, global_pruning=global_pruning, layer_ratios=layer_ratios, max_layer_ratio=max_layer_ratio, floors=floors,
            round_to=round_to,
        )
        apply_plan(candidate, pruner.DG, plan)
        with torch.no_grad():
            return plan, int(tp.utils.count_ops_and_params(candidate.eval(), meta_inputs)[0])

    low, high = 0.0, max_layer_ratio
    best_plan, best_macs = trial(high)
    if best_macs > target_macs:
        raise ConfigError(
            f"cannot reach {target_macs / macs_before:.1%} of the MACs: with every layer pruned as far as "
            f"max_layer_ratio={max_layer_ratio} allows, the model keeps {best_macs / macs_before:.1%}; raise max_layer_ratio or the target"
        )
    best_ratio = high
    for _ in range(SEARCH_ITERATIONS):
        if best_macs >= target_macs * (1.0 - MACS_TOLERANCE):
            break
        middle = (low + high) / 2
        plan, macs = trial(middle)
        if macs <= target_macs:
            high, best_plan, best_macs, best_ratio = middle, plan, macs, middle
        else:
            low = middle
    return MacsSearch(best_plan, best_ratio, macs_before, best_macs, target_macs)


__all__ = ["count_macs_params", "meta_copy", "to_meta", "MacsSearch", "plan_for_macs", "SEARCH_ITERATIONS", "MACS_TOLERANCE"]
