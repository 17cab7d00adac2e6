"""Save and load a pruned model without pickling modules: a JSON spec plus a state_dict.

The spec names the architecture (as ``vs_plugin.models.build_model`` does), the input shape it
was traced with, and the pruning plan (torch-pruning's history: layer, output or input side,
indices, in the order they were applied). Loading builds the fresh model by name, replays the
plan through the dependency graph, sets the attention widths, checks every layer's width against
the spec, then loads the state_dict strictly. Both files are written atomically.

.. code-block:: json

    {"format": "vs-plugin-pruned/1", "model": "timm:resnet18", "input": [1, 28, 28],
     "num_classes": 10, "weights": "pruned.pt",
     "plan": [["layer1.0.conv1", true, [3, 17]], ...],
     "attention": {}, "widths": {"conv1": [32, 1], ...}}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from vs_plugin.errors import CheckpointError, ConfigError
from vs_plugin.io import atomic_torch_save, atomic_write_json
from vs_plugin.layers.base import VariationalLayer
from vs_plugin.models.registry import InputSpec, build_model
from vs_plugin.models.weights import (
    MAX_INPUT_ELEMENTS,
    build_for_weights,
    load_state,
    read_state_dict,
    weights_beside,
    with_metadata,
)

from .attention import apply_attention_spec, attention_spec
from .graph import build_graph
from .plan import PlanItem, apply_plan, plan_from_json, plan_to_json

PRUNED_FORMAT = "vs-plugin-pruned/1"
PRUNED_SPEC = "pruned.json"
PRUNED_WEIGHTS = "pruned.pt"
#: Layer types whose widths the spec records and loading checks.
WIDTH_LAYERS = (nn.Linear, nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.LayerNorm)


def layer_widths(model: nn.Module) -> dict[str, list[int]]:
    """``{name: [out, in]}`` of Conv/Linear layers and ``{name: [features]}`` of norms."""
    widths = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            widths[name] = [module.out_features, module.in_features]
        elif isinstance(module, nn.modules.conv._ConvNd):
            widths[name] = [module.out_channels, module.in_channels]
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            widths[name] = [module.num_features]
        elif isinstance(module, nn.LayerNorm):
            widths[name] = [int(s) for s in module.normalized_shape]
    return widths


def _spec_path(path: Union[str, Path]) -> Path:
    path = Path(path)
    return path / PRUNED_SPEC if path.is_dir() or not path.suffix else path


def save_pruned(
    model: nn.Module,
    path: Union[str, Path],
    plan: Sequence[PlanItem],
    *,
    input_shape: Sequence[int],
    num_classes: int,
    model_name: Optional[str] = None,
    extra: Optional[dict] = None,
) -> Path:
    """Write ``model``'s spec (JSON) and state_dict; returns the spec's path.

    Args:
        model: the pruned, plain model (finalize a variational student first).
        path: the spec file (``.json``) or a folder (then ``pruned.json`` in it); the weights go
            beside it as ``<stem>.pt``.
        plan: every removal applied, in order (``VariationalStudentPruner.history``,
            ``ChannelRemoval.plan``).
        input_shape: (C, H, W) of one sample (used to trace the fresh model when loading).
        num_classes: outputs of the model.
        model_name: name for ``build_model`` (``timm:resnet18``...); None when the model was
            built in Python (then pass a fresh instance to :func:`load_pruned`).
        extra: more JSON-serialisable facts to store under ``"extra"``.
    """
    if any(isinstance(m, VariationalLayer) for m in model.modules()):
        raise ConfigError("save_pruned needs a plain model: call vs_plugin.finalize(model) first")
    spec_path = _spec_path(path)
    weights_name = spec_path.with_suffix(".pt").name
    spec = {
        "format": PRUNED_FORMAT,
        "model": model_name,
        "input": [int(s) for s in input_shape],
        "num_classes": int(num_classes),
        "weights": weights_name,
        "plan": plan_to_json(plan),
        "attention": attention_spec(model),
        "widths": layer_widths(model),
        "params": sum(p.numel() for p in model.parameters()),
    }
    if extra:
        spec["extra"] = extra
    own = model.state_dict()
    state = with_metadata({k: v.detach().cpu() for k, v in own.items()}, getattr(own, "_metadata", None))
    atomic_torch_save(spec_path.parent / weights_name, state)
    atomic_write_json(spec_path, spec)
    return spec_path


def read_spec(path: Union[str, Path]) -> tuple[dict, Path]:
    """The spec stored at ``path`` (a spec file or a folder holding ``pruned.json``), and its path."""
    spec_path = _spec_path(path)
    try:
        spec = json.loads(spec_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{spec_path} does not exist; is it the output of a structured run?") from None
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"could not read {spec_path}: {str(error).splitlines()[0][:200]}") from None
    if not isinstance(spec, dict) or spec.get("format") != PRUNED_FORMAT:
        raise CheckpointError(f"{spec_path} is not a pruned-model spec ({PRUNED_FORMAT})")
    return spec, spec_path


def rebuild_pruned(spec: dict, model: Optional[nn.Module] = None) -> nn.Module:
    """Apply the spec's pruning to a fresh model (weights not loaded)."""
    if model is None:
        if not spec.get("model"):
            raise CheckpointError("the spec names no model architecture (it was built in Python); pass a fresh instance as model=")
        channels, height, width = spec["input"]
        model = build_model(spec["model"], InputSpec(channels, height, width, spec["num_classes"]))
    model.eval()
    example = torch.zeros(1, *spec["input"], device=next(model.parameters()).device)
    plan = plan_from_json(spec.get("plan", []))
    applied = apply_plan(model, build_graph(model, example), plan, rescale_queries=False)
    if len(applied) != len(plan):
        raise CheckpointError(f"only {len(applied)} of the {len(plan)} pruning steps in the spec could be replayed on this model")
    apply_attention_spec(model, spec.get("attention", {}))
    expected = spec.get("widths", {})
    actual = layer_widths(model)
    wrong = [f"{name} {actual.get(name)} vs {width}" for name, width in expected.items() if actual.get(name) != width]
    if wrong:
        shown = ", ".join(wrong[:3]) + (f" (+{len(wrong) - 3} more)" if len(wrong) > 3 else "")
        raise CheckpointError(f"the rebuilt model's widths differ from the spec: {shown}")
    return model


def load_pruned(path: Union[str, Path], model: Optional[nn.Module] = None) -> nn.Module:
    """The pruned model saved at ``path`` (spec file or folder), in eval mode.

    Args:
        path: a spec written by :func:`save_pruned`, or the folder holding ``pruned.json``.
        model: a fresh, unpruned instance of the architecture, when the spec names none.
    """
    spec, spec_path = read_spec(path)
    weights = weights_beside(spec_path, spec.get("weights", PRUNED_WEIGHTS))
    if model is None and spec.get("model"):
        try:
            channels, height, width = (int(v) for v in spec["input"])
            input_spec = InputSpec(channels, height, width, int(spec["num_classes"]))
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{spec_path} needs 'input' [C, H, W] and 'num_classes' as integers") from None
        model = build_for_weights(spec["model"], input_spec, weights, spec_path, pruned=True)
    elif model is not None:
        _check_input_size(spec, spec_path)
    model = rebuild_pruned(spec, model)
    state = read_state_dict(weights)
    if not isinstance(getattr(state, "_metadata", None), dict):
        # Written before the module versions were kept: the fresh model's are those of the code
        # that wrote the weights (the same architecture, rebuilt by the same library).
        state = with_metadata(state, getattr(model.state_dict(), "_metadata", None))
    load_state(model, state, weights)
    return model.eval()


def _check_input_size(spec: dict, spec_path: Path) -> None:
    try:
        elements = math.prod(int(v) for v in spec["input"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{spec_path} needs 'input' [C, H, W] as integers") from None
    if not 0 < elements <= MAX_INPUT_ELEMENTS:
        raise CheckpointError(f"{spec_path} names an input of {elements:,} values per sample; at most {MAX_INPUT_ELEMENTS:,} are accepted")


__all__ = [
    "PRUNED_FORMAT",
    "PRUNED_SPEC",
    "PRUNED_WEIGHTS",
    "layer_widths",
    "save_pruned",
    "read_spec",
    "rebuild_pruned",
    "load_pruned",
]
