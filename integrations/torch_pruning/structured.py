"""``vs-plugin compress --structured``: a Variational Student that comes out physically smaller.

1. The teacher is loaded (``--teacher-checkpoint``) or trained (CE, ``teacher_epochs``).
2. The student (a copy of the teacher, or another architecture) gets one Gaussian gate per
   output channel (core channel mode) and trains with the Variational Student objective through
   :class:`VariationalStudentPruner` (data terms in the loss, KL/N and BSR through
   ``regularize``). ``prune_steps`` pruning steps are spread over the epochs (the last one at the
   end of training): channels go by log alpha threshold, by ratio, or by log alpha ranking until
   the MACs fall to ``target_macs`` of the dense student's.
3. The gates are folded into the weights (``finalize``): a plain, smaller model. Optionally
   ``finetune_epochs`` more epochs of CE + KD.
4. Measured in one process: top-1 accuracy (masked student before the last step, pruned,
   fine-tuned), parameters and MACs (torch-pruning's counter, one sample), CPU latency of the
   dense teacher and the pruned student at each batch size (median of ``latency_repeats``
   interleaved runs).

Written to the output folder: ``report.json`` (the core report plus a ``structured`` section),
``pruned.json`` + ``pruned.pt`` (spec and state_dict, :func:`load_pruned`), ``teacher.pt`` when
the teacher was trained here. Our choices, stated in the report: gates start at
log sigma^2 = -6 unless ``init_log_sigma2`` is set (at -15 the clipped log alpha gets no KL
gradient), and learn at ``gate_lr`` (default 10 x ``lr``: gates must travel ~10 units of log
alpha, weights only a little).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import torch
import torch.nn as nn

from vs_plugin.data.loaders import dataset_size, make_loader, subset_fraction
from vs_plugin.errors import ConfigError
from vs_plugin.io import atomic_torch_save, atomic_write_json
from vs_plugin.layers.channel import ChannelGateLayer
from vs_plugin.losses.kl import KLWarmup
from vs_plugin.metrics.accuracy import evaluate_accuracy
from vs_plugin.metrics.footprint import model_footprint
from vs_plugin.models.registry import InputSpec
from vs_plugin.models.teacher import TeacherSource
from vs_plugin.pipeline.inputs import build_named_inputs, dataset_section
from vs_plugin.pipeline.report import build_report
from vs_plugin.pipeline.settings import CompressSettings
from vs_plugin.pipeline.validation import resolve_device
from vs_plugin.training.loop import train_one_epoch
from vs_plugin.training.optim import adam
from vs_plugin.training.reproducibility import seed_everything
from vs_plugin.training.steps import ClassifierStep, StudentStep
from vs_plugin.variationalize import finalize

from .finetune import distill, epoch_line
from .plan import PlanItem, zero_shifts
from .pruner import VariationalStudentPruner
from .serialization import PRUNED_SPEC, PRUNED_WEIGHTS, save_pruned
from .structured_report import model_size, structured_section
from .structured_settings import GATE_LR_FACTOR, STRUCTURED_INIT_LOG_SIGMA2, StructuredSettings, check_single_process, prune_epochs

REPORT = "report.json"
TEACHER_WEIGHTS = "teacher.pt"
OUTPUT_FILES = (REPORT, PRUNED_SPEC, PRUNED_WEIGHTS, TEACHER_WEIGHTS)


class OutputFolder:
    """The output folder of a structured run: refuses to overwrite a run unless told to."""

    def __init__(self, path: Optional[Union[str, Path]], overwrite: bool = False) -> None:
        self.path = None if path is None else Path(path)
        if self.path is None:
            return
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"output path {self.path} exists and is not a folder")
        previous = [n for n in OUTPUT_FILES if (self.path / n).exists()]
        if previous and not overwrite:
            raise ConfigError(f"{self.path} already holds a run ({', '.join(previous)}); pass --overwrite to replace it")
        if previous:
            for name in OUTPUT_FILES:
                (self.path / name).unlink(missing_ok=True)

    def file(self, name: str) -> Path:
        assert self.path is not None
        return self.path / name


def train_teacher(
    teacher: nn.Module, train_loader, test_loader, settings: CompressSettings, device: torch.device, log: Callable[[str], None]
) -> list[dict]:
    """Train ``teacher`` with cross-entropy for ``settings.teacher_epochs`` epochs (Adam, ``teacher_lr``)."""
    teacher.to(device)
    optimizer = adam(teacher.parameters(), lr=settings.teacher_lr)
    step = ClassifierStep(teacher, device)
    records = []
    for epoch in range(settings.teacher_epochs):
        record = train_one_epoch(
            teacher, optimizer, train_loader, step, epoch=epoch, first_global_step=epoch * len(train_loader),
            phase="teacher", progress=settings.progress, total_epochs=settings.teacher_epochs,
        )
        record.extra["test_accuracy"] = evaluate_accuracy(teacher, test_loader, device)
        records.append(record.to_dict())
        log(epoch_line("teacher", records[-1], settings.teacher_epochs))
    teacher.eval()
    return records


def loaders(train, test, settings: CompressSettings):
    """(train loader, test loader, number of training samples) as the core pipeline makes them."""
    if settings.train_fraction < 1:
        if not isinstance(train, torch.utils.data.Dataset):
            raise ConfigError("train_fraction < 1 needs the training data as a Dataset, not a DataLoader")
        train = subset_fraction(train, settings.train_fraction, settings.seed)
    train_loader = make_loader(train, settings.batch_size, shuffle=True, seed=settings.seed, num_workers=settings.num_workers)
    test_loader = make_loader(test, max(settings.batch_size, 256), shuffle=False, seed=settings.seed, num_workers=settings.num_workers)
    return train_loader, test_loader, dataset_size(train)


@dataclass
class StructuredOutcome:
    """A trained and pruned structured student (plain layers) and what happened on the way."""

    student: nn.Module
    plan: list[PlanItem]
    accuracy: float
    extra: dict
    student_history: list[dict]
    finetune_history: list[dict]


def train_structured(
    student: nn.Module,
    teacher: nn.Module,
    train_loader,
    test_loader,
    example_inputs: torch.Tensor,
    *,
    num_train_samples: int,
    settings: CompressSettings,
    structured: StructuredSettings,
    from_teacher: bool,
    device: torch.device,
    log: Callable[[str], None],
    on_epoch: Optional[Callable[[], None]] = None,
) -> StructuredOutcome:
    """Gate ``student`` (in place), train it with the VS objective, prune on schedule, finalize it
    and fine-tune it: steps 2 and 3 of the module docstring.

    Args:
        student / teacher: the dense student (on ``device``) and the trained teacher.
        train_loader / test_loader: batch sources.
        example_inputs: a batch of one on ``device``.
        num_train_samples: N of the KL/N term.
        settings / structured: as for :func:`structured_from_modules`.
        from_teacher: the student starts from the teacher's weights (sets the default gate init).
        device: where to train.
        log: sink for per-epoch lines.
        on_epoch: called after every training epoch (progress bars).
    """
    settings = settings.replace(granularity="channel")
    schedule = prune_epochs(settings.epochs, structured.prune_steps)
    init = settings.init_log_sigma2 if settings.init_log_sigma2 is not None else STRUCTURED_INIT_LOG_SIGMA2
    variational = settings.replace(init_log_sigma2=init).variational_config(student_from_teacher=from_teacher)
    objective = settings.objective_config()
    steps_per_epoch = len(train_loader)
    pruner = VariationalStudentPruner(
        student, example_inputs, num_train_samples=num_train_samples, teacher=teacher, objective=objective,
        warmup=KLWarmup.from_epochs(settings.kl_warmup_epochs, steps_per_epoch, settings.kl_hold_epochs),
        prune=structured.prune_config(settings.threshold), variational=variational,
    )
    student.to(device)
    gate_lr = structured.gate_lr if structured.gate_lr is not None else GATE_LR_FACTOR * settings.lr
    optimizer = adam(pruner.parameter_groups(settings.lr, gate_lr), lr=settings.lr)
    uses_teacher = objective.uses_teacher
    step = StudentStep(student, teacher if uses_teacher else None, pruner.objective, KLWarmup(end_step=0), device)
    student_history: list[dict] = []
    extra: dict = {"prune_by": structured.prune_by, "target_macs_ratio": structured.target_macs if structured.prune_by == "macs" else None,
                   "gate_init_log_sigma2": init, "gate_lr": gate_lr, "steps": []}
    penalties: list[float] = []
    try:
        for epoch in range(settings.epochs):
            penalties.clear()
            record = train_one_epoch(
                student, optimizer, train_loader, step, epoch=epoch, first_global_step=epoch * steps_per_epoch,
                phase="student", progress=settings.progress, total_epochs=settings.epochs,
                after_backward=lambda: penalties.append(float(pruner.regularize())),
            )
            record.extra["regularisation"] = sum(penalties) / max(len(penalties), 1)
            record.extra["test_accuracy"] = evaluate_accuracy(student, test_loader, device)
            record.extra["gates_at_threshold"] = _gates_pruned_fraction(student)
            if epoch + 1 in schedule:
                last = epoch + 1 == schedule[-1]
                reference = copy.deepcopy(student) if last and structured.prune_by == "threshold" else None
                if last:
                    extra["masked_accuracy"] = record.extra["test_accuracy"]
                pruner.step()
                done = pruner.steps[-1]
                if reference is not None:
                    zero_shifts(reference, done.removed)
                    extra["reference_accuracy"] = evaluate_accuracy(reference, test_loader, device)
                extra["steps"].append({"epoch": epoch + 1, "macs_before": done.macs_before, "macs_after": done.macs_after,
                                       "plan_items": len(done.plan), "channels_removed": sum(len(v) for v in done.removed.values())})
                record.extra["macs_ratio"] = done.macs_after / pruner.initial_macs
                optimizer = adam(pruner.parameter_groups(settings.lr, gate_lr), lr=settings.lr)
            student_history.append(record.to_dict())
            log(epoch_line("student", student_history[-1], settings.epochs))
            if on_epoch is not None:
                on_epoch()
    finally:
        step.close()

    finalize(student)
    student.eval()
    extra["pruned_accuracy"] = evaluate_accuracy(student, test_loader, device)
    finetune_history = distill(
        student, teacher, train_loader, epochs=structured.finetune_epochs, lr=settings.lr, objective=objective,
        device=device, test_loader=test_loader, progress=settings.progress, log=log, on_epoch=on_epoch,
    )
    student.eval()
    accuracy = evaluate_accuracy(student, test_loader, device)
    extra["finetuned_accuracy"] = accuracy if structured.finetune_epochs else None
    return StructuredOutcome(student, list(pruner.history), accuracy, extra, student_history, finetune_history)


def structured_from_modules(
    teacher: nn.Module,
    train,
    test,
    spec: InputSpec,
    *,
    settings: CompressSettings,
    structured: StructuredSettings,
    student: Optional[nn.Module] = None,
    names: Optional[Mapping[str, Optional[str]]] = None,
    rerun: Optional[Mapping[str, Any]] = None,
    test_split: str = "the given test set",
    teacher_history: Optional[list] = None,
    save_teacher: bool = False,
    out_dir: Optional[Union[str, Path]] = None,
    overwrite: bool = False,
    log: Optional[Callable[[str], None]] = None,
    dataset_info: Optional[Mapping[str, Any]] = None,
    teacher_info: Optional[Mapping[str, Any]] = None,
) -> tuple[nn.Module, dict]:
    """The structured Variational Student from a trained teacher; returns (pruned student, report).

    Args:
        teacher: the trained teacher (not changed).
        train / test: datasets (or loaders) of (input, label).
        spec: input shape and class count.
        settings: training, loss and gate settings (granularity is channel whatever it says).
        structured: pruning, fine-tuning and latency settings.
        student: another architecture trained from scratch; None copies the teacher.
        names: ``teacher``/``student``/``dataset`` names for the report and the saved spec.
        rerun: run arguments stored in the report's config (to repeat the run).
        test_split: what the test set is, for the report.
        teacher_history / save_teacher: the teacher's training records; write ``teacher.pt``.
        out_dir / overwrite: output folder (None writes nothing).
        log: sink for per-epoch lines.
        dataset_info / teacher_info: more facts for the report's ``dataset`` section (the image
            pipeline) and ``teacher.weights_from`` (where the teacher's weights came from).
    """
    started = time.perf_counter()
    log = log or (lambda message: None)
    names = dict(names or {})
    check_single_process(settings)
    settings = settings.replace(granularity="channel")
    device = resolve_device(settings.device)
    seed_everything(settings.seed)
    output = OutputFolder(out_dir, overwrite)
    prune_epochs(settings.epochs, structured.prune_steps)  # fail before any training
    train_loader, test_loader, num_train = loaders(train, test, settings)
    input_shape = (spec.channels, spec.height, spec.width)
    example = torch.zeros(1, *input_shape, device=device)

    teacher = teacher.to(device).eval()
    teacher_accuracy = evaluate_accuracy(teacher, test_loader, device)
    from_teacher = student is None
    student = copy.deepcopy(teacher) if from_teacher else student.to(device)
    dense_footprint = model_footprint(student)
    dense_size = model_size(student, input_shape)
    outcome = train_structured(
        student, teacher, train_loader, test_loader, example, num_train_samples=num_train, settings=settings,
        structured=structured, from_teacher=from_teacher, device=device, log=log,
    )
    extra, accuracy = outcome.extra, outcome.accuracy
    history = {"teacher": list(teacher_history or []), "student": outcome.student_history, "finetune": outcome.finetune_history}
    student_name = names.get("student") or (names.get("teacher") if from_teacher else None)
    report = build_report(
        teacher=model_footprint(teacher), teacher_accuracy=teacher_accuracy, student=model_footprint(student),
        dense_student=dense_footprint, student_accuracy=accuracy,
        names={"teacher": names.get("teacher"), "student": student_name,
               "student_init": "teacher weights" if from_teacher else "random (from scratch)"},
        dataset={"name": names.get("dataset"), "train_samples": num_train, "test_samples": dataset_size(test),
                 "num_classes": spec.num_classes, "test_split": test_split, "input_shape": list(input_shape), **dict(dataset_info or {})},
        config={**dict(rerun or {}), **settings.to_dict(), "structured": structured.to_dict()},
        history=history, wall_time_s=0.0, device=device,
    )
    if teacher_info:
        report["teacher"]["weights_from"] = dict(teacher_info)
    report["structured"] = structured_section(teacher, student, dense_size, input_shape, structured, extra)
    report["wall_time_s"] = time.perf_counter() - started
    if output.path is not None:
        output.path.mkdir(parents=True, exist_ok=True)
        save_pruned(student, output.file(PRUNED_SPEC), outcome.plan, input_shape=input_shape, num_classes=spec.num_classes,
                    model_name=student_name, extra={"accuracy": accuracy, "macs": report["structured"]["student"]["macs"]})
        if save_teacher:
            atomic_torch_save(output.file(TEACHER_WEIGHTS), teacher.state_dict())
        report["structured"]["files"] = {"spec": PRUNED_SPEC, "weights": PRUNED_WEIGHTS}
        atomic_write_json(output.file(REPORT), report)
    return student, report


def _gates_pruned_fraction(model: nn.Module) -> float:
    gates = [layer.log_alpha() >= layer.threshold for layer in model.modules() if isinstance(layer, ChannelGateLayer)]
    if not gates:
        return 0.0
    flags = torch.cat([g.flatten() for g in gates])
    return float(flags.float().mean())


def run_structured(
    teacher: str,
    student: Optional[str],
    dataset: str,
    *,
    settings: CompressSettings,
    structured: StructuredSettings,
    teacher_checkpoint: Optional[Union[str, Path]] = None,
    pretrained: bool = False,
    reset_head: bool = False,
    data_dir: Optional[Union[str, Path]] = None,
    download: bool = True,
    image_size: Optional[int] = None,
    out_dir: Optional[Union[str, Path]] = None,
    overwrite: bool = False,
    log: Optional[Callable[[str], None]] = None,
) -> tuple[nn.Module, dict]:
    """What ``vs-plugin compress --structured`` does: models and data by name (as
    :func:`vs_plugin.pipeline.inputs.build_named_inputs` builds them), then
    :func:`structured_from_modules`. Without teacher weights (or after ``reset_head``) the
    teacher is trained first."""
    log = log or (lambda message: None)
    check_single_process(settings)
    seed_everything(settings.seed)
    OutputFolder(out_dir, overwrite)  # fail before any training
    inputs = build_named_inputs(
        teacher, student, dataset, settings=settings, source=TeacherSource(teacher_checkpoint, pretrained, reset_head),
        data_dir=data_dir, download=download, image_size=image_size,
    )
    bundle = inputs.bundle
    teacher_history: list = []
    if inputs.train_teacher:
        device = resolve_device(settings.device)
        train_loader, test_loader, _ = loaders(bundle.train, bundle.test, settings)
        teacher_history = train_teacher(inputs.teacher, train_loader, test_loader, settings, device, log)
    return structured_from_modules(
        inputs.teacher, bundle.train, bundle.test, bundle.spec, settings=settings, structured=structured, student=inputs.student,
        names={"teacher": teacher, "student": None if student in (None, "same") else student, "dataset": bundle.name},
        rerun=inputs.rerun, test_split=bundle.test_split, teacher_history=teacher_history, save_teacher=inputs.train_teacher,
        out_dir=out_dir, overwrite=overwrite, log=log, dataset_info=dataset_section(bundle), teacher_info=inputs.teacher_info,
    )


__all__ = [
    "REPORT",
    "TEACHER_WEIGHTS",
    "OutputFolder",
    "train_teacher",
    "loaders",
    "StructuredOutcome",
    "train_structured",
    "structured_from_modules",
    "run_structured",
]
