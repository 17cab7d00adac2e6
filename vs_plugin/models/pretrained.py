"""Hub weights for ``--pretrained``, through timm's and torchvision's own loaders.

Weights already in the local cache (Hugging Face hub cache for timm, ``torch.hub``'s checkpoint
folder for timm URL weights and torchvision) are loaded from there with no network access:
timm through its local-file override (``pretrained_cfg_overlay=dict(file=...)``), torchvision
through ``torch.hub``, which reads its cache first. Otherwise the hub must be reachable: a
``HF_HUB_OFFLINE``/``TORCH_HUB_OFFLINE``-style switch or a failed 2-second HTTPS request gives a
one-line error at once, where timm's downloader would retry for about 47 s before failing.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import torch.nn as nn

from ..errors import ModelError
from .registry import InputSpec, create_timm_model

#: Seconds allowed for the name lookup and TCP connection of the reachability test.
CONNECT_TIMEOUT_S = 2.0
HF_HOST = "huggingface.co"
TORCH_HOST = "download.pytorch.org"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VS_PLUGIN_OFFLINE")
CHECKPOINT_HINT = (
    "pass --teacher-checkpoint PATH instead (a state_dict, a timm train.py checkpoint, .safetensors, "
    "or a timm/Hugging Face model folder with config.json)"
)


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def reachable(host: str, port: int = 443, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether ``https://host:port/`` answers an HTTP HEAD request within ``timeout`` seconds.

    An answer of any status counts (the server is there); a failed lookup, a refused or silent
    connection, or a proxy that does not get through does not. The request runs in a daemon
    thread, so a resolver that hangs cannot hold the caller longer than ``timeout``.
    """
    outcome: list[bool] = []

    def attempt() -> None:
        request = urllib.request.Request(f"https://{host}:{port}/", method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                outcome.append(True)
        except urllib.error.HTTPError:
            outcome.append(True)
        except (OSError, ValueError):
            outcome.append(False)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(outcome and outcome[0])


def offline_reason(host: str) -> Optional[str]:
    """Why the hub cannot be used now (an offline switch, or ``host`` unreachable), or None."""
    for variable in OFFLINE_VARIABLES:
        if _truthy(os.environ.get(variable)):
            return f"{variable} is set"
    if not reachable(host):
        return f"{host} cannot be reached (offline)"
    return None


def hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def torch_hub_checkpoints() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_timm_file(pretrained_cfg: dict) -> Optional[str]:
    """A local file holding the weights ``pretrained_cfg`` points at, or None when none is cached."""
    if pretrained_cfg.get("file") and Path(pretrained_cfg["file"]).is_file():
        return str(pretrained_cfg["file"])
    hub_id = pretrained_cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        names = [pretrained_cfg.get("hf_hub_filename"), "model.safetensors", "pytorch_model.bin"]
        for name in filter(None, names):
            found = try_to_load_from_cache(hub_id, name)
            if isinstance(found, str) and Path(found).is_file():
                return found
    url = pretrained_cfg.get("url")
    if url:
        candidate = torch_hub_checkpoints() / os.path.basename(url.split("?")[0])
        if candidate.is_file():
            return str(candidate)
    return None


def _no_weights(name: str, cache: str, reason: str) -> ModelError:
    return ModelError(f"--pretrained: no weights for {name} in the local cache ({cache}) and {reason}; {CHECKPOINT_HINT}")


def _timm_config(arch: str) -> dict:
    import timm

    if not timm.is_model(arch):
        raise ModelError(f"unknown timm model {arch!r} (see timm.list_models(pretrained=True))")
    config = timm.models.get_pretrained_cfg(arch)
    config = config.to_dict() if config is not None else {}
    if not (config.get("hf_hub_id") or config.get("url") or config.get("file")):
        raise ModelError(f"--pretrained: timm has no pretrained weights for {arch} (see timm.list_models(pretrained=True))")
    return config


def _timm_local_file(arch: str, config: dict) -> Optional[str]:
    """The cached weight file, or None when the hub is reachable; raises when neither."""
    local = cached_timm_file(config)
    if local is None:
        reason = offline_reason(HF_HOST if config.get("hf_hub_id") else TORCH_HOST)
        if reason is not None:
            raise _no_weights(f"timm:{arch}", f"{hf_cache_dir()} or {torch_hub_checkpoints()}", reason)
    return local


def check_pretrained_available(name: str) -> None:
    """Raise the one-line error now (before any data is read) when ``--pretrained`` cannot get
    the weights of ``name``: not cached and the hub unreachable."""
    family, _, argument = name.partition(":")
    if family == "timm":
        _timm_local_file(argument, _timm_config(argument))
    elif family == "torchvision":
        _torchvision_weights(argument)


def timm_pretrained(arch: str, spec: InputSpec) -> tuple[nn.Module, dict]:
    """timm ``arch`` with its pretrained weights and its own class count; (model, report facts)."""
    config = _timm_config(arch)
    classes = config.get("num_classes") or spec.num_classes
    local = _timm_local_file(arch, config)
    facts = {"pretrained": config.get("hf_hub_id") or config.get("url"), "num_classes_pretrained": classes}
    if local is not None:  # timm's own loader, told to read the local file
        model = create_timm_model(arch, spec, num_classes=classes, pretrained=True, pretrained_cfg_overlay=dict(file=local))
        return model, {**facts, "file": local}
    return create_timm_model(arch, spec, num_classes=classes, pretrained=True), facts


def _torchvision_weights(name: str):
    """torchvision's DEFAULT weights enum of ``name`` and their cache path; raises when not
    cached and download.pytorch.org is unreachable."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        raise ModelError(f"--pretrained: torchvision has no weights for {name!r} (see torchvision.models.list_models())") from None
    cached = torch_hub_checkpoints() / os.path.basename(weights.url)
    if not cached.is_file():
        reason = offline_reason(TORCH_HOST)
        if reason is not None:
            raise _no_weights(f"torchvision:{name}", str(torch_hub_checkpoints()), reason)
    return weights, cached


def torchvision_pretrained(name: str, spec: InputSpec) -> tuple[nn.Module, dict]:
    """torchvision ``name`` with its DEFAULT weights and their class count; (model, report facts)."""
    import torchvision

    from .registry import _replace_first_conv

    weights, cached = _torchvision_weights(name)
    classes = len(weights.meta.get("categories") or []) or spec.num_classes
    model = torchvision.models.get_model(name, weights=weights)
    _replace_first_conv(model, spec.channels)
    return model, {"pretrained": f"torchvision {weights}", "num_classes_pretrained": classes, "file": str(cached)}


def transforms_of_torchvision_weights(name: str) -> dict:
    """The eval transform of torchvision's DEFAULT weights for ``name`` as a timm pretrained_cfg."""
    import torchvision

    try:
        preset = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    except (ValueError, KeyError, AttributeError):
        return {}
    crop, resize = int(preset.crop_size[0]), int(preset.resize_size[0])
    return {
        "input_size": (3, crop, crop),
        "interpolation": preset.interpolation.value,
        "mean": tuple(preset.mean),
        "std": tuple(preset.std),
        "crop_pct": crop / resize,
        "crop_mode": "center",
    }
