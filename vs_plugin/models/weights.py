"""Load weights from a local file (``.pt``/``.pth`` state_dict or ``.safetensors``); never from a hub."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn

from ..errors import CheckpointError
from ..io import load_tensors
from .registry import InputSpec, build_model

#: Keys under which training scripts commonly nest the state_dict.
NESTED_STATE_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema")


def read_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """The tensors stored in ``path``; a clear error when the file is missing or unreadable."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors.torch import load_file

        try:
            data = load_file(str(path), device="cpu")
        except Exception:  # noqa: BLE001 - every reader failure means "corrupt"
            raise CheckpointError(f"checkpoint {path} is not a safetensors file or is damaged") from None
    else:
        data = load_tensors(path, "checkpoint")
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
