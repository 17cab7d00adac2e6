"""Compute the frozen teacher's outputs once per training sample instead of once per step.

With in-memory data (no augmentation) and a teacher in eval mode, the teacher's logits for a
sample are the same every epoch, so running it every step only costs time: on the paper's MLP
pair it is 45% of a plain KD step (docs/performance.md). The cached outputs travel as extra
columns of the batches: ``(inputs, targets, teacher_logits[, teacher_features])``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager, Optional

import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from ..data.loaders import InMemoryLoader
from ..features import FeatureTap

#: Largest cache kept in memory (logits plus features); beyond it the teacher runs every step.
DEFAULT_MAX_CACHE_BYTES = 2 * 1024**3
CACHE_BATCH = 512


@torch.no_grad()
def teacher_outputs(
    teacher: nn.Module,
    inputs: torch.Tensor,
    device: torch.device,
    feature_layer: Optional[str] = None,
    with_features: bool = False,
    autocast: Callable[[], ContextManager] = nullcontext,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(logits, features or None) of ``teacher`` for every row of ``inputs``, in eval mode, on the CPU."""
    teacher.eval()
    logits, features = [], []
    tap = FeatureTap(teacher, feature_layer) if with_features else None
    try:
        for start in range(0, inputs.shape[0], CACHE_BATCH):
            with autocast():
                logits.append(teacher(inputs[start : start + CACHE_BATCH].to(device)).float().cpu())
            if tap is not None:
                features.append(tap.take().float().cpu())
    finally:
        if tap is not None:
            tap.remove()
    return torch.cat(logits), (torch.cat(features) if tap is not None else None)


def with_cached_teacher(
    loader,
    teacher: nn.Module,
    device: torch.device,
    *,
    feature_layer: Optional[str] = None,
    with_features: bool = False,
    autocast: Callable[[], ContextManager] = nullcontext,
    max_bytes: int = DEFAULT_MAX_CACHE_BYTES,
):
    """A loader like ``loader`` whose batches also carry the teacher's outputs, or ``loader`` itself
    when that is not possible (data not in memory, or a cache above ``max_bytes``)."""
    if not isinstance(loader, InMemoryLoader) or len(loader.dataset.tensors) != 2:
        return loader
    inputs, targets = loader.dataset.tensors
    logits, features = teacher_outputs(teacher, inputs, device, feature_layer, with_features, autocast)
    size = logits.numel() * 4 + (0 if features is None else features.numel() * 4)
    if size > max_bytes:
        return loader
    columns = (inputs, targets, logits) if features is None else (inputs, targets, logits, features.flatten(1))
    return InMemoryLoader(
        TensorDataset(*columns), loader.batch_size, shuffle=loader.shuffle, seed=loader.seed,
        drop_last=loader.drop_last, rank=loader.rank, world_size=loader.world_size, pad=loader.pad,
    )
