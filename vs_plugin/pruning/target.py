"""Keep exactly the units a sparsity target allows: one global ranking, a floor per layer.

Given a score per unit (higher = more important) in every prunable layer, keep the
``K = round((1 - s) * total)`` best units of the whole model, where ``s`` is the target sparsity,
after first reserving each layer's best ``max(1, ceil(floor * (1 - s) * n_layer))`` units: a share
``floor`` of what a uniform allocation would give the layer, so that no layer is wiped out unless
the floor is set to 0, while the global ranking still places almost all of the budget (a floor
proportional to the layer size alone would, at 99% sparsity, eat the whole budget in the big
layers and starve the classifier head). Ties are broken by position, so the count is exact.

Scores: ``-log alpha`` for a variational student (Molchanov et al. 2017 rank weights by log alpha;
Gale et al. 2019, "The State of Sparsity in Deep Neural Networks", prune by it to a target), and
``|w|`` for magnitude pruning (Zhu & Gupta 2017).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import ConfigError
from ..layers.functional import THETA_EPS
from ..variationalize import variational_layers

#: Share of a layer's uniform allocation (1 - s) * n that the global ranking may not take away.
DEFAULT_LAYER_FLOOR = 0.2


def keep_count(total: int, sparsity: float) -> int:
    """Number of units kept at ``sparsity`` out of ``total`` (rounded to the nearest unit)."""
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"a target sparsity must lie in [0, 1), got {sparsity!r}")
    return int(round((1.0 - sparsity) * total))


def log_alpha_scores(model: nn.Module) -> dict[str, Tensor]:
    """-log alpha of every unit (weight or channel) of every variational layer, by layer name.

    Unclipped: the clip to [-c, c] only bounds the KL approximation, and clipped values tie (at
    +c, where most pruned weights sit), which would make the ranking arbitrary among them.
    """
    with torch.no_grad():
        return {
            name: -(log_sigma2.float() - torch.log(mean.float() ** 2 + THETA_EPS))
            for name, layer in variational_layers(model)
            for mean, log_sigma2 in [layer.variational_parameters()]
        }


def magnitude_scores(model: nn.Module, layer_names: tuple[str, ...]) -> dict[str, Tensor]:
    """|w| of every weight of the named layers (plain or variational: theta)."""
    modules = dict(model.named_modules())
    missing = [n for n in layer_names if n not in modules or not isinstance(getattr(modules[n], "weight", None), Tensor)]
    if missing:
        raise ConfigError(f"no weight to score in layer(s) {', '.join(missing)}")
    return {n: modules[n].weight.detach().abs().float() for n in layer_names}


def global_keep_masks(scores: Mapping[str, Tensor], sparsity: float, floor: float = DEFAULT_LAYER_FLOOR) -> dict[str, Tensor]:
    """Boolean keep masks (shaped like each score tensor) with exactly ``keep_count`` units kept.

    Args:
        scores: per layer, a tensor of unit scores (higher = keep).
        sparsity: the target fraction of units pruned over all the layers together, in [0, 1).
        floor: share of each layer's uniform allocation ``(1 - sparsity) * n`` kept whatever the
            global ranking says (at least one unit when > 0); 0 lets a layer be emptied.

    Raises:
        ConfigError: no layers, a bad sparsity or floor, or floors that alone exceed the budget.
    """
    if not scores:
        raise ConfigError("nothing to prune: the model has no prunable layer")
    if not 0.0 <= floor < 1.0:
        raise ConfigError(f"the per-layer floor must lie in [0, 1), got {floor!r}")
    names = list(scores)
    flat = [scores[n].reshape(-1).float() for n in names]
    sizes = [f.numel() for f in flat]
    budget = keep_count(sum(sizes), sparsity)
    # 1e-9: floor * (1 - s) * n is often an integer in exact arithmetic (0.2 * 0.01 * 2500 = 5).
    floors = [min(size, max(1, math.ceil(floor * (1.0 - sparsity) * size - 1e-9))) if floor > 0 else 0 for size in sizes]
    if sum(floors) > budget:
        raise ConfigError(
            f"sparsity {sparsity:.4f} keeps {budget} units, fewer than the per-layer floors need ({sum(floors)}); "
            "lower the target or the floor (floor=0 allows emptying layers)"
        )
    keep = [torch.zeros(size, dtype=torch.bool, device=f.device) for size, f in zip(sizes, flat)]
    for mask, values, count in zip(keep, flat, floors):
        if count:
            mask[torch.topk(values, count, sorted=False).indices] = True
    remaining = budget - sum(floors)
    if remaining:
        device = flat[0].device
        candidates = torch.cat([torch.where(m, torch.full_like(v, -math.inf), v).to(device) for m, v in zip(keep, flat)])
        # A unit already kept must not be chosen twice: -inf is below every finite score.
        chosen = torch.topk(torch.nan_to_num(candidates, nan=-math.inf, posinf=math.inf), remaining, sorted=False).indices
        chosen_mask = torch.zeros(candidates.numel(), dtype=torch.bool, device=device)
        chosen_mask[chosen] = True
        for mask, part in zip(keep, torch.split(chosen_mask, sizes)):
            mask |= part.to(mask.device)
    return {n: m.view_as(scores[n]) for n, m in zip(names, keep)}
