"""``--resume``: a resumed run takes its settings from the checkpoint it continues.

Settings given again on top of them must match, except those in
:data:`vs_plugin.pipeline.run.RESUMABLE_CHANGES` (more epochs, another device...); the run
itself refuses any other difference with a message naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError
from .outputs import CHECKPOINT
from .settings import with_recorded_defaults


def checkpoint_settings(out_dir: Path) -> dict:
    """The settings record (run names and every setting) saved in ``out_dir``'s checkpoint."""
    path = Path(out_dir) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"nothing to resume: {out_dir} has no {CHECKPOINT}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"could not read {path}: {str(error).splitlines()[0][:200]}") from None
    settings = checkpoint.get("settings") if isinstance(checkpoint, dict) else None
    if not isinstance(settings, dict):
        raise CheckpointError(f"{path} holds no settings record; is it a vs-plugin checkpoint?")
    return with_recorded_defaults(settings)  # a checkpoint from before a default changed continues as it ran


def resumed_values(saved: Mapping[str, Any], given: Mapping[str, Any], keys: Any) -> dict:
    """The saved values of ``keys``, with the ones given again on top (checked later by the run)."""
    keys = set(keys)
    return {**{k: v for k, v in saved.items() if k in keys}, **{k: v for k, v in given.items() if k in keys}}
