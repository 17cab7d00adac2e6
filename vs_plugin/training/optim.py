"""The optimizer every training loop of vs-plugin uses."""

from __future__ import annotations

import math
from typing import Callable, Iterable, Union

import torch

from ..errors import ConfigError

ParamsT = Union[Iterable[torch.Tensor], Iterable[dict]]


def adam(params: ParamsT, lr: float, **kwargs) -> torch.optim.Adam:
    """``torch.optim.Adam`` with PyTorch's fused kernel where it is available.

    On CPU the default (per-parameter loop) implementation costs 12x the fused one for the paper's
    784-500-50-10 student with its log sigma^2 (2.3 ms vs 0.2 ms per step, 2 cores; see
    docs/performance.md). The fused kernel computes the same update; where it cannot run (other
    devices or dtypes) the multi-tensor ``foreach`` implementation is used instead.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True, **kwargs)


#: Learning-rate schedules of :func:`scheduled_lr` (per epoch).
LR_SCHEDULES = ("constant", "cosine")


def check_lr_schedule(value: object, where: str) -> str:
    """``value`` if it names a schedule of :data:`LR_SCHEDULES`; otherwise a ConfigError naming ``where`` and the accepted ones."""
    if value not in LR_SCHEDULES:
        raise ConfigError(f"{where} must be one of {', '.join(LR_SCHEDULES)}, got {value!r}")
    return value  # type: ignore[return-value]


def scheduled_lr(lr: float, schedule: str, epoch: int, epochs: int, anneal_from: int = 0) -> float:
    """The learning rate of (0-based) ``epoch`` out of ``epochs``.

    ``constant``: ``lr`` throughout. ``cosine``: ``lr`` for the first ``anneal_from`` epochs, then
    cosine annealing per epoch over the remaining ``n = epochs - anneal_from`` (Loshchilov & Hutter,
    SGDR, 2017, without restarts), ``lr * (1 + cos(pi * (epoch - anneal_from) / n)) / 2``: ``lr``
    in the first annealed epoch, decaying towards 0 in the last. ``anneal_from`` lets a training
    that prunes on a schedule anneal only once its last pruning step is taken (gradual magnitude
    pruning's epochs after the cubic ramp).
    """
    check_lr_schedule(schedule, "lr schedule")
    annealed = epochs - anneal_from
    if schedule == "constant" or annealed <= 0 or epoch < anneal_from:
        return lr
    return lr * (1 + math.cos(math.pi * (epoch - anneal_from) / annealed)) / 2


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every parameter group of ``optimizer`` at learning rate ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def lr_schedule_hooks(
    optimizer: torch.optim.Optimizer, lr: float, schedule: str, epochs: int, *, start_epoch: int = 0, anneal_from: int = 0,
) -> list[Callable]:
    """Put ``optimizer`` at the rate of ``start_epoch`` now, and the ``measure`` hooks of
    :func:`.fit.fit` that keep it on ``schedule`` (:func:`scheduled_lr`) after every epoch.

    Each hook records the epoch's rate in the epoch's record (``lr``) and sets the next epoch's
    rate before checkpoints save the optimizer, so a resumed training continues the schedule.
    ``constant``: no hook (the rate stays ``lr``).
    """
    check_lr_schedule(schedule, "lr schedule")
    set_lr(optimizer, scheduled_lr(lr, schedule, start_epoch, epochs, anneal_from))
    if schedule == "constant":
        return []

    def next_lr(fit, record) -> None:
        record.extra["lr"] = fit.optimizer.param_groups[0]["lr"]
        set_lr(fit.optimizer, scheduled_lr(lr, schedule, fit.epoch, epochs, anneal_from))

    return [next_lr]
