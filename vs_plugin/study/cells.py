"""Running one cell of a study: one row, one seed, one training fraction.

``compress`` rows run the ``vs-plugin compress`` pipeline; ``kd`` rows train a dense student with
CE + KD; every other row runs a registered compression method on a :class:`MethodContext`: the
seed's teacher and the same starting student (built once per seed, student and fraction, trained
``dense_student_epochs`` with CE + KD, or a copy of the teacher), with the same budget.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from ..api import compress_by_name
from ..compare.method import MethodContext, TrainingBudget
from ..compare.registry import get_method
from ..losses.objective import ObjectiveConfig
from ..training.recipes import distill, train_classifier
from ..data.bundle import DataBundle
from ..data.loaders import dataset_size, make_loader, subset_fraction
from ..metrics.accuracy import evaluate_accuracy
from ..metrics.footprint import model_footprint
from ..metrics.health import is_near_chance
from ..models.registry import build_model
from ..models.weights import load_weights
from ..pipeline.validation import check_models_fit_data, resolve_device
from ..training.reproducibility import seed_everything
from ..training.teacher_cache import with_cached_teacher
from .config import TEACHER_COPY, RowSpec, StudyConfig
from .metrics import extra_measures


@dataclass
class RowResult:
    """What one row measured for one seed and fraction (the study's one result type).

    ``measures`` holds what the optional metrics and the method add: ``macs``, ``params``,
    ``macs_ratio_vs_teacher``, ``latency_ms`` / ``speedup`` by batch size, ``pruned_accuracy``.
    """

    label: str
    kind: str
    seed: int
    fraction: float
    epochs: int
    accuracy: float
    teacher_accuracy: float
    nnz: int
    weights: int
    sparsity: float
    compression_vs_teacher: float
    memory_bytes: int
    memory_reduction_vs_teacher: float
    wall_time_s: float
    target: Optional[float] = None
    threshold_sweep: list = field(default_factory=list)
    near_chance: bool = False
    method: str = ""
    measures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RowResult":
        return cls(**data)


def _example(bundle: DataBundle, device: torch.device) -> torch.Tensor:
    spec = bundle.spec
    return torch.zeros(1, spec.channels, spec.height, spec.width, device=device)


def run_compress_row(config: StudyConfig, row: RowSpec, seed: int, fraction: float, teacher_path: Path) -> RowResult:
    settings = config.compress_settings(row, seed, fraction)
    started = time.perf_counter()
    model, report = compress_by_name(
        config.teacher, None if row.student == TEACHER_COPY else row.student, config.dataset, teacher_checkpoint=teacher_path,
        data_dir=config.data_dir, image_size=config.image_size, settings=settings,
    )
    wall = time.perf_counter() - started
    student, teacher = report["student"], report["teacher"]
    return RowResult(
        label=row.label, kind=row.kind, method=row.method, seed=seed, fraction=fraction, epochs=settings.epochs,
        accuracy=student["accuracy"], teacher_accuracy=teacher["accuracy"], nnz=student["nnz"], weights=student["weights"],
        sparsity=student["sparsity"], compression_vs_teacher=student["compression_vs_teacher"], memory_bytes=student["memory_bytes"],
        memory_reduction_vs_teacher=student["memory_reduction_vs_teacher"], wall_time_s=wall, target=row.target,
        threshold_sweep=student.get("threshold_sweep", []),
        near_chance=is_near_chance(student["accuracy"], report["dataset"]["num_classes"]),
    )


class SeedCells:
    """The cells of one seed: its teacher, and the starting student of each (student, fraction)."""

    def __init__(self, config: StudyConfig, seed: int, teacher_path: Path, bundle: DataBundle) -> None:
        self.config = config
        self.seed = seed
        self.bundle = bundle
        self.device = resolve_device(config.device)
        self.teacher = load_weights(build_model(config.teacher, bundle.spec), teacher_path).to(self.device).eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.test_batches = make_loader(bundle.test, 256, shuffle=False, seed=seed)
        self.teacher_accuracy = evaluate_accuracy(self.teacher, self.test_batches, self.device)
        self.teacher_footprint = model_footprint(self.teacher)
        self._contexts: dict[tuple, MethodContext] = {}
        self._dense: dict[tuple, tuple[nn.Module, float]] = {}

    def _train_batches(self, fraction: float):
        train = subset_fraction(self.bundle.train, fraction, self.seed)
        return train, make_loader(train, self.config.batch_size, shuffle=True, seed=self.seed)

    def _result(self, row: RowSpec, fraction: float, epochs: int, model: nn.Module, wall: float, *, dense: bool,
                target: Optional[float] = None, deployed: Optional[nn.Module] = None, extra: Optional[dict] = None) -> RowResult:
        footprint = model_footprint(model)
        accuracy = evaluate_accuracy(model, self.test_batches, self.device)
        memory = footprint.dense_bytes if dense else footprint.sparse_bytes
        measures = {**(extra or {}), **extra_measures(self.config, self.teacher, deployed or model, _example(self.bundle, self.device))}
        return RowResult(
            label=row.label, kind=row.kind, method=row.method, seed=self.seed, fraction=fraction, epochs=epochs, accuracy=accuracy,
            teacher_accuracy=self.teacher_accuracy, nnz=footprint.nnz, weights=footprint.weights, sparsity=footprint.sparsity,
            compression_vs_teacher=self.teacher_footprint.weights / max(footprint.nnz, 1), memory_bytes=memory,
            memory_reduction_vs_teacher=self.teacher_footprint.dense_bytes / max(memory, 1), wall_time_s=wall, target=target,
            near_chance=is_near_chance(accuracy, self.bundle.spec.num_classes), measures=measures,
        )

    def _objective(self) -> ObjectiveConfig:
        """The study's CE + KD loss."""
        return ObjectiveConfig(kd_weight=self.config.kd_weight, temperature=self.config.temperature)

    def _student(self, name: str) -> nn.Module:
        seed_everything(self.seed)
        if name == TEACHER_COPY:
            return copy.deepcopy(self.teacher).requires_grad_(True).train()
        return build_model(name, self.bundle.spec).to(self.device)

    def _dense_student(self, name: str, fraction: float, epochs: int, lr_schedule: str = "constant") -> tuple[nn.Module, float]:
        """A copy of the dense student ``name`` trained ``epochs`` with CE + KD on ``fraction`` of
        the data at ``lr_schedule``, and the seconds that took; trained once per seed (a kd row and
        the method rows' starting student of the same length and schedule share it: the same seed
        gives the same model)."""
        key = (name, fraction, epochs, lr_schedule)
        if key not in self._dense:
            _, batches = self._train_batches(fraction)
            student = self._student(name)
            check_models_fit_data(self.teacher, student, next(iter(batches)), self.bundle.spec.num_classes, self.device)
            batches = with_cached_teacher(batches, self.teacher, self.device)  # the teacher runs once per sample
            started = time.perf_counter()
            if epochs > 0:
                distill(student, self.teacher, batches, epochs=epochs, lr=self.config.lr, objective=self._objective(),
                        device=self.device, phase="dense student", lr_schedule=lr_schedule)
            self._dense[key] = (student, time.perf_counter() - started)
        student, seconds = self._dense[key]
        return copy.deepcopy(student), seconds

    def run_kd(self, row: RowSpec, fraction: float) -> RowResult:
        """"KD alone": a dense student trained with CE + KD for the budget (stored dense), at the
        study's ``finetune_lr_schedule`` over the whole budget (it prunes nothing)."""
        epochs = self.config.epochs_for(row, fraction)
        student, seconds = self._dense_student(row.student, fraction, epochs, self.config.finetune_lr_schedule)
        return self._result(row, fraction, epochs, student, seconds, dense=True)

    def context(self, row: RowSpec, fraction: float) -> MethodContext:
        """The shared starting point of the method rows with this student, fraction and budget."""
        c = self.config
        epochs = c.epochs_for(row, fraction)
        key = (row.student, fraction, epochs)
        if key not in self._contexts:
            train, batches = self._train_batches(fraction)
            if row.student == TEACHER_COPY:
                student, trained = self._student(row.student), True
            else:
                student = self._dense_student(row.student, fraction, c.dense_student_epochs)[0]
                trained = c.dense_student_epochs > 0
            self._contexts[key] = MethodContext(
                teacher=self.teacher, starting_student=student, student_is_trained=trained,
                train_batches=batches, test_batches=self.test_batches, num_train_samples=dataset_size(train),
                budget=TrainingBudget(epochs, c.lr, c.kd_weight, c.temperature, len(batches), c.finetune_lr_schedule), device=self.device,
                num_classes=self.bundle.spec.num_classes,
            )
        return self._contexts[key]

    def run_method(self, row: RowSpec, target: Optional[float], fraction: float) -> RowResult:
        """A registered compression method on a copy of the shared starting student (target None: its own sparsity)."""
        context = self.context(row, fraction)
        method = get_method(row.method)
        entry = row.entry()
        if target is not None:
            method.plan(entry, (target,))
        seed_everything(self.seed)
        started = time.perf_counter()
        outcome = method.run(context, entry, target)
        wall = time.perf_counter() - started
        extra = {k: outcome.details[k] for k in ("pruned_accuracy",) if outcome.details.get(k) is not None}
        return self._result(row, fraction, context.budget.epochs, outcome.model, wall, dense=False, target=target,
                            deployed=outcome.deployed, extra=extra)


def train_teacher(config: StudyConfig, bundle: DataBundle, seed: int) -> tuple[dict, float]:
    """The seed's teacher, trained with CE on ``teacher_train_fraction`` of the training set; (state_dict, test accuracy)."""
    device = resolve_device(config.device)
    seed_everything(seed)
    teacher = build_model(config.teacher, bundle.spec).to(device)
    train = subset_fraction(bundle.train, config.teacher_train_fraction, seed)
    batches = make_loader(train, config.batch_size, shuffle=True, seed=seed)
    train_classifier(
        teacher, batches, epochs=config.teacher_epochs, lr=config.teacher_lr, device=device, lr_schedule=config.teacher_lr_schedule,
    )
    accuracy = evaluate_accuracy(teacher, make_loader(bundle.test, 256, shuffle=False, seed=seed), device)
    return {k: v.detach().cpu() for k, v in teacher.state_dict().items()}, accuracy


__all__ = ["RowResult", "run_compress_row", "SeedCells", "train_teacher"]
