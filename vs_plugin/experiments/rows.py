"""Running one row of an experiment for one seed and training fraction."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional


from ..api import compress_by_name
from ..compare.config import CompareConfig, MethodEntry
from ..compare.registry import get_method
from ..compare.runner import PlannedRun, Prepared, prepare, run_one
from ..compare.training import distil
from ..data.bundle import DataBundle
from ..data.loaders import dataset_size, make_loader, subset_fraction
from ..metrics.accuracy import evaluate_accuracy
from ..metrics.footprint import model_footprint
from ..metrics.health import is_near_chance
from ..models.registry import build_model
from ..models.weights import load_weights
from ..pipeline.validation import resolve_device
from ..training.reproducibility import seed_everything
from .config import ExperimentConfig, RowSpec


@dataclass
class RowResult:
    """What one row measured for one seed and fraction."""

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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RowResult":
        return cls(**data)


def run_compress_row(config: ExperimentConfig, row: RowSpec, seed: int, fraction: float, teacher_path: Path) -> RowResult:
    settings = config.compress_settings(row, seed, fraction)
    started = time.perf_counter()
    _, report = compress_by_name(
        config.teacher, row.student, config.dataset, teacher_checkpoint=teacher_path, data_dir=config.data_dir, settings=settings
    )
    student, teacher = report["student"], report["teacher"]
    return RowResult(
        label=row.label, kind=row.kind, seed=seed, fraction=fraction, epochs=settings.epochs, accuracy=student["accuracy"],
        teacher_accuracy=teacher["accuracy"], nnz=student["nnz"], weights=student["weights"], sparsity=student["sparsity"],
        compression_vs_teacher=student["compression_vs_teacher"], memory_bytes=student["memory_bytes"],
        memory_reduction_vs_teacher=student["memory_reduction_vs_teacher"], wall_time_s=time.perf_counter() - started,
        threshold_sweep=student.get("threshold_sweep", []),
        near_chance=is_near_chance(student["accuracy"], report["dataset"]["num_classes"]),
    )


def run_kd_row(
    config: ExperimentConfig, row: RowSpec, seed: int, fraction: float, teacher_path: Path, bundle: DataBundle
) -> RowResult:
    """"KD alone": a dense student trained with CE + KD for the budget (stored dense)."""
    device = resolve_device(str(config.settings.get("device", "auto")))
    seed_everything(seed)
    teacher = load_weights(build_model(config.teacher, bundle.spec), teacher_path).to(device).eval()
    student = build_model(row.student, bundle.spec).to(device)
    train = subset_fraction(bundle.train, fraction, seed)
    train_batches = make_loader(train, config.batch_size, shuffle=True, seed=seed)
    test_batches = make_loader(bundle.test, 256, shuffle=False, seed=seed)
    epochs = config.epochs_for(row, fraction)
    started = time.perf_counter()
    distil(student, teacher, train_batches, epochs=epochs, lr=config.lr, kd_weight=config.kd_weight,
           temperature=config.temperature, num_train_samples=dataset_size(train), device=device, phase=row.label)
    wall = time.perf_counter() - started
    student_fp, teacher_fp = model_footprint(student), model_footprint(teacher)
    accuracy = evaluate_accuracy(student, test_batches, device)
    return RowResult(
        label=row.label, kind=row.kind, seed=seed, fraction=fraction, epochs=epochs,
        accuracy=accuracy, teacher_accuracy=evaluate_accuracy(teacher, test_batches, device),
        nnz=student_fp.nnz, weights=student_fp.weights, sparsity=student_fp.sparsity,
        compression_vs_teacher=teacher_fp.weights / max(student_fp.nnz, 1), memory_bytes=student_fp.dense_bytes,
        memory_reduction_vs_teacher=teacher_fp.dense_bytes / student_fp.dense_bytes, wall_time_s=wall,
        near_chance=is_near_chance(accuracy, bundle.spec.num_classes),
    )


class MethodRows:
    """Compare-method rows of one seed: the teacher and the dense starting student are prepared once."""

    def __init__(self, config: ExperimentConfig, seed: int, teacher_path: Path) -> None:
        self.config = config
        self.seed = seed
        self.teacher_path = teacher_path
        self._prepared: dict[tuple, Prepared] = {}

    def _compare_config(self, row: RowSpec, fraction: float) -> CompareConfig:
        c = self.config
        return CompareConfig(
            dataset=c.dataset, teacher=c.teacher, student=row.student, data_dir=c.data_dir, teacher_checkpoint=self.teacher_path,
            dense_student_epochs=c.dense_student_epochs, epochs=c.epochs_for(row, fraction), batch_size=c.batch_size, lr=c.lr,
            train_fraction=fraction,
            kd_weight=c.kd_weight, temperature=c.temperature, seed=self.seed, device=str(c.settings.get("device", "auto")),
            methods=(self._entry(row),),
        )

    @staticmethod
    def _entry(row: RowSpec) -> MethodEntry:
        return MethodEntry(name=row.method, label=row.label, config_list=tuple(row.config_list))

    def run(self, row: RowSpec, target: float, fraction: float) -> RowResult:
        compare_config = self._compare_config(row, fraction)
        key = (row.student, fraction, compare_config.epochs)
        if key not in self._prepared:
            self._prepared[key] = prepare(compare_config, progress=False)
        prepared = self._prepared[key]
        method = get_method(row.method)
        method.plan(self._entry(row), (target,))
        result, _ = run_one(prepared, PlannedRun(self._entry(row), method, target), seed=self.seed, progress=False)
        teacher_row = prepared.reference_rows[0]
        return RowResult(
            label=row.label, kind=row.kind, seed=self.seed, fraction=fraction, epochs=compare_config.epochs, accuracy=result.accuracy,
            teacher_accuracy=teacher_row.accuracy, nnz=result.nnz, weights=model_footprint(prepared.context.starting_student).weights,
            sparsity=result.sparsity, compression_vs_teacher=result.compression_vs_teacher, memory_bytes=result.memory_bytes,
            memory_reduction_vs_teacher=prepared.teacher_footprint.dense_bytes / result.memory_bytes,
            wall_time_s=result.wall_time_s, target=target, near_chance=result.near_chance,
        )


def train_teacher(config: ExperimentConfig, bundle: DataBundle, seed: int) -> tuple[dict, float]:
    """The seed's teacher, trained with CE on the full training set; (state_dict, test accuracy)."""
    from ..compare.training import train_classifier

    device = resolve_device(str(config.settings.get("device", "auto")))
    seed_everything(seed)
    teacher = build_model(config.teacher, bundle.spec).to(device)
    batches = make_loader(bundle.train, config.batch_size, shuffle=True, seed=seed)
    train_classifier(teacher, batches, config.teacher_epochs, config.teacher_lr, device)
    accuracy = evaluate_accuracy(teacher, make_loader(bundle.test, 256, shuffle=False, seed=seed), device)
    return {k: v.detach().cpu() for k, v in teacher.state_dict().items()}, accuracy


__all__ = ["RowResult", "run_compress_row", "run_kd_row", "MethodRows", "train_teacher"]
