"""A ready-made NNI ``TorchEvaluator`` over a batch source, using the core's epoch loop.

NNI's ``TorchEvaluator`` needs a training function that uses the optimizer and training step it
is handed (NNI patches both) and stops after ``max_steps`` / ``max_epochs``. This module
provides one, so compressing with NNI needs no boilerplate loop.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Optional

import nni
import torch
import torch.nn as nn
import torch.nn.functional as F
from nni.compression import TorchEvaluator
from torch import Tensor

from vs_plugin.errors import ConfigError
from vs_plugin.training.fit import each_epoch, fit

#: ``(batch, model) -> loss``: NNI's training_step signature.
TrainingStep = Callable[[Any, nn.Module], Tensor]


def cross_entropy_step(device: Optional[torch.device] = None) -> TrainingStep:
    """A training step computing the cross-entropy of ``model(batch[0])`` against ``batch[1]``."""

    def training_step(batch: Any, model: nn.Module) -> Tensor:
        target_device = device or next(model.parameters()).device
        inputs, targets = batch[0].to(target_device), batch[1].to(target_device)
        return F.cross_entropy(model(inputs), targets)

    return training_step


def epoch_training_func(
    batches: Iterable, on_epoch: Optional[Callable[[], None]] = None, progress: bool = False
) -> Callable[..., None]:
    """A ``training_func`` for ``TorchEvaluator`` looping over ``batches`` with the core's epoch loop.

    It stops after ``max_steps`` optimizer steps or ``max_epochs`` epochs, whichever comes first
    (one of them must be given: the pruners here always give one). ``on_epoch`` is called after
    each (possibly partial) epoch.
    """

    def training_func(model, optimizers, training_step, lr_schedulers=None, max_steps=None, max_epochs=None, *args, **kwargs):
        if max_steps is None and max_epochs is None:
            raise ConfigError("the compressor gave neither max_steps nor max_epochs; this training function needs one")
        optimizer = optimizers[0] if isinstance(optimizers, (list, tuple)) else optimizers
        epochs = max_epochs if max_epochs is not None else math.ceil(max_steps / len(batches))
        schedulers = [s for s in (lr_schedulers if isinstance(lr_schedulers, (list, tuple)) else [lr_schedulers]) if s is not None]
        fit(model, optimizer, batches, lambda batch, _: {"loss": training_step(batch, model)}, epochs=epochs, phase="nni",
            max_steps=max_steps, progress=progress,
            after_epoch=[lambda state, record: [scheduler.step() for scheduler in schedulers], *each_epoch(on_epoch)])

    return training_func


def make_torch_evaluator(
    model: nn.Module,
    batches: Iterable,
    *,
    training_step: Optional[TrainingStep] = None,
    lr: float = 1e-3,
    on_epoch: Optional[Callable[[], None]] = None,
    progress: bool = False,
) -> TorchEvaluator:
    """A ``TorchEvaluator`` training ``model`` on ``batches`` with Adam (traced by ``nni.trace``).

    Args:
        model: the model the compressor will prune; the optimizer is built on its parameters.
        batches: a re-iterable batch source with ``len()`` (DataLoader or the core's loaders).
        training_step: ``(batch, model) -> loss``; default the cross-entropy on ``(inputs, labels)`` batches.
        lr: Adam's learning rate.
        on_epoch: called after every epoch (progress bars).
        progress: show the core loop's per-epoch progress bar.
    """
    # fused: PyTorch's single-kernel Adam, 12x faster than its default loop on CPU (see vs_plugin.training.optim).
    optimizer = nni.trace(torch.optim.Adam)(model.parameters(), lr=lr, fused=True)
    evaluator = TorchEvaluator(epoch_training_func(batches, on_epoch, progress), optimizer, training_step or cross_entropy_step())
    evaluator.vs_num_train_samples = _sample_count(batches)
    return evaluator


def _sample_count(source: object) -> Optional[int]:
    """Samples in a DataLoader (its dataset), a Dataset, or a batch source with ``num_samples``."""
    count = getattr(source, "num_samples", None)
    if isinstance(count, int) and not isinstance(count, bool):
        return count
    dataset = getattr(source, "dataset", None)
    if dataset is not None and not isinstance(source, torch.Tensor):
        try:
            return len(dataset)
        except TypeError:
            return None
    if isinstance(source, torch.utils.data.Dataset):
        try:
            return len(source)
        except TypeError:
            return None
    return None


def infer_num_train_samples(evaluator: object) -> int:
    """N of the KL/N term, read from the evaluator's training data.

    Found, in order: the count :func:`make_torch_evaluator` stores; else the DataLoaders or
    Datasets the ``TorchEvaluator``'s ``training_func`` closes over or takes as default arguments
    (when they agree on one size).

    Raises:
        ConfigError: when no unique size is found, saying how to pass it.
    """
    stored = getattr(evaluator, "vs_num_train_samples", None)
    if isinstance(stored, int) and stored > 0:
        return stored
    func = getattr(evaluator, "training_func", None)
    candidates = []
    if func is not None:
        values = [cell.cell_contents for cell in (getattr(func, "__closure__", None) or ()) if _filled(cell)]
        values += list(getattr(func, "__defaults__", None) or ())
        values += list((getattr(func, "__kwdefaults__", None) or {}).values())
        candidates = sorted({c for c in map(_sample_count, values) if c})
    if len(candidates) == 1:
        return candidates[0]
    found = f" (found datasets of sizes {candidates})" if candidates else ""
    raise ConfigError(
        "cannot tell the number of training samples (N of the KL/N term) from the evaluator" + found
        + "; pass num_train_samples=len(train_dataset) to the VariationalStudentPruner"
    )


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


__all__ = ["make_torch_evaluator", "epoch_training_func", "cross_entropy_step", "TrainingStep", "infer_num_train_samples"]
