"""Load weights from a local file: a plain state_dict (``.pt``/``.pth``), a training checkpoint
that nests one (timm ``train.py``: ``{'state_dict', 'state_dict_ema', 'arch', 'args', ...}``), or
``.safetensors``; never from a hub (hub weights: :mod:`vs_plugin.models.pretrained`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn

from ..errors import CheckpointError

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


def _load_file(path: Path):
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    # timm train.py checkpoints store the run's argparse.Namespace under 'args': allow that one
    # plain-data class and nothing else (weights_only stays on).
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: Union[str, Path]) -> CheckpointContents:
    """The state_dict stored in ``path`` and how it was found; a clear error when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        data = _load_file(path)
    except Exception as error:  # noqa: BLE001 - every reader failure means "corrupt"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"could not read checkpoint {path}: {first_line[:200]}") from None
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
    if all(name.startswith(WRAPPER_PREFIX) for name in data):
        data = {name[len(WRAPPER_PREFIX):]: value for name, value in data.items()}
    file_format = "safetensors" if path.suffix == ".safetensors" else ("training checkpoint" if key else "state_dict")
    return CheckpointContents(dict(data), key, file_format, arch)


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
