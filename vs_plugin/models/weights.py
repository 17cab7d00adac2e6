"""Load weights from a local file: a plain state_dict (``.pt``/``.pth``), a training checkpoint
that nests one (timm ``train.py``: ``{'state_dict', 'state_dict_ema', 'arch', 'args', ...}``), or
``.safetensors``; never from a hub (hub weights: :mod:`vs_plugin.models.pretrained`)."""

from __future__ import annotations

import argparse
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn

from ..errors import CheckpointError
from ..io import load_tensors
from .registry import InputSpec, build_model

#: Keys under which training scripts nest the state_dict, in order of preference: the EMA
#: weights first (timm's ``train.py`` writes ``state_dict_ema`` when trained with ``--model-ema``
#: and evaluates and ships them; timm's own ``load_checkpoint`` prefers them too).
NESTED_STATE_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "model_state_dict")
#: Prefix DataParallel / DistributedDataParallel put before every name (timm's ``clean_state_dict`` strips it).
WRAPPER_PREFIX = "module."


@dataclass(frozen=True)
class CheckpointContents:
    """The tensors read from a file and where in the file they came from.

    Attributes:
        state_dict: name -> tensor.
        key: the nesting key used (``state_dict_ema``...), None for a plain state_dict.
        format: ``state_dict``, ``training checkpoint`` or ``safetensors``.
        arch: the architecture the checkpoint names (timm's ``arch``), if any.
    """

    state_dict: dict
    key: Optional[str]
    format: str
    arch: Optional[str] = None

    def describe(self) -> dict:
        """What the report says about the file."""
        return {
            "format": self.format,
            "state_dict_key": self.key,
            "ema": self.key in ("state_dict_ema", "model_ema"),
            "arch": self.arch,
        }


def read_checkpoint(path: Union[str, Path]) -> CheckpointContents:
    """The state_dict stored in ``path`` and how it was found; a clear error when missing or unreadable."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors.torch import load_file

        try:
            data = load_file(str(path), device="cpu")
        except Exception:  # noqa: BLE001 - every reader failure means "corrupt"
            raise CheckpointError(f"checkpoint {path} is not a safetensors file or is damaged") from None
    else:
        # timm train.py checkpoints store the run's argparse.Namespace under 'args': allow that one
        # plain-data class and nothing else (weights_only stays on).
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = load_tensors(path, "checkpoint")
    key, arch = None, None
    if isinstance(data, dict):
        arch = data.get("arch") if isinstance(data.get("arch"), str) else None
        for candidate in NESTED_STATE_KEYS:
            if isinstance(data.get(candidate), dict) and data[candidate]:
                key = candidate
                data = data[candidate]
                break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"checkpoint {path} holds no state_dict (a mapping of names to tensors)")
    metadata = getattr(data, "_metadata", None)
    if all(name.startswith(WRAPPER_PREFIX) for name in data):
        data = {name[len(WRAPPER_PREFIX):]: value for name, value in data.items()}
        metadata = _strip_prefix(metadata)
    file_format = "safetensors" if path.suffix == ".safetensors" else ("training checkpoint" if key else "state_dict")
    return CheckpointContents(with_metadata(data, metadata), key, file_format, arch)


def with_metadata(state: dict, metadata: Optional[dict]) -> dict:
    """``state`` as a new ordered dict carrying ``metadata`` as ``_metadata``, the per-module
    version numbers ``nn.Module.state_dict`` records and ``_load_from_state_dict`` reads (torchvision's
    MNASNet refuses or rebuilds its stem without them). None leaves the metadata out."""
    kept = OrderedDict(state)
    if isinstance(metadata, dict):
        kept._metadata = metadata  # type: ignore[attr-defined]
    return kept


def _strip_prefix(metadata: Optional[dict]) -> Optional[dict]:
    if not isinstance(metadata, dict):
        return None
    module = WRAPPER_PREFIX.rstrip(".")
    stripped = {}
    for name, value in metadata.items():
        if name == module:
            stripped[""] = value
        elif name.startswith(WRAPPER_PREFIX):
            stripped[name[len(WRAPPER_PREFIX):]] = value
    return stripped


def read_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """The tensors stored in ``path`` (EMA weights preferred in a training checkpoint)."""
    return read_checkpoint(path).state_dict


def fit_problems(model: nn.Module, state: dict) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, shape-mismatched) names of ``state`` against ``model``."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    return missing, unexpected, mismatched


def load_state(model: nn.Module, state: dict, source: Union[str, Path]) -> nn.Module:
    """Load ``state`` into ``model`` strictly; explain any mismatch (``source`` names the file)."""
    missing, unexpected, mismatched = fit_problems(model, state)
    if missing or unexpected or mismatched:
        own = model.state_dict()
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched]
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                shown = ", ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")
                parts.append(f"{label}: {shown}")
        raise CheckpointError(f"checkpoint {source} does not fit the {type(model).__name__} model: " + "; ".join(parts))
    model.load_state_dict(state)
    return model


def load_weights(model: nn.Module, path: Union[str, Path]) -> nn.Module:
    """Load the state_dict in ``path`` into ``model`` strictly; explain any mismatch."""
    return load_state(model, read_state_dict(path), path)


#: The most input elements of one sample a spec may name (a 3 x 8192 x 8192 image).
MAX_INPUT_ELEMENTS = 3 * 8192 * 8192


def weights_beside(spec_path: Path, name: object) -> Path:
    """The weights file a spec names: a plain file name in the spec's own folder, nothing else
    (``"../elsewhere.pt"`` or an absolute path are refused)."""
    folder = spec_path.parent
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{spec_path} names no weights file")
    candidate = folder / name
    if Path(name).is_absolute() or candidate.resolve().parent != folder.resolve():
        raise CheckpointError(
            f"{spec_path} names the weights file {name!r}, outside its own folder {folder}; refused "
            "(a spec may only name a file beside it)"
        )
    return candidate


def _physical_memory() -> Optional[int]:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return None


def build_for_weights(name: str, spec: InputSpec, weights: Path, spec_path: Path, pruned: bool = False) -> nn.Module:
    """Build model ``name`` for a saved spec, after counting its parameters on the meta device
    (no memory): every stored parameter takes at least one byte, so a spec naming more parameters
    than its weights file has bytes is refused before any allocation. A pruned model's spec names
    the architecture before pruning, which is built first: it is refused only when its fp32
    parameters would not fit in this machine's memory."""
    elements = spec.channels * spec.height * spec.width
    if not 0 < elements <= MAX_INPUT_ELEMENTS:
        raise CheckpointError(f"{spec_path} names an input of {elements:,} values per sample; at most {MAX_INPUT_ELEMENTS:,} are accepted")
    try:
        size = weights.stat().st_size
    except OSError:
        raise CheckpointError(f"the weights file {weights} named by {spec_path} does not exist") from None
    try:
        with torch.device("meta"):
            probe = build_model(name, spec)
        params = sum(p.numel() for p in probe.parameters())
    except Exception:  # noqa: BLE001 - a family that cannot build on the meta device is checked by loading
        params = None
    memory = _physical_memory()
    if params is not None and not pruned and params > size:
        raise CheckpointError(
            f"{spec_path} names a model ({name}) of {params:,} parameters but its weights file {weights.name} holds only "
            f"{size:,} bytes; refused"
        )
    if params is not None and memory is not None and 4 * params > memory:
        raise CheckpointError(
            f"{spec_path} names a model ({name}) of {params:,} parameters, more than this machine's memory "
            f"({memory / 2**30:.1f} GiB) holds in fp32; refused"
        )
    try:
        return build_model(name, spec)
    except (MemoryError, RuntimeError) as error:
        if isinstance(error, RuntimeError) and "allocate" not in str(error):
            raise
        raise CheckpointError(f"{spec_path} names a model ({name}) too large for this machine's memory; refused") from None
