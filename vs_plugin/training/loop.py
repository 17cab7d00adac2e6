"""The epoch loop shared by teacher and student training: progress bars, NaN guard, metrics."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..console import bars_enabled
from ..data.loaders import set_loader_epoch
from ..errors import DataError, TrainingDiverged

#: step(batch, global_step) -> loss terms of the batch; ``terms["loss"]`` is back-propagated.
StepFunction = Callable[[tuple, int], dict]


@dataclass
class EpochRecord:
    """What one epoch did: mean loss terms, test accuracy (if measured) and time."""

    epoch: int
    terms: dict[str, float]
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, **{k: round(v, 6) for k, v in self.terms.items()}, **self.extra, "seconds": round(self.seconds, 3)}


def _check_finite(terms: dict, epoch: int, step: int, phase: str, batch=None) -> None:
    loss = terms["loss"]
    if not torch.isfinite(loss):
        inputs = batch[0] if isinstance(batch, (tuple, list)) and batch else None
        if isinstance(inputs, torch.Tensor) and inputs.is_floating_point() and not torch.isfinite(inputs).all():
            raise DataError(
                f"the {phase} inputs of epoch {epoch}, step {step} hold NaN or infinite values; remove or replace them"
            )
        detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
        raise TrainingDiverged(
            f"{phase} loss became {float(loss.detach())} at epoch {epoch}, step {step} ({detail}); "
            "lower the learning rate or the loss weights"
        )


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable,
    step: StepFunction,
    *,
    epoch: int,
    first_global_step: int,
    phase: str,
    progress: bool,
    total_epochs: int,
    after_backward: Optional[Callable[[], None]] = None,
    scaler: Optional[torch.amp.GradScaler] = None,
) -> EpochRecord:
    """One pass over ``batches``; returns the mean of every loss term (a bar only on a terminal).

    ``scaler`` (fp16 autocast): the loss is scaled before ``backward`` and the gradients unscaled
    before ``after_backward`` and the optimizer step, which is skipped when they overflowed.
    """
    progress = bars_enabled(progress)
    model.train()
    set_loader_epoch(batches, epoch)
    sums: dict[str, float] = {}
    count = 0
    started = time.perf_counter()
    bar = tqdm(batches, desc=f"{phase} epoch {epoch + 1}/{total_epochs}", leave=False, disable=not progress, dynamic_ncols=True)
    global_step = first_global_step
    for batch in bar:
        terms = step(batch, global_step)
        _check_finite(terms, epoch + 1, global_step - first_global_step + 1, phase, batch)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            terms["loss"].backward()
            if after_backward is not None:
                after_backward()
            optimizer.step()
        else:
            scaler.scale(terms["loss"]).backward()
            scaler.unscale_(optimizer)
            if after_backward is not None:
                after_backward()
            scaler.step(optimizer)
            scaler.update()
        global_step += 1
        count += 1
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        if progress and count % 10 == 0:
            bar.set_postfix(loss=f"{sums['loss'] / count:.4f}")
    bar.close()
    means = {k: v / max(count, 1) for k, v in sums.items()}
    if count and not math.isfinite(means.get("loss", 0.0)):
        raise TrainingDiverged(f"{phase} loss is not finite after epoch {epoch + 1}")
    return EpochRecord(epoch=epoch + 1, terms=means, seconds=time.perf_counter() - started)
