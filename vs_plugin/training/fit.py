"""The one training loop of vs-plugin: epochs of :func:`.loop.train_one_epoch` with hooks.

Every phase and method trains through :func:`fit` (the teacher, the dense KD student, the
Variational Student, masked fine-tuning, the structured student, the baselines, NNI's
evaluator). Per step it runs the caller's step function (loss terms) and the optimizer step
(``after_backward`` between the two: mask keeping, torch-pruning regularisers, the AMP scaler's
unscaling before it); per epoch it averages the terms over ranks, measures on the test split
every ``eval_every`` epochs and after the last, runs the ``measure`` hooks (pruning on a
schedule, more numbers for the record), keeps the record, logs a line and runs the
``after_epoch`` hooks (checkpoints, progress bars). Resuming is starting at ``start_epoch`` with
the records of the epochs already done.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

import torch
import torch.nn as nn

from ..console import EpochLines
from ..data.loaders import set_loader_epoch
from .distributed import SINGLE_PROCESS, DistributedContext, all_reduce_sum
from .loop import EpochRecord, StepFunction, train_one_epoch


@dataclass
class Fit:
    """What the hooks see, and may change, between epochs (e.g. a new ``optimizer`` after pruning)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    phase: str
    epochs: int
    steps_per_epoch: int
    history: list[dict] = field(default_factory=list)
    epoch: int = 0  # epochs finished

    @property
    def global_step(self) -> int:
        """Optimizer steps taken once ``epoch`` epochs are finished."""
        return self.epoch * self.steps_per_epoch


#: Called with the loop state and the epoch's record (``record.epoch`` is 1-based).
EpochHook = Callable[[Fit, EpochRecord], None]


def each_epoch(callback: Optional[Callable[[], None]]) -> list[EpochHook]:
    """``after_epoch`` hooks calling ``callback()`` after every epoch (progress bars); none for None."""
    return [] if callback is None else [lambda fit, record: callback()]


def evaluate_after(epoch: int, total_epochs: int, eval_every: int) -> bool:
    """Whether the test split is measured after ``epoch`` (0-based): every ``eval_every`` epochs and after the last."""
    return (epoch + 1) % eval_every == 0 or epoch + 1 == total_epochs


def epoch_line(phase: str, record: EpochRecord, total: int) -> str:
    """One line summarising an epoch: the loss, the other non-zero terms, the measurements, the time."""
    parts = [f"{phase} epoch {record.epoch}/{total}", f"loss {record.terms['loss']:.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in record.terms.items() if k != "loss" and v]
    parts += [f"{k} {v:.4f}" for k, v in record.extra.items() if isinstance(v, (int, float))]
    return " | ".join(parts) + f" | {record.seconds:.1f}s"


def _mean_over_ranks(record: EpochRecord, context: DistributedContext, device: torch.device) -> None:
    if not context.enabled:
        return
    keys = sorted(record.terms)
    summed = all_reduce_sum(torch.tensor([record.terms[k] for k in keys], dtype=torch.float64, device=device), context)
    record.terms = {k: float(v) / context.world_size for k, v in zip(keys, summed)}


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable,
    step: StepFunction,
    *,
    epochs: int,
    phase: str = "train",
    start_epoch: int = 0,
    history: Optional[list[dict]] = None,
    max_steps: Optional[int] = None,
    progress: bool = False,
    scaler: Optional[torch.amp.GradScaler] = None,
    after_backward: Optional[Callable[[], None]] = None,
    context: DistributedContext = SINGLE_PROCESS,
    evaluate: Optional[Callable[[], dict]] = None,
    eval_every: int = 1,
    measure: Sequence[EpochHook] = (),
    after_epoch: Sequence[EpochHook] = (),
    log: Optional[Callable[[str], None]] = None,
) -> Fit:
    """Train ``model`` for epochs ``start_epoch .. epochs - 1``; returns the final loop state.

    Args:
        model / optimizer / batches / step: what :func:`.loop.train_one_epoch` takes (``step``
            returns the batch's loss terms; ``terms["loss"]`` is back-propagated).
        epochs: the phase's epochs in all (resumed epochs included).
        phase: the name in bars, lines and errors.
        start_epoch / history: resume after ``start_epoch`` epochs whose records are ``history``
            (the list the new records are appended to).
        max_steps: stop after this many optimizer steps (the last epoch may be partial).
        progress: a bar per epoch (on a terminal, on rank 0 only).
        scaler: fp16 gradient scaler, or None.
        after_backward: called between backward and the optimizer step, every step.
        context: the distributed context; epoch means are averaged over its ranks.
        evaluate: returns the test measurements (``{"test_accuracy": ...}``), added to the record
            every ``eval_every`` epochs and after the last.
        measure: hooks run after the measurements, before the record is kept (pruning on a
            schedule, more numbers); they may replace ``fit.optimizer``.
        after_epoch: hooks run once the record is kept and logged (checkpoints, progress ticks).
        log: sink for the epoch lines (a few per phase, see :class:`vs_plugin.console.EpochLines`).
    """
    steps_per_epoch = len(batches)
    state = Fit(model, optimizer, phase, epochs, steps_per_epoch, history if history is not None else [], start_epoch)
    lines = EpochLines(epochs)
    total_steps = max_steps if max_steps is not None else epochs * steps_per_epoch
    device = next(iter(model.parameters()), torch.zeros(())).device
    for epoch in range(start_epoch, epochs):
        done = epoch * steps_per_epoch
        if done >= total_steps:
            break
        set_loader_epoch(batches, epoch)
        take = min(steps_per_epoch, total_steps - done)
        source = batches if take == steps_per_epoch else itertools.islice(batches, take)
        record = train_one_epoch(
            model, state.optimizer, source, step, epoch=epoch, first_global_step=done, phase=phase,
            progress=progress and context.is_main, total_epochs=epochs, after_backward=after_backward, scaler=scaler,
        )
        _mean_over_ranks(record, context, device)
        if evaluate is not None and evaluate_after(epoch, epochs, eval_every):
            record.extra.update(evaluate())
        state.epoch = epoch + 1
        for hook in measure:
            hook(state, record)
        state.history.append(record.to_dict())
        if log is not None and lines.due(record.epoch):
            log(epoch_line(phase, record, epochs))
        for hook in after_epoch:
            hook(state, record)
    return state


__all__ = ["Fit", "EpochHook", "each_epoch", "fit", "evaluate_after", "epoch_line"]
