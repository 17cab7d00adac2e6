"""Run every method of a comparison on the same teacher, starting student, data and budget.

1. Every method entry is checked first (unknown names, bad config_lists): nothing is trained or
   written before the whole config is known to be valid.
2. The teacher is trained once (or loaded from ``teacher_checkpoint``); the starting student is
   built once with the run's seed and, when ``dense_student_epochs > 0``, trained with CE + KD.
3. Each (method, target) run starts from a copy of that student with the same random state,
   and gets the same budget; its wall time covers pruning and training.
4. ``comparison.md``, ``comparison.csv``, ``comparison.png`` and ``comparison.json`` (plus
   ``teacher.pt`` when the teacher was trained here) are written at the end, each atomically.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..console import bars_enabled
from ..data.loaders import dataset_size, make_loader, subset_fraction
from ..data.registry import load_dataset
from ..errors import ConfigError
from ..io import atomic_torch_save, atomic_write, atomic_write_json, atomic_write_text, load_tensors
from ..metrics.accuracy import evaluate_accuracy
from ..metrics.footprint import ModelFootprint, model_footprint
from ..metrics.health import is_near_chance
from ..models.registry import build_model
from ..models.weights import load_weights
from ..pipeline.validation import check_models_fit_data, resolve_device
from ..training.reproducibility import seed_everything
from .config import CompareConfig, MethodEntry
from .method import CompressionMethod, MethodContext, ProgressTicker, TrainingBudget
from .plot import render_accuracy_vs_compression
from .registry import get_method
from .tables import TARGET_ACHIEVED, TARGET_FROM_CONFIG, TARGET_NONE, ResultRow, to_csv, to_markdown
from .training import distil, train_classifier

RESULT_FORMAT = "vs-plugin-comparison/1"
MARKDOWN, CSV, PLOT, JSON, TEACHER = "comparison.md", "comparison.csv", "comparison.png", "comparison.json", "teacher.pt"
OUTPUT_FILES = (MARKDOWN, CSV, PLOT, JSON, TEACHER)
Log = Callable[[str], None]


@dataclass(frozen=True)
class PlannedRun:
    """One row to produce: a method entry at one target (None: the method's own sparsity)."""

    entry: MethodEntry
    method: CompressionMethod
    target: Optional[float]

    @property
    def description(self) -> str:
        return self.entry.label if self.target is None else f"{self.entry.label} @ {self.target:g}"


@dataclass
class Prepared:
    """The shared state of a comparison: context, reference rows, and what to save."""

    context: MethodContext
    teacher_footprint: ModelFootprint
    reference_rows: list[ResultRow]
    teacher_state: Optional[dict] = None
    details: dict = field(default_factory=dict)


def plan_runs(config: CompareConfig) -> list[PlannedRun]:
    """Check every method entry and list the runs (loads each method; trains nothing)."""
    runs = []
    for entry in config.methods:
        method = get_method(entry.name)
        for target in method.plan(entry, config.targets):
            runs.append(PlannedRun(entry, method, target))
    return runs


def _preparation_key(config: CompareConfig) -> str:
    """A hash of every setting the teacher and the starting student depend on."""
    keys = ("dataset", "data_dir", "image_size", "teacher", "student", "teacher_checkpoint", "teacher_epochs",
            "teacher_lr", "dense_student_epochs", "batch_size", "lr", "kd_weight", "temperature", "seed", "train_fraction")
    record = {k: str(getattr(config, k)) for k in keys}
    if config.teacher_checkpoint is not None:  # the same path may hold another teacher later
        record["teacher_checkpoint_sha256"] = _file_digest(Path(config.teacher_checkpoint))
    text = json.dumps(record, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return "unreadable"  # load_weights reports it
    return digest.hexdigest()


def _bar(total: int, desc: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="epoch", leave=True, disable=not bars_enabled(progress), dynamic_ncols=True)


def _reference_row(name: str, model: nn.Module, teacher_weights: int, accuracy: float, dense_memory: bool) -> ResultRow:
    footprint = model_footprint(model)
    return ResultRow(
        method=name, target=None, target_from=TARGET_NONE, accuracy=accuracy, nnz=footprint.nnz, sparsity=footprint.sparsity,
        compression_vs_teacher=teacher_weights / max(footprint.nnz, 1),
        memory_bytes=footprint.dense_bytes if dense_memory else footprint.sparse_bytes, wall_time_s=0.0, reference=True,
    )


def _check_student(runs: Sequence[PlannedRun], student: nn.Module) -> None:
    """Let each method check its config_list against the student (optional ``check_student``)."""
    seen = set()
    for run in runs:
        check = getattr(run.method, "check_student", None)
        if check is not None and run.entry.label not in seen:
            seen.add(run.entry.label)
            check(run.entry, student)


def prepare(
    config: CompareConfig,
    runs: Sequence[PlannedRun] = (),
    *,
    progress: bool = True,
    log: Optional[Log] = None,
    cache_dir: Optional[Path] = None,
) -> Prepared:
    """Load the data, get the teacher and the starting student (trained once, or from ``cache_dir``).

    ``runs`` are checked against the student before anything is trained.
    """
    log = log or (lambda message: None)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    bundle = load_dataset(config.dataset, config.data_dir, download=True, image_size=config.image_size)
    # The students see train_fraction of the training set; a teacher trained here sees all of it.
    student_train = subset_fraction(bundle.train, config.train_fraction, config.seed)
    train_batches = make_loader(student_train, config.batch_size, shuffle=True, seed=config.seed, num_workers=config.num_workers)
    teacher_batches = train_batches if student_train is bundle.train else make_loader(
        bundle.train, config.batch_size, shuffle=True, seed=config.seed, num_workers=config.num_workers
    )
    test_batches = make_loader(bundle.test, max(config.batch_size, 256), shuffle=False, seed=config.seed, num_workers=config.num_workers)
    num_train = dataset_size(student_train)
    teacher = build_model(config.teacher, bundle.spec).to(device)
    seed_everything(config.seed)
    student = build_model(config.student, bundle.spec).to(device)
    check_models_fit_data(teacher, student, next(iter(train_batches)), bundle.spec.num_classes, device)
    _check_student(runs, student)

    cache_file = None if cache_dir is None else Path(cache_dir) / f"prepared-{_preparation_key(config)}.pt"
    teacher_state = None
    if cache_file is not None and cache_file.is_file():
        cached = load_tensors(cache_file, "cached teacher and student")
        teacher.load_state_dict(cached["teacher"])
        student.load_state_dict(cached["student"])
        log(f"loaded the teacher and the starting student from {cache_file}")
    else:
        if config.teacher_checkpoint is not None:
            load_weights(teacher, config.teacher_checkpoint)
        else:
            with _bar(config.teacher_epochs, "teacher", progress) as bar:
                train_classifier(teacher, teacher_batches, config.teacher_epochs, config.teacher_lr, device, on_epoch=lambda: bar.update(1))
            teacher_state = teacher.state_dict()
        teacher.eval()
        if config.dense_student_epochs > 0:
            with _bar(config.dense_student_epochs, "dense student", progress) as bar:
                distil(student, teacher, train_batches, epochs=config.dense_student_epochs, lr=config.lr,
                       kd_weight=config.kd_weight, temperature=config.temperature, num_train_samples=num_train,
                       device=device, phase="dense student", on_epoch=lambda: bar.update(1))
        if cache_file is not None:
            atomic_torch_save(cache_file, {"teacher": teacher.state_dict(), "student": student.state_dict()})
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)

    teacher_footprint = model_footprint(teacher)
    teacher_accuracy = evaluate_accuracy(teacher, test_batches, device)
    log(f"teacher {config.teacher}: {100 * teacher_accuracy:.2f}% on {bundle.test_split}")
    rows = [_reference_row("teacher", teacher, teacher_footprint.weights, teacher_accuracy, dense_memory=True)]
    if config.dense_student_epochs > 0:
        accuracy = evaluate_accuracy(student, test_batches, device)
        log(f"dense student {config.student}: {100 * accuracy:.2f}% after {config.dense_student_epochs} epochs of CE + KD")
        rows.append(_reference_row("dense student", student, teacher_footprint.weights, accuracy, dense_memory=False))
    budget = TrainingBudget(config.epochs, config.lr, config.kd_weight, config.temperature, len(train_batches))
    context = MethodContext(
        teacher=teacher, starting_student=student, student_is_trained=config.dense_student_epochs > 0,
        train_batches=train_batches, test_batches=test_batches, num_train_samples=num_train, budget=budget, device=device,
        num_classes=bundle.spec.num_classes,
    )
    details = {"test_split": bundle.test_split, "train_samples": num_train, "test_samples": dataset_size(bundle.test)}
    return Prepared(context, teacher_footprint, rows, teacher_state, details)


def run_one(prepared: Prepared, run: PlannedRun, *, seed: int, progress: bool = True) -> tuple[ResultRow, dict]:
    """Run one (method, target) from a fresh copy of the starting student; measure the result."""
    context = prepared.context
    seed_everything(seed)
    with _bar(context.budget.epochs, run.description, progress) as bar:
        context.progress = ProgressTicker(bar)
        started = time.perf_counter()
        outcome = run.method.run(context, run.entry, run.target)
        wall = time.perf_counter() - started
    context.progress = ProgressTicker()
    model = outcome.model
    footprint = model_footprint(model)
    accuracy = evaluate_accuracy(model, context.test_batches, context.device)
    target, target_from = (outcome.target, TARGET_FROM_CONFIG) if outcome.target is not None else (footprint.sparsity, TARGET_ACHIEVED)
    row = ResultRow(
        method=run.entry.label, target=target, target_from=target_from, accuracy=accuracy, nnz=footprint.nnz,
        sparsity=footprint.sparsity, compression_vs_teacher=prepared.teacher_footprint.weights / max(footprint.nnz, 1),
        memory_bytes=footprint.sparse_bytes, wall_time_s=wall, near_chance=is_near_chance(accuracy, context.num_classes),
    )
    return row, {"method": run.entry.name, "label": run.entry.label, "target": run.target, **outcome.details}


def _title(config: CompareConfig) -> str:
    return f"{config.dataset}: {config.teacher} -> {config.student}, {config.epochs} epochs per method"


def _notes(config: CompareConfig, prepared: Prepared) -> list[str]:
    start = (
        f"every method starts from the same dense student trained {config.dense_student_epochs} epochs with CE + KD"
        if config.dense_student_epochs > 0
        else f"every method starts from the same random initialisation of the student (seed {config.seed})"
    )
    return [
        start + f"; the teacher is shared ({'loaded from ' + str(config.teacher_checkpoint) if config.teacher_checkpoint else f'trained {config.teacher_epochs} epochs here'}).",
        f"budget: the Variational Student trains {config.epochs} epochs; each baseline prunes, then fine-tunes {config.epochs} epochs "
        f"with CE + {config.kd_weight} KD (T = {config.temperature}), Adam lr {config.lr}, batch {config.batch_size}.",
        f"accuracy: top-1 on {prepared.details['test_split']} ({prepared.details['test_samples']} samples).",
        "nnz: non-zero weights of Linear/Conv layers; compression = teacher weights / nnz.",
        "memory: students stored sparse (CSR, 4-byte values, 2-byte column indices, 4-byte row pointers, other parameters dense fp32); the teacher dense fp32.",
        "wall time: pruning and training of that row on this machine (shared teacher and dense-student training excluded).",
    ]


def _config_record(config: CompareConfig) -> dict:
    record = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name == "methods":
            value = [{"name": m.name, "label": m.label, "config_list": list(m.config_list), "targets": m.targets, "options": dict(m.options)} for m in value]
        elif isinstance(value, Path):
            value = str(value)
        record[f.name] = value
    return record


def check_outputs(out_dir: Path, overwrite: bool) -> None:
    """Refuse to replace a previous comparison unless asked to."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output path {out_dir} exists and is not a folder")
    existing = [name for name in OUTPUT_FILES if (out_dir / name).exists()]
    if existing and not overwrite:
        raise ConfigError(f"{out_dir} already holds a comparison ({', '.join(existing)}); pass --overwrite to replace it")


def run_comparison(
    config: CompareConfig, out_dir: Path, *, overwrite: bool = False, progress: bool = True, log: Optional[Log] = None
) -> list[ResultRow]:
    """Run the whole comparison and write its tables and plot to ``out_dir``; returns the rows."""
    log = log or (tqdm.write if progress else (lambda message: None))
    out_dir = Path(out_dir)
    runs = plan_runs(config)
    check_outputs(out_dir, overwrite)
    prepared = prepare(config, runs, progress=progress, log=log)
    rows = list(prepared.reference_rows)
    details = []
    for run in runs:
        row, detail = run_one(prepared, run, seed=config.seed, progress=progress)
        log(
            f"{run.description}: {100 * row.accuracy:.2f}% accuracy, {100 * row.sparsity:.2f}% sparsity, "
            f"{row.compression_vs_teacher:.1f}x vs teacher, {row.wall_time_s:.1f} s"
        )
        rows.append(row)
        details.append(detail)
    title = _title(config)
    notes = _notes(config, prepared)
    # Render everything first, so that a failure leaves no partial set of outputs behind.
    csv_text, markdown = to_csv(rows), to_markdown(rows, title, notes)
    png = render_accuracy_vs_compression(rows, title)
    record = {
        "format": RESULT_FORMAT, "title": title, "rows": [r.to_dict() for r in rows], "runs": details,
        "notes": notes, "config": _config_record(config), **prepared.details,
    }
    if prepared.teacher_state is not None:
        atomic_torch_save(out_dir / TEACHER, prepared.teacher_state)
    atomic_write(out_dir / PLOT, lambda tmp: tmp.write_bytes(png))
    atomic_write_text(out_dir / CSV, csv_text)
    atomic_write_json(out_dir / JSON, record)
    atomic_write_text(out_dir / MARKDOWN, markdown)
    return rows


__all__ = ["PlannedRun", "Prepared", "plan_runs", "prepare", "run_one", "run_comparison", "check_outputs", "OUTPUT_FILES"]
