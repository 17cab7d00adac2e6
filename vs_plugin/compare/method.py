"""What a compression method provides to ``vs-plugin compare``, and what it gets.

A method is any object with ``plan`` and ``run`` (see :class:`CompressionMethod`), registered
under a name through the ``vs_plugin.methods`` entry-point group (see :mod:`.registry`). The
comparison hands every method the same :class:`MethodContext`: teacher, starting student, data,
and budget. A method returns the compressed student as a plain model with its pruned weights at
exactly zero; the comparison measures it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol, runtime_checkable

import torch
import torch.nn as nn
from torch import Tensor

from .config import MethodEntry
from ..losses.objective import ObjectiveConfig
from ..training import recipes
from ..training.fit import each_epoch
from ..training.teacher_cache import with_cached_teacher

#: Called after every training epoch (progress bars).
EpochCallback = Callable[[], None]


@dataclass(frozen=True)
class TrainingBudget:
    """What every method gets: ``epochs`` of training (Adam at ``lr``) with CE + KD.

    Attributes:
        epochs: epochs the Variational Student trains and every baseline fine-tunes.
        lr: Adam's learning rate.
        kd_weight / temperature: the KD term of the shared CE + KD loss.
        steps_per_epoch: optimizer steps in one epoch of the training data.
        finetune_lr_schedule: the learning rate once a method's last pruning step is taken:
            ``constant`` (``lr``) or ``cosine`` (annealed per epoch towards 0 over the epochs left).
    """

    epochs: int
    lr: float
    kd_weight: float
    temperature: float
    steps_per_epoch: int
    finetune_lr_schedule: str = "constant"

    def objective(self) -> ObjectiveConfig:
        """The shared CE + KD loss (the core objective with the KL, BSR and LP terms off)."""
        return ObjectiveConfig(kd_weight=self.kd_weight, temperature=self.temperature)


class ProgressTicker:
    """Counts training epochs for a progress bar; methods may announce extra epochs."""

    def __init__(self, bar: Any = None) -> None:
        self.bar = bar

    def add_epochs(self, count: int) -> None:
        if self.bar is not None and self.bar.total is not None:
            self.bar.total += count
            self.bar.refresh()

    def tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)


@dataclass
class MethodContext:
    """The shared starting point of every method in one comparison.

    Attributes:
        teacher: the trained teacher (eval mode; do not train it).
        starting_student: the common starting student (do not modify; see :meth:`fresh_student`).
        student_is_trained: True when the starting student was trained (dense CE + KD), False for a random init.
        train_batches / test_batches: batch sources of the training and test splits.
        num_train_samples: N, the number of training samples.
        budget: the shared training budget.
        device: where models live.
        progress: tick it after every training epoch.
        num_classes: classes of the data (None when unknown), to flag students near chance.
    """

    teacher: nn.Module
    starting_student: nn.Module
    student_is_trained: bool
    train_batches: Iterable
    test_batches: Iterable
    num_train_samples: int
    budget: TrainingBudget
    device: torch.device
    progress: ProgressTicker = field(default_factory=ProgressTicker)
    num_classes: Optional[int] = None
    _distill_batches: Optional[Iterable] = field(default=None, init=False, repr=False)

    def distill_batches(self) -> Iterable:
        """``train_batches`` carrying the teacher's logits, computed once for all the methods
        (:func:`vs_plugin.training.teacher_cache.with_cached_teacher`; the batches themselves when
        the data is not in memory). For CE + KD training through :class:`~vs_plugin.training.steps.StudentStep`."""
        if self._distill_batches is None:
            self._distill_batches = with_cached_teacher(self.train_batches, self.teacher, self.device)
        return self._distill_batches

    def fresh_student(self) -> nn.Module:
        """A copy of the starting student, on the device, in training mode."""
        student = copy.deepcopy(self.starting_student).to(self.device)
        student.train()
        return student

    def finetune(self, model: nn.Module, masks: Optional[Mapping[str, Mapping[str, Tensor]]] = None,
                 epochs: Optional[int] = None, on_epoch: Optional[EpochCallback] = None) -> None:
        """The baselines' fine-tuning: CE + KD for the budget's epochs, pruned weights kept at zero,
        at the budget's ``finetune_lr_schedule``."""
        recipes.distill(
            model, self.teacher, self.distill_batches(), epochs=self.budget.epochs if epochs is None else epochs, lr=self.budget.lr,
            objective=self.budget.objective(), device=self.device, masks=masks, after_epoch=each_epoch(on_epoch or self.progress.tick),
            lr_schedule=self.budget.finetune_lr_schedule,
        )


@dataclass
class MethodOutcome:
    """A method's compressed student.

    Attributes:
        model: plain layers (no NNI wrappers, no variational layers), pruned weights exactly zero.
        target: the row's target sparsity; None when the method chose its own sparsity (the
            table then shows the achieved sparsity, marked as such).
        details: anything worth recording in the results (e.g. steps spent pruning, ``pruned_accuracy``).
        deployed: the model as deployed when it differs from ``model`` (a structured method's
            physically smaller model); MACs and latency are measured on it.
    """

    model: nn.Module
    target: Optional[float]
    details: dict = field(default_factory=dict)
    deployed: Optional[nn.Module] = None


@runtime_checkable
class CompressionMethod(Protocol):
    """A method ``vs-plugin compare`` can run."""

    def plan(self, entry: MethodEntry, default_targets: tuple[float, ...]) -> tuple[Optional[float], ...]:
        """Validate ``entry`` (raise ``ConfigError``) and return the targets to run, None for "its own"."""
        ...

    def run(self, context: MethodContext, entry: MethodEntry, target: Optional[float]) -> MethodOutcome:
        """Compress a fresh copy of the starting student within the budget."""
        ...


# A method may also define ``check_student(entry, student)``: it is called with the freshly built
# student before anything is trained, to reject config_lists that select nothing (raise ConfigError).


__all__ = ["TrainingBudget", "ProgressTicker", "MethodContext", "MethodOutcome", "CompressionMethod"]
