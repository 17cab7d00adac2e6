"""Load weights from a local file (``.pt``/``.pth`` state_dict or ``.safetensors``); never from a hub."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import torch
import torch.nn as nn

from ..errors import CheckpointError

#: Keys under which training scripts commonly nest the state_dict.
NESTED_STATE_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema")


def read_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """The tensors stored in ``path``; a clear error when the file is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path), device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - every reader failure means "corrupt"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"could not read checkpoint {path}: {first_line[:200]}") from None
    if isinstance(data, dict):
        for key in NESTED_STATE_KEYS:
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"checkpoint {path} holds no state_dict (a mapping of names to tensors)")
    return data


def load_weights(model: nn.Module, path: Union[str, Path]) -> nn.Module:
    """Load the state_dict in ``path`` into ``model`` strictly; explain any mismatch."""
    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                shown = ", ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")
                parts.append(f"{label}: {shown}")
        raise CheckpointError(f"checkpoint {path} does not fit the {type(model).__name__} model: " + "; ".join(parts))
    model.load_state_dict(state)
    return model
