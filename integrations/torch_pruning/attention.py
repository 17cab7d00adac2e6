"""timm-style attention after head dimensions were pruned: attributes and the logit scale.

torch-pruning removes the same positions from every head of ``attn.qkv`` (q, k and v) and from
the input of ``attn.proj``, but leaves the module's Python attributes alone. Afterwards
``head_dim``, ``attn_dim`` and ``scale`` must follow the new width (``num_heads`` is unchanged:
vs-plugin prunes head dimensions, not whole heads).

The logit scale changes with the head width: timm's fused path calls
``F.scaled_dot_product_attention``, whose default scale is ``head_dim ** -0.5`` of the *pruned*
width. To keep the function of the unpruned model (where removed dimensions were zero), the
query rows of ``qkv`` are multiplied by ``sqrt(new / old)``:

.. math::  (\\sqrt{d'/d}\\,q)\\cdot k\\,/\\sqrt{d'} = q\\cdot k/\\sqrt{d}.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn as nn

from vs_plugin.errors import CheckpointError


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every timm-style attention: a Linear ``qkv``, int ``num_heads`` and ``head_dim``."""
    found = []
    for name, module in model.named_modules():
        if isinstance(getattr(module, "qkv", None), nn.Linear) and isinstance(getattr(module, "num_heads", None), int) and isinstance(getattr(module, "head_dim", None), int):
            found.append((name, module))
    return found


def head_dims(model: nn.Module) -> dict[str, int]:
    """Current ``head_dim`` of every attention module, by name."""
    return {name: module.head_dim for name, module in attention_modules(model)}


def _set_width(module: nn.Module, head_dim: int) -> None:
    module.head_dim = head_dim
    if hasattr(module, "attn_dim"):
        module.attn_dim = module.num_heads * head_dim
    if hasattr(module, "scale"):
        module.scale = head_dim ** -0.5


def update_attention(model: nn.Module, before: Mapping[str, int], rescale_queries: bool = True) -> None:
    """Make every attention module's attributes match its pruned ``qkv``.

    Args:
        model: the pruned model.
        before: ``head_dims(model)`` taken before pruning.
        rescale_queries: fold ``sqrt(new / old)`` into the query rows (see the module docstring);
            False when the weights loaded afterwards already carry it.
    """
    for name, module in attention_modules(model):
        new = module.qkv.out_features // (3 * module.num_heads)
        old = before.get(name, module.head_dim)
        if new == old:
            continue
        if rescale_queries:
            rows = module.num_heads * new
            factor = math.sqrt(new / old)
            with torch.no_grad():
                module.qkv.weight[:rows] *= factor
                if module.qkv.bias is not None:
                    module.qkv.bias[:rows] *= factor
        _set_width(module, new)
    update_linear_self_attention(model)


def update_linear_self_attention(model: nn.Module) -> None:
    """timm's ``LinearSelfAttention`` (MobileViTv2) splits ``qkv_proj``'s output as
    ``[1, embed_dim, embed_dim]``: keep ``embed_dim`` equal to the pruned width."""
    for module in model.modules():
        qkv = getattr(module, "qkv_proj", None)
        if isinstance(qkv, nn.modules.conv._ConvNd) and isinstance(getattr(module, "embed_dim", None), int):
            module.embed_dim = (qkv.out_channels - 1) // 2


def attention_spec(model: nn.Module) -> dict[str, dict[str, int]]:
    """``{name: {"num_heads", "head_dim"}}`` for the saved spec of a pruned model."""
    return {name: {"num_heads": m.num_heads, "head_dim": m.head_dim} for name, m in attention_modules(model)}


def apply_attention_spec(model: nn.Module, spec: Mapping[str, Mapping[str, int]]) -> None:
    """Set the attention widths stored by :func:`attention_spec` (no weight change)."""
    modules = dict(attention_modules(model))
    for name, values in spec.items():
        if name not in modules:
            raise CheckpointError(f"the pruned spec names attention module {name!r}, which the rebuilt model does not have")
        modules[name].num_heads = int(values["num_heads"])
        _set_width(modules[name], int(values["head_dim"]))
    update_linear_self_attention(model)


__all__ = ["attention_modules", "head_dims", "update_attention", "update_linear_self_attention", "attention_spec", "apply_attention_spec"]
