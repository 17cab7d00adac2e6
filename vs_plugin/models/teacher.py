"""The teacher as users have it: built by name, then weights from a local checkpoint
(:mod:`.weights`: plain state_dict, timm ``train.py`` checkpoint with EMA weights preferred,
safetensors), a timm / Hugging Face model folder (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``, loaded by timm's own loader through ``pretrained_cfg_overlay=dict(file=...)``),
or hub weights (``--pretrained``, :mod:`.pretrained`).

A classifier head whose class count differs from the data's is an error, unless
``reset_head``: then the head is re-initialised for the data's classes and the run fine-tunes the
teacher (``teacher_epochs``) before distilling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch.nn as nn

from ..errors import CheckpointError, ConfigError, ModelError
from .pretrained import timm_pretrained, torchvision_pretrained, transforms_of_torchvision_weights
from .registry import InputSpec, build_model, create_timm_model
from .weights import fit_problems, load_state, read_checkpoint

#: Weight files of a timm / Hugging Face model folder, in order of preference.
FOLDER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
FOLDER_CONFIG = "config.json"
RESET_HINT = "pass --reset-head to re-initialise the head for the data's classes and fine-tune the teacher"


@dataclass(frozen=True)
class TeacherSource:
    """Where the teacher's weights come from: a local ``checkpoint`` (file or model folder), the
    hub (``pretrained``), or nowhere (trained here). ``reset_head`` re-initialises the classifier."""

    checkpoint: Optional[Union[str, Path]] = None
    pretrained: bool = False
    reset_head: bool = False

    def __post_init__(self) -> None:
        if self.checkpoint is not None and self.pretrained:
            raise ConfigError("give either --pretrained or --teacher-checkpoint, not both")

    @property
    def has_weights(self) -> bool:
        return self.checkpoint is not None or self.pretrained


def is_model_folder(path: Union[str, Path]) -> bool:
    return Path(path).is_dir() and (Path(path) / FOLDER_CONFIG).is_file()


def read_folder_config(path: Union[str, Path]) -> tuple[dict, Path]:
    """``config.json`` of a timm/HF model folder and its weight file."""
    path = Path(path)
    try:
        config = json.loads((path / FOLDER_CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"could not read {path / FOLDER_CONFIG}: {str(error).splitlines()[0][:200]}") from None
    weights = next((path / name for name in FOLDER_WEIGHTS if (path / name).is_file()), None)
    if weights is None:
        raise CheckpointError(f"model folder {path} holds no {' or '.join(FOLDER_WEIGHTS)}")
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise CheckpointError(f"{path / FOLDER_CONFIG} names no 'architecture' (a timm model folder written by timm's save_for_hf)")
    return config, weights


def _family(name: str) -> tuple[str, str]:
    family, _, argument = name.partition(":")
    return family, argument


def head_module_names(model: nn.Module) -> list[str]:
    """Names of the classifier head's modules: timm's ``get_classifier()``, else the last Linear."""
    getter = getattr(model, "get_classifier", None)
    head = getter() if callable(getter) else None
    if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
        return [name for name, module in model.named_modules() if module is head or _inside(module, head)]
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return linears[-1:]


def _inside(module: nn.Module, head: nn.Module) -> bool:
    return any(module is child for child in head.modules())


def head_parameter_names(model: nn.Module) -> set[str]:
    """State-dict names that belong to the classifier head."""
    prefixes = [name + "." for name in head_module_names(model)]
    return {key for key in model.state_dict() if any(key.startswith(p) for p in prefixes)}


def reset_head(model: nn.Module, num_classes: int) -> None:
    """A freshly initialised classifier with ``num_classes`` outputs."""
    resetter = getattr(model, "reset_classifier", None)
    if callable(resetter):
        resetter(num_classes)
        return
    names = head_module_names(model)
    if not names:
        raise ModelError(f"cannot find the classifier head of {type(model).__name__} to re-initialise it")
    name = names[-1]
    old = model.get_submodule(name)
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, nn.Linear(old.in_features, num_classes, old.bias is not None))


def _head_mismatch(where: str, found: int, wanted: int) -> ModelError:
    return ModelError(f"class-count mismatch: {where} has a {found}-class head but the data has {wanted} classes; {RESET_HINT}")


def teacher_pretrained_cfg(name: str, source: TeacherSource) -> Optional[dict]:
    """The timm ``pretrained_cfg`` that sets the teacher's input pipeline (input size, mean/std,
    interpolation, crop), or None for models that are not ImageNet-style image models.

    timm: the architecture's default (pretrained) config, updated by a model folder's
    ``config.json``; torchvision: the eval transform of its DEFAULT weights.
    """
    family, argument = _family(name)
    if family == "timm":
        import timm

        config = timm.models.get_pretrained_cfg(argument) if argument and timm.is_model(argument) else None
        merged = config.to_dict() if config is not None else {}
        if source.checkpoint is not None and is_model_folder(source.checkpoint):
            merged.update(read_folder_config(source.checkpoint)[0].get("pretrained_cfg") or {})
        return merged
    if family == "torchvision":
        return transforms_of_torchvision_weights(argument) or {}
    return None


def load_teacher(name: str, spec: InputSpec, source: TeacherSource) -> tuple[nn.Module, dict]:
    """The teacher ``name`` for data shaped like ``spec``, with its weights; (model, report facts).

    The facts say where the weights came from (file, format, the nesting key and whether EMA
    weights were used, hub id), whether the head was re-initialised, and ``trained_here``: whether
    the run must (fine-)tune the teacher first.
    """
    if not source.has_weights:
        if source.reset_head:
            raise ConfigError("--reset-head needs teacher weights (--teacher-checkpoint or --pretrained)")
        return build_model(name, spec), {"source": "random initialisation, trained here", "trained_here": True, "head_reset": False}
    family, argument = _family(name)
    if source.pretrained:
        builders = {"timm": timm_pretrained, "torchvision": torchvision_pretrained}
        if family not in builders:
            raise ConfigError(f"--pretrained works with timm:<name> and torchvision:<name> teachers, not {name!r}")
        model, facts = builders[family](argument, spec)
        facts = {"source": "hub weights (--pretrained)", **facts}
        classes = facts["num_classes_pretrained"]
        where = f"the pretrained {name}"
    elif is_model_folder(source.checkpoint):
        model, facts, classes = _from_model_folder(name, spec, Path(source.checkpoint))
        where = f"the model folder {source.checkpoint}"
    else:
        return _from_checkpoint_file(name, spec, source)
    head_reset = classes != spec.num_classes or source.reset_head
    if classes != spec.num_classes and not source.reset_head:
        raise _head_mismatch(where, classes, spec.num_classes)
    if head_reset:
        reset_head(model, spec.num_classes)
    return model, {**facts, "head_reset": head_reset, "trained_here": head_reset}


def _from_model_folder(name: str, spec: InputSpec, folder: Path) -> tuple[nn.Module, dict, int]:
    family, argument = _family(name)
    config, weights = read_folder_config(folder)
    arch = config["architecture"]
    if family != "timm" or argument.split(".")[0] != arch.split(".")[0]:
        raise ModelError(f"the model folder {folder} holds timm:{arch}; pass --teacher timm:{arch}")
    classes = int(config.get("num_classes") or spec.num_classes)
    overlay = {k: v for k, v in (config.get("pretrained_cfg") or {}).items() if k not in ("source", "state_dict")}
    overlay.update(file=str(weights), num_classes=classes)
    try:
        model = create_timm_model(argument, spec, num_classes=classes, pretrained=True, pretrained_cfg_overlay=overlay)
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(f"timm could not load {weights} into {arch}: {str(error).strip().splitlines()[0][:200]}") from None
    facts = {"source": "timm/Hugging Face model folder", "checkpoint": str(folder), "file": str(weights), "format": weights.suffix.lstrip(".") or "bin", "num_classes_checkpoint": classes}
    return model, facts, classes


def _from_checkpoint_file(name: str, spec: InputSpec, source: TeacherSource) -> tuple[nn.Module, dict]:
    model = build_model(name, spec)
    contents = read_checkpoint(source.checkpoint)
    state = contents.state_dict
    head = head_parameter_names(model)
    missing, unexpected, mismatched = fit_problems(model, state)
    head_only = mismatched and set(mismatched) <= head and not missing and not unexpected
    facts = {"source": "checkpoint file", "checkpoint": str(source.checkpoint), **contents.describe()}
    if head_only and not source.reset_head:
        found = next(state[k].shape[0] for k in sorted(mismatched) if state[k].dim() >= 1)
        raise _head_mismatch(f"the checkpoint {source.checkpoint}", int(found), spec.num_classes)
    if source.reset_head:
        state = {k: v for k, v in state.items() if k not in head}
        kept = {k: v for k, v in model.state_dict().items() if k in head}
        load_state(model, {**state, **kept}, source.checkpoint)
        reset_head(model, spec.num_classes)
    else:
        load_state(model, state, source.checkpoint)
    return model, {**facts, "head_reset": source.reset_head, "trained_here": source.reset_head}
