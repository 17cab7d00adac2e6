"""torch-pruning's dependency graph on any model, variational (channel-gated) or plain.

torch-pruning traces autograd to find which channels are coupled (residual adds, depthwise
convolutions, concatenations, attention heads). This module prepares every model the same way
before torch-pruning sees it:

- channel-gated layers are registered with :func:`.gates.gate_pruners` (their gates are pruned
  with their channels by torch-pruning itself) and run their plain layer's forward
  while the graph is traced, so the graph is the one of the plain architecture (the gate product
  would otherwise add spurious nodes between a layer and its consumers);
- the classifier head and any layer named by the caller are ignored (the logits keep their width);
- timm-style attention (a module with a Linear ``qkv`` and an int ``num_heads``) is passed as
  ``num_heads={attn.qkv: attn.num_heads}`` in a fresh dict (torch-pruning mutates the dicts it is
  given, including a shared default);
- parameters that belong to no layer type torch-pruning knows (ViT's ``cls_token`` and
  ``pos_embed``, ConvNeXt's ``gamma``) are passed as ``unwrapped_parameters`` (param, dim) tuples,
  pruned along their last non-singleton dimension, which is torch-pruning's own default made
  explicit;
- layers torch-pruning cannot handle ("opaque": a layer type it has no pruning function for that
  holds a weight matrix, e.g. ``nn.Bilinear``, ``nn.GRU`` or a custom convolution) are registered
  with a pruning function that refuses to prune, and every group that touches them is skipped
  with a warning instead of crashing or mangling their weights.
"""

from __future__ import annotations

import contextlib
import types
import warnings
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch_pruning as tp
from torch_pruning import ops
from torch_pruning.pruner import function

from vs_plugin.errors import ConfigError, ModelError
from vs_plugin.layers.base import VariationalLayer
from vs_plugin.variationalize import head_name

from .bound import bounded_analysis
from .gates import gate_pruners
from .importance import GuardedImportance

ExampleInputs = Union[torch.Tensor, Sequence[torch.Tensor]]


def attention_heads(model: nn.Module) -> dict[nn.Module, int]:
    """``{attn.qkv: attn.num_heads}`` for every timm-style attention module, in a new dict."""
    heads: dict[nn.Module, int] = {}
    for module in model.modules():
        qkv = getattr(module, "qkv", None)
        num_heads = getattr(module, "num_heads", None)
        if isinstance(qkv, nn.Linear) and isinstance(num_heads, int) and num_heads > 1:
            heads[qkv] = num_heads
    return heads


def _known_to_torch_pruning(module: nn.Module) -> bool:
    return ops.module2type(module) != ops.OPTYPE.ELEMENTWISE


def opaque_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Layers torch-pruning cannot prune through: an unknown layer type holding a weight matrix.

    A parameter of an unknown module is safe when torch-pruning's default (prune the last
    non-singleton dimension) is right for it: per-channel vectors (``gamma`` of shape (C,)) and
    tokens or embeddings with a leading singleton dimension ((1, 1, C), (1, N, C)). Anything else
    (``nn.Bilinear.weight`` (out, in1, in2), a GRU's (3H, in) matrices, a custom conv kernel) is
    not, so its layer is opaque.
    """
    found = []
    for name, module in model.named_modules():
        if _known_to_torch_pruning(module):
            continue
        for parameter in module.parameters(recurse=False):
            if parameter.dim() >= 2 and parameter.shape[0] > 1:
                found.append((name, module))
                break
    return found


class OpaquePruner(function.BasePruningFunc):
    """Pruning function for layers torch-pruning cannot handle: it reports no channels, refuses to
    prune, and has distinct in/out functions so that channels do not propagate through it."""

    TARGET_MODULES = None

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        raise ModelError(f"refusing to prune the output channels of {type(layer).__name__}: torch-pruning cannot handle it")

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        raise ModelError(f"refusing to prune the input channels of {type(layer).__name__}: torch-pruning cannot handle it")

    def get_out_channels(self, layer: nn.Module) -> None:
        return None

    def get_in_channels(self, layer: nn.Module) -> None:
        return None


def _last_non_singleton_dim(parameter: torch.Tensor) -> Optional[int]:
    dims = [i for i, size in enumerate(parameter.shape) if size > 1]
    return dims[-1] if dims else None


def unwrapped_parameters(model: nn.Module, opaque: Sequence[nn.Module]) -> list[tuple[nn.Parameter, int]]:
    """(param, dim) for every parameter of a module torch-pruning does not know (opaque ones excluded)."""
    skip = {id(m) for m in opaque}
    found = []
    for module in model.modules():
        if _known_to_torch_pruning(module) or id(module) in skip:
            continue
        for parameter in module.parameters(recurse=False):
            dim = _last_non_singleton_dim(parameter)
            if dim is not None:
                found.append((parameter, dim))
    return found


@contextlib.contextmanager
def plain_forward(model: nn.Module) -> Iterator[None]:
    """Within the block, every variational layer of ``model`` runs its plain layer's forward.

    The graph torch-pruning traces is then the plain architecture's. Training flags of all
    modules are restored on exit (torch-pruning's tracer switches the model to eval mode).
    """
    modes = [(module, module.training) for module in model.modules()]
    patched = []
    for module in model.modules():
        if isinstance(module, VariationalLayer):
            module.forward = types.MethodType(module.plain_type.forward, module)
            patched.append(module)
    try:
        with torch.enable_grad():
            yield
    finally:
        for module in patched:
            del module.forward
        for module, training in modes:
            module.training = training


def resolve_layers(model: nn.Module, names: Sequence[str], what: str) -> list[nn.Module]:
    """Modules of ``model`` by qualified name; a clear error names an unknown one."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ConfigError(f"{what} names {', '.join(map(repr, missing))}, which {type(model).__name__} does not have")
    return [modules[n] for n in names]


def ignored_modules(model: nn.Module, ignored: Sequence[str] = ()) -> list[nn.Module]:
    """The classifier head plus the named layers: their output channels are never pruned."""
    names = list(ignored)
    head = head_name(model)
    if head is not None and head not in names:
        names.append(head)
    return resolve_layers(model, names, "ignored_layers")


def _warn_opaque(opaque: Sequence[tuple[str, nn.Module]]) -> None:
    if opaque:
        listed = ", ".join(f"{name} ({type(module).__name__})" for name, module in opaque)
        warnings.warn(
            f"torch-pruning cannot prune through {listed}; the channels they read or write are kept",
            stacklevel=4,
        )


def graph_options(model: nn.Module, warn: bool = True) -> dict:
    """Keyword arguments for torch-pruning's graph builders (pruners and ``DependencyGraph``)."""
    opaque = opaque_layers(model)
    if warn:
        _warn_opaque(opaque)
    return {
        "customized_pruners": {**gate_pruners(), **{type(module): OpaquePruner() for _, module in opaque}},
        "unwrapped_parameters": unwrapped_parameters(model, [m for _, m in opaque]),
        "blocked": frozenset(id(m) for _, m in opaque),
    }


def build_graph(model: nn.Module, example_inputs: ExampleInputs) -> tp.DependencyGraph:
    """A ``DependencyGraph`` of ``model`` prepared as described in the module docstring."""
    options = graph_options(model, warn=False)
    with bounded_analysis(model, "building the dependency graph"), plain_forward(model):
        graph = tp.DependencyGraph().build_dependency(
            model,
            example_inputs=example_inputs,
            customized_pruners=options["customized_pruners"],
            unwrapped_parameters=options["unwrapped_parameters"],
            verbose=False,
        )
    return graph


def pruner_arguments(
    model: nn.Module, importance: tp.importance.Importance, ignored_layers: Sequence[str] = (), warn: bool = True
) -> dict:
    """Keyword arguments of ``BasePruner.__init__`` (besides model and inputs) prepared for ``model``.

    The importance is wrapped so that groups touching an opaque layer or the model's output get
    no score; the head and ``ignored_layers`` are ignored; every dict argument is fresh.
    """
    options = graph_options(model, warn=warn)
    return {
        "importance": GuardedImportance(importance, options["blocked"]),
        "ignored_layers": ignored_modules(model, ignored_layers),
        "num_heads": attention_heads(model),
        "in_channel_groups": {},
        "out_channel_groups": {},
        "channel_groups": {},
        "customized_pruners": options["customized_pruners"],
        "unwrapped_parameters": options["unwrapped_parameters"],
    }


def build_pruner(
    model: nn.Module,
    example_inputs: ExampleInputs,
    importance: tp.importance.Importance,
    *,
    ignored_layers: Sequence[str] = (),
    pruner_class: Callable[..., tp.pruner.BasePruner] = tp.pruner.BasePruner,
    warn: bool = True,
    **pruner_kwargs,
) -> tp.pruner.BasePruner:
    """A torch-pruning pruner for ``model``, prepared as in the module docstring.

    vs-plugin selects channels itself (:mod:`.plan`); the pruner provides the dependency graph,
    the importance protocol and, for regularising pruners, ``regularize``.

    Args:
        model: the model to prune (plain or channel-gated).
        example_inputs: inputs for tracing (a batch of one is enough).
        importance: channel scores, higher = keep.
        ignored_layers: module names whose output channels are kept (the head always is).
        pruner_class: ``BasePruner`` or a subclass (e.g. ``GroupNormPruner``).
        warn: warn about opaque layers.
        **pruner_kwargs: further arguments of ``pruner_class`` (e.g. ``reg``).
    """
    arguments = pruner_arguments(model, importance, ignored_layers, warn=warn)
    with bounded_analysis(model, "building the pruner's groups"), plain_forward(model):
        pruner = pruner_class(model, example_inputs, **arguments, **pruner_kwargs)
    return pruner


def module_names(model: nn.Module) -> dict[nn.Module, str]:
    return {module: name for name, module in model.named_modules()}


__all__ = [
    "ExampleInputs",
    "attention_heads",
    "opaque_layers",
    "OpaquePruner",
    "unwrapped_parameters",
    "plain_forward",
    "resolve_layers",
    "ignored_modules",
    "graph_options",
    "build_graph",
    "pruner_arguments",
    "build_pruner",
    "module_names",
]
