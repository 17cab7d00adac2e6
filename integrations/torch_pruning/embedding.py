"""A physically pruned model written back into the unpruned architecture, with zeros.

Some consumers measure compression as zeros in the original shapes (``vs-plugin compare``
counts non-zero weights of the architecture it started from). :func:`expand_to_original` gives
them the pruned model in that form: every kept weight, bias and BatchNorm statistic at its
original position, every removed one at zero (BatchNorm running variance at one), so a removed
channel outputs exactly zero.

Which original position each kept value came from is found by replaying the pruning plan on a
float64 copy of the original whose every tensor holds its own flat indices (exact up to 2^53
entries): after the replay each surviving entry still holds the index it started at.

The expanded model computes what the pruned one does, except where removed channels pass through
a normalisation over channels (LayerNorm/GroupNorm: ViT and ConvNeXt residual streams), whose
statistics then include the zeros. Attention query rows are un-scaled by sqrt(old / new) head
widths (see :mod:`.attention`), since the expanded model has the original head width.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn

from .attention import attention_modules
from .graph import ExampleInputs, build_graph
from .plan import PlanItem, apply_plan


def _index_copy(original: nn.Module) -> nn.Module:
    indexed = copy.deepcopy(original).double()
    with torch.no_grad():
        for tensor in list(indexed.parameters()) + list(indexed.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(torch.arange(tensor.numel(), dtype=torch.float64, device=tensor.device).view_as(tensor))
    return indexed


def expand_to_original(original: nn.Module, pruned: nn.Module, plan: list[PlanItem], example_inputs: ExampleInputs) -> nn.Module:
    """A copy of ``original`` holding ``pruned``'s values at the kept positions and zeros elsewhere.

    Args:
        original: the model before pruning (plain layers; not changed).
        pruned: the pruned model (plain layers), obtained from ``original`` by ``plan``.
        plan: every removal, in order.
        example_inputs: a batch of one, for tracing.
    """
    indexed = _index_copy(original)
    inputs = example_inputs.double() if isinstance(example_inputs, torch.Tensor) else type(example_inputs)(x.double() for x in example_inputs)
    apply_plan(indexed, build_graph(indexed, inputs), plan, rescale_queries=False)
    positions = indexed.state_dict()
    values = pruned.state_dict()
    expanded = copy.deepcopy(original)
    with torch.no_grad():
        for key, target in expanded.state_dict().items():
            source = values[key]
            if not target.is_floating_point():
                target.copy_(source)
                continue
            filled = torch.ones_like(target) if key.endswith("running_var") else torch.zeros_like(target)
            index = positions[key].round().long().flatten().to(target.device)
            filled.view(-1)[index] = source.flatten().to(target.dtype)
            target.copy_(filled)
        widths = {name: module.head_dim for name, module in attention_modules(pruned)}
        for name, module in attention_modules(expanded):
            new = widths.get(name, module.head_dim)
            if new != module.head_dim:
                rows = module.num_heads * module.head_dim
                factor = math.sqrt(module.head_dim / new)
                module.qkv.weight[:rows] *= factor
                if module.qkv.bias is not None:
                    module.qkv.bias[:rows] *= factor
    return expanded


__all__ = ["expand_to_original"]
