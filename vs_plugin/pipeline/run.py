"""One compression run, end to end: teacher (trained or given) -> variational student -> report.

Used by ``vs_plugin.compress`` and ``vs-plugin compress``. Inputs are validated before anything
is written; see :mod:`vs_plugin.pipeline.outputs` for what is written when.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..data.loaders import BatchSource, dataset_labels, dataset_size, make_loader, subset_fraction
from ..errors import ConfigError, DataError, ModelError, VSPluginError
from ..losses.kl import KLWarmup
from ..losses.objective import VariationalStudentObjective
from ..metrics.accuracy import evaluate_accuracy
from ..metrics.footprint import model_footprint
from ..models.registry import InputSpec
from ..training.loop import EpochRecord, train_one_epoch
from ..training.reproducibility import restore_rng_state, rng_state, seed_everything
from ..training.steps import ClassifierStep, StudentStep
from ..variationalize import finalize, variationalize
from .outputs import RunDirectory
from .report import build_report
from .settings import CompressSettings

CHECKPOINT_FORMAT = "vs-plugin-checkpoint/1"
#: Settings that may differ when resuming (more epochs, another device, a quiet terminal).
RESUMABLE_CHANGES = ("epochs", "device", "progress", "num_workers")


@dataclass
class CompressionJob:
    """Everything one run needs. ``student=None`` means a copy of the teacher (init from its weights)."""

    teacher: nn.Module
    student: Optional[nn.Module]
    train: BatchSource
    test: BatchSource
    settings: CompressSettings
    train_teacher: bool = False
    spec: Optional[InputSpec] = None
    names: dict = field(default_factory=dict)
    rerun: dict = field(default_factory=dict)
    test_split: str = "the given test set"
    out_dir: Optional[Path] = None
    resume: bool = False
    overwrite: bool = False
    log: Optional[Callable[[str], None]] = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device cuda was asked for but CUDA is not available (torch {torch.__version__}); use --device cpu")
    return torch.device(name)


def _num_classes(job: CompressionJob, labels: Optional[torch.Tensor]) -> int:
    if job.spec is not None:
        return job.spec.num_classes
    if labels is None:
        raise DataError("cannot tell the number of classes: give datasets with labels (targets) or the input spec")
    return int(labels.max()) + 1


def check_models_fit_data(teacher: nn.Module, student: Optional[nn.Module], batch: tuple, num_classes: int, device: torch.device) -> None:
    """One forward pass of each model on a real batch: outputs must be (B, num_classes)."""
    inputs = batch[0][:2].to(device)
    for role, model in (("teacher", teacher), ("student", student)):
        if model is None:
            continue
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                output = model(inputs)
        except Exception as error:  # noqa: BLE001 - any failure here is a shape problem with the data
            message = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise ModelError(f"the {role} cannot read inputs of shape {tuple(inputs.shape[1:])}: {message}") from None
        finally:
            model.train(was_training)
        if not isinstance(output, torch.Tensor) or output.dim() != 2:
            raise ModelError(f"the {role} must return (batch, classes) logits, got {getattr(output, 'shape', type(output))}")
        if output.shape[1] != num_classes:
            raise ModelError(f"class-count mismatch: the {role} outputs {output.shape[1]} classes but the data has {num_classes}")


def _check_labels(labels: Optional[torch.Tensor], num_classes: int, split: str) -> None:
    if labels is not None and len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(f"{split} labels range over [{int(labels.min())}, {int(labels.max())}] but the models have {num_classes} classes")


def _first_batch(loader) -> tuple:
    for batch in loader:
        return batch
    raise DataError("the training set is empty")


def _checkpoint_state(phase: str, epoch: int, teacher: nn.Module, student: Optional[nn.Module], optimizer, history: dict, settings: dict, global_step: int) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "phase": phase,
        "epoch": epoch,
        "global_step": global_step,
        "teacher": teacher.state_dict(),
        "student": None if student is None else student.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "history": history,
        "settings": settings,
    }


def _check_resumable(saved: dict, current: dict) -> None:
    differing = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
    if differing:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in differing)
        raise ConfigError(f"cannot resume with different settings ({details}); only {', '.join(RESUMABLE_CHANGES)} may change")


def _epoch_line(phase: str, record: EpochRecord, total: int) -> str:
    parts = [f"{phase} epoch {record.epoch}/{total}", f"loss {record.terms['loss']:.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in record.terms.items() if k not in ("loss",) and v]
    parts += [f"{k} {v:.4f}" for k, v in record.extra.items()]
    return " | ".join(parts) + f" | {record.seconds:.1f}s"


def run_compression(job: CompressionJob) -> tuple[nn.Module, dict]:
    """Run ``job``; returns the finalized student and the report dict."""
    started = time.perf_counter()
    settings = job.settings
    log = job.log or (tqdm.write if settings.progress else (lambda message: None))
    device = resolve_device(settings.device)
    seed_everything(settings.seed)

    # -- validate everything before writing anything ---------------------------------------
    train_data = job.train
    if settings.train_fraction < 1:
        if not isinstance(train_data, torch.utils.data.Dataset):
            raise ConfigError("train_fraction < 1 needs the training data as a Dataset, not a DataLoader")
        train_data = subset_fraction(train_data, settings.train_fraction, settings.seed)
    train_loader = make_loader(train_data, settings.batch_size, shuffle=True, seed=settings.seed, num_workers=settings.num_workers)
    test_loader = make_loader(job.test, max(settings.batch_size, 256), shuffle=False, seed=settings.seed, num_workers=settings.num_workers)
    num_train = dataset_size(train_data)
    train_labels = dataset_labels(train_data if isinstance(train_data, torch.utils.data.Dataset) else train_data.dataset)
    num_classes = _num_classes(job, train_labels)
    _check_labels(train_labels, num_classes, "training")
    teacher = job.teacher.to(device)
    student_template = None if job.student is None else job.student.to(device)
    check_models_fit_data(teacher, student_template, _first_batch(train_loader), num_classes, device)
    variational_config = settings.variational_config(student_from_teacher=job.student is None)
    objective_config = settings.objective_config()

    run_dir = RunDirectory(job.out_dir, job.resume, job.overwrite) if job.out_dir is not None else None
    settings_record = {**job.rerun, **settings.to_dict()}
    checkpoint = None
    if run_dir is not None and job.resume:
        checkpoint = run_dir.load_checkpoint()
        if checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{run_dir.path} holds a checkpoint of another format: {checkpoint.get('format')!r}")
        _check_resumable(checkpoint["settings"], settings_record)
    if run_dir is not None:
        run_dir.open()

    try:
        result = _train_and_measure(
            job, settings, device, teacher, train_loader, test_loader, num_train, num_classes,
            variational_config, objective_config, run_dir, checkpoint, settings_record, log, started,
        )
    except VSPluginError:
        if run_dir is not None:
            run_dir.discard()
        raise
    return result


def _train_and_measure(job, settings, device, teacher, train_loader, test_loader, num_train, num_classes,
                       variational_config, objective_config, run_dir, checkpoint, settings_record, log, started):
    history: dict = {"teacher": [], "student": []}
    phase_done_teacher = False
    if checkpoint is not None:
        teacher.load_state_dict(checkpoint["teacher"])
        history = checkpoint["history"]
        phase_done_teacher = checkpoint["phase"] == "student"

    # -- teacher ----------------------------------------------------------------------------
    trained_teacher_here = job.train_teacher
    if job.train_teacher and not phase_done_teacher and settings.teacher_epochs > 0:
        optimizer = torch.optim.Adam(teacher.parameters(), lr=settings.teacher_lr)
        start_epoch = 0
        if checkpoint is not None and checkpoint["phase"] == "teacher":
            optimizer.load_state_dict(checkpoint["optimizer"])
            restore_rng_state(checkpoint["rng"])
            start_epoch = checkpoint["epoch"]
        step = ClassifierStep(teacher, device)
        for epoch in range(start_epoch, settings.teacher_epochs):
            record = train_one_epoch(
                teacher, optimizer, train_loader, step, epoch=epoch, first_global_step=epoch * len(train_loader),
                phase="teacher", progress=settings.progress, total_epochs=settings.teacher_epochs,
            )
            record.extra["test_accuracy"] = evaluate_accuracy(teacher, test_loader, device)
            history["teacher"].append(record.to_dict())
            log(_epoch_line("teacher", record, settings.teacher_epochs))
            if run_dir is not None:
                run_dir.save_checkpoint(
                    _checkpoint_state("teacher", epoch + 1, teacher, None, optimizer, history, settings_record, 0)
                )
    teacher.eval()
    teacher_accuracy = evaluate_accuracy(teacher, test_loader, device)
    teacher_footprint = model_footprint(teacher)

    # -- student ----------------------------------------------------------------------------
    student = copy.deepcopy(teacher) if job.student is None else job.student.to(device)
    dense_student_footprint = model_footprint(student)
    variationalize(student, variational_config)
    student.to(device)
    objective = VariationalStudentObjective(
        student, teacher if objective_config.uses_teacher or objective_config.bsr_weight > 0 else None,
        objective_config, num_train_samples=num_train,
    ).to(device)
    steps_per_epoch = len(train_loader)
    warmup = KLWarmup.from_epochs(settings.kl_warmup_epochs, steps_per_epoch, settings.kl_hold_epochs)
    optimizer = torch.optim.Adam(student.parameters(), lr=settings.lr)
    start_epoch = 0
    if checkpoint is not None and checkpoint["phase"] == "student":
        student.load_state_dict(checkpoint["student"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        restore_rng_state(checkpoint["rng"])
        start_epoch = checkpoint["epoch"]
    step = StudentStep(student, teacher if objective_config.uses_teacher else None, objective, warmup, device)
    try:
        for epoch in range(start_epoch, settings.epochs):
            record = train_one_epoch(
                student, optimizer, train_loader, step, epoch=epoch, first_global_step=epoch * steps_per_epoch,
                phase="student", progress=settings.progress, total_epochs=settings.epochs,
            )
            record.extra["test_accuracy"] = evaluate_accuracy(student, test_loader, device)
            record.extra["sparsity"] = model_footprint(student).sparsity
            record.extra["beta"] = warmup.beta((epoch + 1) * steps_per_epoch - 1)
            history["student"].append(record.to_dict())
            log(_epoch_line("student", record, settings.epochs))
            if run_dir is not None:
                run_dir.save_checkpoint(
                    _checkpoint_state("student", epoch + 1, teacher, student, optimizer, history, settings_record, (epoch + 1) * steps_per_epoch)
                )
    finally:
        step.close()

    # -- measure ----------------------------------------------------------------------------
    finalize(student)
    student.eval()
    student_accuracy = evaluate_accuracy(student, test_loader, device)
    report = build_report(
        teacher=teacher_footprint,
        teacher_accuracy=teacher_accuracy,
        student=model_footprint(student),
        dense_student=dense_student_footprint,
        student_accuracy=student_accuracy,
        names={
            "teacher": job.names.get("teacher"),
            "student": job.names.get("student") or (job.names.get("teacher") if job.student is None else None),
            "student_init": "teacher weights" if job.student is None else "random (from scratch)",
        },
        dataset={
            "name": job.names.get("dataset"),
            "train_samples": num_train,
            "test_samples": dataset_size(job.test),
            "num_classes": num_classes,
            "test_split": job.test_split,
            "input_shape": None if job.spec is None else [job.spec.channels, job.spec.height, job.spec.width],
        },
        config=settings_record,
        history=history,
        wall_time_s=time.perf_counter() - started,
        device=device,
    )
    if run_dir is not None:
        spec = {
            "format": "vs-plugin-student/1",
            "model": report["student"]["name"],
            "input": report["dataset"]["input_shape"],
            "num_classes": num_classes,
            "weights": "student.pt",
            "granularity": settings.granularity,
            "nnz": report["student"]["nnz"],
            "sparsity": report["student"]["sparsity"],
        }
        teacher_state = teacher.state_dict() if trained_teacher_here else None
        run_dir.write_results(student.state_dict(), spec, report, teacher_state)
    return student, report
