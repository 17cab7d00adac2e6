"""Distillation epochs for a plain (pruned) student: the core objective's CE + KD (+ LP) terms.

Used to fine-tune the pruned Variational Student and by the torch-pruning baselines, so every
method is trained with the same loss, loop and schedule (core ``train_one_epoch`` and
``StudentStep``; the KL and BSR weights are 0 because a plain model has no posterior).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Optional

import torch
import torch.nn as nn

from vs_plugin.losses.kl import KLWarmup
from vs_plugin.losses.objective import ObjectiveConfig, VariationalStudentObjective
from vs_plugin.metrics.accuracy import evaluate_accuracy
from vs_plugin.training.loop import train_one_epoch
from vs_plugin.training.optim import adam
from vs_plugin.training.reproducibility import restore_rng_state
from vs_plugin.training.steps import StudentStep


def distill(
    student: nn.Module,
    teacher: Optional[nn.Module],
    train_loader: Iterable,
    *,
    epochs: int,
    lr: float,
    objective: ObjectiveConfig,
    device: torch.device,
    test_loader: Optional[Iterable] = None,
    after_backward: Optional[Callable[[], None]] = None,
    phase: str = "finetune",
    progress: bool = False,
    log: Optional[Callable[[str], None]] = None,
    on_epoch: Optional[Callable[[], None]] = None,
    resume: Optional[dict] = None,
    save: Optional[Callable[[int, torch.optim.Optimizer, list[dict]], None]] = None,
) -> list[dict]:
    """Train ``student`` for ``epochs`` epochs with Adam on the objective's data terms.

    Args:
        student / teacher: the models (the teacher is only run, never trained).
        train_loader: batches of (inputs, targets).
        epochs: number of epochs (0 does nothing).
        lr: Adam learning rate.
        objective: loss weights; its KL and BSR weights are ignored.
        device: where to train.
        test_loader: when given, each epoch's record gets ``test_accuracy``.
        after_backward: called between backward and the optimizer step (regularising pruners).
        phase / progress / log: progress-bar label, bars on or off, per-epoch line sink.
        on_epoch: called after every epoch (progress bars of ``vs-plugin compare``).
        resume: continue from a checkpoint's ``epoch``, ``optimizer``, ``records`` and ``rng``.
        save: called after every epoch with (epochs done, optimizer, records) to checkpoint.

    Returns:
        one record per epoch (mean loss terms, seconds, test accuracy).
    """
    if epochs <= 0:
        return []
    config = dataclasses.replace(objective, kl_weight=0.0, bsr_weight=0.0)
    partner = teacher if config.uses_teacher else None
    loss = VariationalStudentObjective(student, partner, config, num_train_samples=1).to(device)
    step = StudentStep(student, partner, loss, KLWarmup(end_step=0), device)
    optimizer = adam(student.parameters(), lr=lr)
    records: list[dict] = []
    start = 0
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        records = list(resume["records"])
        start = int(resume["epoch"])
        restore_rng_state(resume["rng"])
    try:
        steps_per_epoch = len(train_loader)
        for epoch in range(start, epochs):
            record = train_one_epoch(
                student, optimizer, train_loader, step, epoch=epoch, first_global_step=epoch * steps_per_epoch,
                phase=phase, progress=progress, total_epochs=epochs, after_backward=after_backward,
            )
            if test_loader is not None:
                record.extra["test_accuracy"] = evaluate_accuracy(student, test_loader, device)
            records.append(record.to_dict())
            if log is not None:
                log(epoch_line(phase, record.to_dict(), epochs))
            if on_epoch is not None:
                on_epoch()
            if save is not None:
                save(epoch + 1, optimizer, records)
    finally:
        step.close()
    return records


def epoch_line(phase: str, record: dict, total: int) -> str:
    """One line summarising an epoch record."""
    parts = [f"{phase} epoch {record['epoch']}/{total}"]
    parts += [f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds") and isinstance(v, float) and v]
    return " | ".join(parts) + f" | {record.get('seconds', 0.0):.1f}s"


__all__ = ["distill", "epoch_line"]
