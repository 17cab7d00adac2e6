"""``vs-plugin compress --structured``: a Variational Student that comes out physically smaller.

1. The teacher is loaded (``--teacher-checkpoint``) or trained (CE, ``teacher_epochs``).
2. The student (a copy of the teacher, or another architecture) gets one Gaussian gate per
   output channel (core channel mode) and trains with the Variational Student objective on the
   core loop (:func:`vs_plugin.training.fit.fit`). ``prune_steps`` pruning steps are spread over
   the epochs (the last one at the end of training), through the torch-pruning adapter's hook
   (:class:`vs_plugin.integrations.torch_pruning.channel_pruning.ChannelPruning`): channels go by
   log alpha threshold, by ratio, or by log alpha ranking until the MACs fall to ``target_macs``
   of the dense student's.
3. The gates are folded into the weights (``finalize``): a plain, smaller model. Optionally
   ``finetune_epochs`` more epochs of CE + KD.
4. Measured in one process: top-1 accuracy (masked student before the last step, pruned,
   fine-tuned), parameters and MACs (torch-pruning's counter, one sample), CPU latency of the
   dense teacher and the pruned student at each batch size (median of ``latency_repeats``
   interleaved runs).

Written to the output folder: ``report.json`` (the core report plus a ``structured`` section),
``pruned.json`` + ``pruned.pt`` (spec and state_dict, :func:`load_pruned`), ``teacher.pt`` when
the teacher was trained here, and ``checkpoint.pt`` after every epoch of every phase, from which
``resume`` continues (:mod:`vs_plugin.integrations.torch_pruning.structured_resume`); the folder is the core run folder (locked,
overwritten only on success). Our choices, stated in the report: gates start at
log sigma^2 = -6 unless ``init_log_sigma2`` is set (at -15 the clipped log alpha gets no KL
gradient), and learn at ``gate_lr`` (default 10 x ``lr``: gates must travel ~10 units of log
alpha, weights only a little).

This module is core code: it imports the torch-pruning adapter only inside its functions, so the
core loads without torch_pruning.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn

from ..data.loaders import dataset_size, make_loader, subset_fraction
from ..errors import ConfigError, OutputError, VSPluginError
from ..metrics.accuracy import evaluate_accuracy
from ..metrics.footprint import model_footprint
from ..models.registry import InputSpec
from ..models.teacher import TeacherSource
from ..training.fit import each_epoch, fit
from ..training.recipes import accuracy_hook, distill, train_classifier
from ..training.reproducibility import restore_rng_state, rng_state, seed_everything
from ..training.steps import StudentStep
from ..variationalize import finalize
from .inputs import build_named_inputs, dataset_section
from .outputs import RunDirectory
from .report import build_report
from .run import RESUMABLE_CHANGES, warn_short_warmup
from .settings import CompressSettings
from .validation import resolve_device

if TYPE_CHECKING:  # the adapter is imported only inside functions
    from ..integrations.torch_pruning.plan import PlanItem
    from ..integrations.torch_pruning.structured_settings import StructuredSettings

REPORT = "report.json"
TEACHER_WEIGHTS = "teacher.pt"
CHECKPOINT = "checkpoint.pt"
PRUNED_SPEC, PRUNED_WEIGHTS = "pruned.json", "pruned.pt"  # the adapter's serialization names them too
OUTPUT_FILES = (REPORT, PRUNED_SPEC, PRUNED_WEIGHTS, TEACHER_WEIGHTS, CHECKPOINT)
#: Phase payload -> written as the run's checkpoint by :func:`_checkpointer`.
SaveFunction = Callable[[str, int, dict], None]


def open_output(
    path: Optional[Union[str, Path]], *, resume: bool = False, overwrite: bool = False, inputs: Sequence[Any] = ()
) -> Optional[RunDirectory]:
    """The run folder of a structured run (the core :class:`RunDirectory`: locked, checked for
    writing, staged when overwriting), or None when nothing is written."""
    if path is None:
        return None
    return RunDirectory(Path(path), resume=resume, overwrite=overwrite, files=OUTPUT_FILES, inputs=inputs)


def settings_record(rerun: Optional[Mapping[str, Any]], settings: CompressSettings, structured: "StructuredSettings") -> dict:
    """The report's ``config``: what repeats the run, and what a resume must match."""
    return {**dict(rerun or {}), **settings.replace(granularity="channel").to_dict(), "structured": structured.to_dict()}


def _checkpointer(run_dir: Optional[RunDirectory], record: dict, common: dict, started: float, earlier_s: float) -> Optional[SaveFunction]:
    """A save function writing ``{format, phase, epoch, settings, wall_time_s, **common, **payload}``."""
    from ..integrations.torch_pruning.structured_resume import STRUCTURED_CHECKPOINT_FORMAT

    if run_dir is None:
        return None

    def save(phase: str, epoch: int, payload: dict) -> None:
        run_dir.save_checkpoint({
            "format": STRUCTURED_CHECKPOINT_FORMAT, "phase": phase, "epoch": epoch, "settings": record,
            "wall_time_s": earlier_s + time.perf_counter() - started, **common, **payload,
        })

    return save


def train_teacher(
    teacher: nn.Module, train_loader, test_loader, settings: CompressSettings, device: torch.device, log: Callable[[str], None],
    *, resume: Optional[dict] = None, save: Optional[SaveFunction] = None,
) -> list[dict]:
    """Train ``teacher`` with cross-entropy for ``settings.teacher_epochs`` epochs (Adam, ``teacher_lr``).

    ``resume``: a ``teacher``-phase checkpoint to continue; ``save`` checkpoints every epoch.
    """
    from ..integrations.torch_pruning.structured_resume import load_model_state

    teacher.to(device)
    if resume is not None:
        load_model_state(teacher, resume["teacher"], "teacher")
        restore_rng_state(resume["rng"])

    def checkpoint(state, record) -> None:
        save("teacher", state.epoch, {"teacher": teacher.state_dict(), "optimizer": state.optimizer.state_dict(),
                                      "teacher_history": state.history, "rng": rng_state()})

    state = train_classifier(
        teacher, train_loader, epochs=settings.teacher_epochs, lr=settings.teacher_lr, device=device,
        optimizer_state=resume["optimizer"] if resume is not None else None, start_epoch=int(resume["epoch"]) if resume else 0,
        history=list(resume["teacher_history"]) if resume else [], progress=settings.progress, log=log,
        evaluate=accuracy_hook(teacher, test_loader, device), after_epoch=[checkpoint] if save is not None else [],
    )
    return state.history


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
    plan: list["PlanItem"]
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
    structured: "StructuredSettings",
    from_teacher: bool,
    device: torch.device,
    log: Callable[[str], None],
    on_epoch: Optional[Callable[[], None]] = None,
    resume: Optional[dict] = None,
    save: Optional[SaveFunction] = None,
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
        resume: a ``student`` or ``finetune`` checkpoint to continue (:mod:`.structured_resume`).
        save: checkpoints after every epoch (phase, epochs done, payload).
    """
    from ..integrations.torch_pruning.channel_pruning import ChannelPruning
    from ..integrations.torch_pruning.structured_resume import load_model_state

    settings = settings.replace(granularity="channel")
    hook = ChannelPruning(
        student, teacher, example_inputs, num_train_samples=num_train_samples, settings=settings, structured=structured,
        from_teacher=from_teacher, steps_per_epoch=len(train_loader), test_loader=test_loader, device=device,
    )
    student.to(device)
    objective = hook.objective
    step = StudentStep(student, teacher if objective.config.uses_teacher else None, objective, hook.warmup, device)
    optimizer = hook.optimizer()
    student_history: list[dict] = []
    start = 0
    if resume is not None:  # rebuild the student as pruned so far, then load its state
        hook.restore(resume)
        student_history, start = list(resume["student_history"]), settings.epochs
        if resume["phase"] == "student":
            load_model_state(student, resume["student"], "student")
            optimizer = hook.optimizer()
            optimizer.load_state_dict(resume["optimizer"])
            start = int(resume["epoch"])
            restore_rng_state(resume["rng"])

    def phase_state() -> dict:
        return {**hook.state(), "student_history": student_history}

    def checkpoint(state, record) -> None:
        save("student", state.epoch, {"student": student.state_dict(), "optimizer": state.optimizer.state_dict(),
                                      "rng": rng_state(), **phase_state()})

    try:
        fit(student, optimizer, train_loader, step, epochs=settings.epochs, phase="student", start_epoch=start,
            history=student_history, progress=settings.progress, log=log, evaluate=accuracy_hook(student, test_loader, device),
            measure=[hook.measure], after_epoch=[*each_epoch(on_epoch), *([checkpoint] if save is not None else [])])
    finally:
        step.close()

    finalize(student)
    student.eval()
    extra = hook.extra
    finetune_start, finetune_history, finetune_optimizer = 0, [], None
    if resume is not None and resume["phase"] == "finetune":
        load_model_state(student, resume["student"], "fine-tuned student")
        finetune_start, finetune_history = int(resume["epoch"]), list(resume["finetune_history"])
        finetune_optimizer = resume["optimizer"]
        restore_rng_state(resume["rng"])
    else:
        extra["pruned_accuracy"] = evaluate_accuracy(student, test_loader, device)

    def save_finetune(state, record) -> None:
        save("finetune", state.epoch, {"student": student.state_dict(), "optimizer": state.optimizer.state_dict(),
                                       "finetune_history": state.history, "rng": rng_state(), **phase_state()})

    if structured.finetune_epochs > 0:
        distill(
            student, teacher, train_loader, epochs=structured.finetune_epochs, lr=settings.lr, objective=objective.config,
            device=device, optimizer_state=finetune_optimizer, start_epoch=finetune_start, history=finetune_history,
            progress=settings.progress, log=log, evaluate=accuracy_hook(student, test_loader, device),
            after_epoch=[*each_epoch(on_epoch), *([save_finetune] if save is not None else [])],
        )
    student.eval()
    accuracy = evaluate_accuracy(student, test_loader, device)
    extra["finetuned_accuracy"] = accuracy if structured.finetune_epochs else None
    return StructuredOutcome(student, hook.plan, accuracy, extra, student_history, finetune_history)


def structured_from_modules(
    teacher: nn.Module,
    train,
    test,
    spec: InputSpec,
    *,
    settings: CompressSettings,
    structured: "StructuredSettings",
    student: Optional[nn.Module] = None,
    names: Optional[Mapping[str, Optional[str]]] = None,
    rerun: Optional[Mapping[str, Any]] = None,
    test_split: str = "the given test set",
    train_teacher: bool = False,
    teacher_history: Optional[list] = None,
    out_dir: Optional[Union[str, Path]] = None,
    overwrite: bool = False,
    resume: bool = False,
    log: Optional[Callable[[str], None]] = None,
    started_at: Optional[float] = None,
    dataset_info: Optional[Mapping[str, Any]] = None,
    teacher_info: Optional[Mapping[str, Any]] = None,
    inputs: Sequence[Any] = (),
) -> tuple[nn.Module, dict]:
    """The structured Variational Student of ``teacher``; returns (pruned student, report).

    Args:
        teacher: the teacher (trained first when ``train_teacher``; otherwise not changed).
        train / test: datasets (or loaders) of (input, label).
        spec: input shape and class count.
        settings: training, loss and gate settings (granularity is channel whatever it says).
        structured: pruning, fine-tuning and latency settings.
        student: another architecture trained from scratch; None copies the teacher.
        names: ``teacher``/``student``/``dataset`` names for the report and the saved spec.
        rerun: run arguments stored in the report's config (to repeat the run).
        test_split: what the test set is, for the report.
        train_teacher: train the teacher with cross-entropy first (``teacher_epochs``) and write ``teacher.pt``.
        teacher_history: the records of a teacher trained elsewhere, for the report.
        out_dir / overwrite / resume: output folder (None writes nothing); replace a previous run
            there once this one has succeeded; continue the run there from its checkpoint.
        log: sink for per-epoch lines.
        started_at: ``time.perf_counter()`` when the run began (the report's wall time).
        dataset_info / teacher_info: more facts for the report's ``dataset`` section (the image
            pipeline) and ``teacher.weights_from`` (where the teacher's weights came from).
        inputs: files the run reads (never deleted from ``out_dir``).
    """
    from ..integrations.torch_pruning.structured_settings import check_single_process, prune_epochs

    started = started_at if started_at is not None else time.perf_counter()
    log = log or (lambda message: None)
    check_single_process(settings)
    prune_epochs(settings.epochs, structured.prune_steps)  # fail before any training
    warn_short_warmup(settings)
    record = settings_record(rerun, settings, structured)
    run_dir = open_output(out_dir, resume=resume, overwrite=overwrite, inputs=inputs)
    try:
        checkpoint = read_checkpoint(run_dir, record, log, settings, structured) if resume and run_dir is not None else None
        return _structured_run(
            teacher, train, test, spec, settings=settings, structured=structured, student=student, names=dict(names or {}),
            record=record, test_split=test_split, trains_teacher=train_teacher, teacher_history=teacher_history, log=log,
            run_dir=run_dir, checkpoint=checkpoint, started=started, dataset_info=dataset_info, teacher_info=teacher_info,
        )
    except VSPluginError as error:
        if run_dir is not None:
            _on_failure(run_dir, error, resume)
        raise
    finally:
        if run_dir is not None:
            run_dir.close()


def _on_failure(run_dir: RunDirectory, error: VSPluginError, resume: bool) -> None:
    """After a failed run: keep the checkpoint when the disk was full (then say so) or when
    resuming; otherwise remove what the run wrote."""
    if isinstance(error, OutputError) and run_dir.file(CHECKPOINT).exists():
        error.args = (f"{error}; the last checkpoint is kept: make room, then continue with --resume",)
        run_dir.close()
    elif resume:
        run_dir.close()
    else:
        run_dir.discard()


def read_checkpoint(
    run_dir: RunDirectory, record: dict, log: Callable[[str], None], settings: CompressSettings, structured: "StructuredSettings"
) -> dict:
    """The checkpoint in ``run_dir``, checked against the current settings; says where it resumes."""
    from ..integrations.torch_pruning.structured_resume import check_resumable

    checkpoint = run_dir.load_checkpoint()
    check_resumable(checkpoint, record, RESUMABLE_CHANGES)
    totals = {"teacher": settings.teacher_epochs, "student": settings.epochs, "finetune": structured.finetune_epochs}
    log(f"resuming from {checkpoint['phase']} epoch {checkpoint['epoch']} of {totals[checkpoint['phase']]} "
        f"({run_dir.file(CHECKPOINT)})")
    return checkpoint


def _structured_run(
    teacher: nn.Module, train, test, spec: InputSpec, *, settings: CompressSettings, structured: "StructuredSettings",
    student: Optional[nn.Module], names: dict, record: dict, test_split: str, trains_teacher: bool, teacher_history: Optional[list],
    log: Callable[[str], None], run_dir: Optional[RunDirectory], checkpoint: Optional[dict], started: float,
    dataset_info: Optional[Mapping[str, Any]] = None, teacher_info: Optional[Mapping[str, Any]] = None,
) -> tuple[nn.Module, dict]:
    from ..integrations.torch_pruning.serialization import save_pruned
    from ..integrations.torch_pruning.structured_report import model_size, structured_section
    from ..integrations.torch_pruning.structured_resume import load_model_state

    settings = settings.replace(granularity="channel")
    device = resolve_device(settings.device)
    seed_everything(settings.seed)
    train_loader, test_loader, num_train = loaders(train, test, settings)
    input_shape = (spec.channels, spec.height, spec.width)
    example = torch.zeros(1, *input_shape, device=device)
    earlier_s = float(checkpoint.get("wall_time_s", 0.0)) if checkpoint is not None else 0.0
    teacher_history = list(teacher_history or [])
    if trains_teacher and (checkpoint is None or checkpoint["phase"] == "teacher"):
        save = _checkpointer(run_dir, record, {}, started, earlier_s)
        teacher_history = train_teacher(teacher, train_loader, test_loader, settings, device, log, resume=checkpoint, save=save)
        checkpoint = None
        seed_everything(settings.seed)  # the student's draws do not depend on how the teacher was trained
    elif checkpoint is not None:
        load_model_state(teacher, checkpoint["teacher"], "teacher")
        teacher_history = checkpoint["teacher_history"]

    teacher = teacher.to(device).eval()
    teacher_accuracy = evaluate_accuracy(teacher, test_loader, device)
    from_teacher = student is None
    student = copy.deepcopy(teacher) if from_teacher else student.to(device)
    dense_footprint = model_footprint(student)
    dense_size = model_size(student, input_shape)
    save = _checkpointer(run_dir, record, {"teacher": teacher.state_dict(), "teacher_history": teacher_history}, started, earlier_s)
    outcome = train_structured(
        student, teacher, train_loader, test_loader, example, num_train_samples=num_train, settings=settings,
        structured=structured, from_teacher=from_teacher, device=device, log=log, resume=checkpoint, save=save,
    )
    extra, accuracy = outcome.extra, outcome.accuracy
    history = {"teacher": teacher_history, "student": outcome.student_history, "finetune": outcome.finetune_history}
    student_name = names.get("student") or (names.get("teacher") if from_teacher else None)
    report = build_report(
        teacher=model_footprint(teacher), teacher_accuracy=teacher_accuracy, student=model_footprint(student),
        dense_student=dense_footprint, student_accuracy=accuracy,
        names={"teacher": names.get("teacher"), "student": student_name,
               "student_init": "teacher weights" if from_teacher else "random (from scratch)"},
        dataset={"name": names.get("dataset"), "train_samples": num_train, "test_samples": dataset_size(test),
                 "num_classes": spec.num_classes, "test_split": test_split, "input_shape": list(input_shape), **dict(dataset_info or {})},
        config=record,
        history=history, wall_time_s=0.0, device=device,
    )
    if teacher_info:
        report["teacher"]["weights_from"] = dict(teacher_info)
    report["structured"] = structured_section(teacher, student, dense_size, input_shape, structured, extra)
    report["wall_time_s"] = earlier_s + time.perf_counter() - started
    if run_dir is not None:
        save_pruned(student, run_dir.file(PRUNED_SPEC), outcome.plan, input_shape=input_shape, num_classes=spec.num_classes,
                    model_name=student_name, extra={"accuracy": accuracy, "macs": report["structured"]["student"]["macs"]})
        run_dir.mark_written(PRUNED_SPEC, PRUNED_WEIGHTS)
        if trains_teacher:
            run_dir.write_torch(TEACHER_WEIGHTS, teacher.state_dict())
        report["structured"]["files"] = {"spec": PRUNED_SPEC, "weights": PRUNED_WEIGHTS}
        run_dir.write_json(REPORT, report)
        run_dir.commit()
    return student, report


def run_structured(
    teacher: str,
    student: Optional[str],
    dataset: str,
    *,
    settings: CompressSettings,
    structured: "StructuredSettings",
    teacher_checkpoint: Optional[Union[str, Path]] = None,
    pretrained: bool = False,
    reset_head: bool = False,
    data_dir: Optional[Union[str, Path]] = None,
    download: bool = True,
    image_size: Optional[int] = None,
    out_dir: Optional[Union[str, Path]] = None,
    overwrite: bool = False,
    resume: bool = False,
    log: Optional[Callable[[str], None]] = None,
) -> tuple[nn.Module, dict]:
    """What ``vs-plugin compress --structured`` does: models and data by name (as
    :func:`vs_plugin.pipeline.inputs.build_named_inputs` builds them), then
    :func:`structured_from_modules`. Without teacher weights (or after ``reset_head``) the
    teacher is trained first. Every epoch of every phase is checkpointed in ``out_dir``;
    ``resume`` continues from there."""
    from ..integrations.torch_pruning.structured_settings import check_single_process, prune_epochs

    check_single_process(settings)
    prune_epochs(settings.epochs, structured.prune_steps)  # fail before reading any data
    seed_everything(settings.seed)
    started = time.perf_counter()
    inputs = build_named_inputs(
        teacher, student, dataset, settings=settings, source=TeacherSource(teacher_checkpoint, pretrained, reset_head),
        data_dir=data_dir, download=download, image_size=image_size,
    )
    bundle = inputs.bundle
    return structured_from_modules(
        inputs.teacher, bundle.train, bundle.test, bundle.spec, settings=settings, structured=structured, student=inputs.student,
        names={"teacher": teacher, "student": None if student in (None, "same") else student, "dataset": bundle.name},
        rerun=inputs.rerun, test_split=bundle.test_split, train_teacher=inputs.train_teacher, out_dir=out_dir, overwrite=overwrite,
        resume=resume, log=log, started_at=started, dataset_info=dataset_section(bundle), teacher_info=inputs.teacher_info,
        inputs=[teacher_checkpoint],
    )


__all__ = [
    "REPORT",
    "TEACHER_WEIGHTS",
    "OUTPUT_FILES",
    "open_output",
    "train_teacher",
    "loaders",
    "StructuredOutcome",
    "train_structured",
    "structured_from_modules",
    "run_structured",
]
