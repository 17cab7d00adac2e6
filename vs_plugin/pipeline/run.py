"""One compression run, end to end: teacher (trained or given) -> variational student -> report.

Used by ``vs_plugin.compress`` and ``vs-plugin compress`` (plain and ``--structured``), in one
process or under torchrun. The run is one skeleton (:func:`run_compression`): check the inputs,
make the loaders, open the run folder and check a checkpoint to resume, train or load the
teacher, measure it, train the student, report, write the files. What differs between the
per-weight student (:class:`WeightStudent`, here) and the structured one (channel gates removed
through torch-pruning: :class:`vs_plugin.pipeline.structured.StructuredStudent`) is a
:class:`StudentKind`: its checks, checkpoints, training, report section and files.
Inputs are validated before anything is written; see :mod:`vs_plugin.pipeline.outputs` for what
is written when, and :mod:`vs_plugin.pipeline.phases` for the training itself.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Protocol

import torch
import torch.nn as nn

from ..console import logger
from ..data.loaders import BatchSource, dataset_labels, dataset_size, make_loader, subset_fraction
from ..errors import CheckpointError, ConfigError, OutputError, VSPluginError
from ..losses.kl_controller import KLController
from ..losses.objective import VariationalStudentObjective
from ..metrics.footprint import model_footprint
from ..models.registry import InputSpec
from ..training.distributed import DistributedContext, barrier, broadcast_object, init_distributed, process_device
from ..pruning import GradualLogAlphaPruning, apply_keep_masks, global_keep_masks, log_alpha_scores
from ..variationalize import finalize, masks as keep_masks, set_threshold, variationalize
from .outputs import CHECKPOINT as CHECKPOINT_FILE, RUN_FILES, RunDirectory
from .phases import (
    CHECKPOINT_FORMAT, PhaseEnvironment, distributed_accuracy, phase_finished, to_device, phase_reached, train_student, train_teacher,
)
from .report import build_report
from .settings import CompressSettings, with_recorded_defaults
from .validation import check_labels, check_models_fit_data, first_batch, infer_num_classes, resolve_device

if TYPE_CHECKING:  # the adapter is imported only inside functions
    from ..integrations.torch_pruning.structured_settings import StructuredSettings

#: Settings that may differ when resuming (more epochs, another device, a quiet terminal).
RESUMABLE_CHANGES = ("epochs", "device", "progress", "num_workers", "cache_teacher", "compile_kl", "threshold_sweep", "eval_every", "channels_last")


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
    inputs: tuple = ()  # files the run reads (a teacher checkpoint): never deleted from out_dir
    num_classes: Optional[int] = None  # the class count, for data whose labels cannot be read up front
    dataset_info: dict = field(default_factory=dict)  # merged into report.json "dataset" (image pipeline)
    teacher_info: dict = field(default_factory=dict)  # report.json "teacher.weights_from": where they came from
    structured: Optional["StructuredSettings"] = None  # set: the structured student (pipeline/structured.py)
    started: Optional[float] = None  # time.perf_counter() when the run began (before its data was read)


class StudentKind(Protocol):
    """What differs between the per-weight and the structured student of one run."""

    files: tuple[str, ...]  # what a run of this kind writes in its folder
    checkpoint_format: str

    def settings(self, settings: CompressSettings, student_given: bool) -> CompressSettings:
        """The run's settings, checked for this kind (raises ConfigError before anything is read);
        ``student_given``: the student is another model, not a copy of the teacher."""

    def record(self) -> dict:
        """More entries of the settings record (report.json ``config``, checked on resume)."""

    def phase_epochs(self, job: "CompressionJob", settings: CompressSettings) -> dict:
        """Epochs of each checkpointed phase, for the line that says where a run resumes."""

    def train_teacher(self, job: "CompressionJob", env: PhaseEnvironment, teacher: nn.Module, checkpoint: Optional[dict]) -> None:
        """Train the teacher when the run does (resuming from ``checkpoint``), or load it from the checkpoint."""

    def train_student(
        self, job: "CompressionJob", env: PhaseEnvironment, student: nn.Module, teacher: nn.Module, num_train: int,
        checkpoint: Optional[dict],
    ) -> tuple[nn.Module, float]:
        """Train and prune ``student``; returns (plain student, its test accuracy)."""

    def complete_report(self, report: dict, job: "CompressionJob", env: PhaseEnvironment, student: nn.Module, teacher: nn.Module) -> None:
        """Add this kind's measurements to ``report``."""

    def write(self, run_dir: RunDirectory, job: "CompressionJob", student: nn.Module, report: dict, teacher: nn.Module) -> None:
        """Write the run's files (report.json last) and commit the folder."""


def student_kind(structured: Optional["StructuredSettings"]) -> StudentKind:
    """The per-weight student, or the structured one when ``structured`` settings are given."""
    if structured is None:
        return WeightStudent()
    from .structured import StructuredStudent

    return StructuredStudent(structured)


def check_resumable(checkpoint: dict, current: dict, world_size: int, checkpoint_format: str = CHECKPOINT_FORMAT) -> None:
    """``checkpoint`` must be of this run's kind, written with the same settings (but
    :data:`RESUMABLE_CHANGES`) by as many processes."""
    found = checkpoint.get("format")
    if found != checkpoint_format:
        if found == CHECKPOINT_FORMAT:  # a structured run was given a per-weight checkpoint
            raise CheckpointError(f"the checkpoint is not one of a structured run (format {found!r}); resume it without --structured")
        raise CheckpointError(f"the checkpoint has another format: {found!r}")
    saved = with_recorded_defaults(checkpoint["settings"])
    differing = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
    if differing:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in differing)
        raise ConfigError(f"cannot resume with different settings ({details}); only {', '.join(RESUMABLE_CHANGES)} may change")
    if checkpoint.get("world_size", 1) != world_size:
        raise ConfigError(
            f"the checkpoint was written by {checkpoint.get('world_size', 1)} process(es); resume with the same number "
            f"(torchrun --nproc_per_node), not {world_size}"
        )


def _prepare_output(
    job: CompressionJob, kind: StudentKind, settings_record: dict, dist: DistributedContext
) -> tuple[Optional[RunDirectory], Optional[dict]]:
    """Rank 0 validates the output folder and reads the checkpoint; every rank gets the outcome."""
    run_dir, checkpoint, failure = None, None, None
    if dist.is_main and job.out_dir is not None:
        try:
            run_dir = RunDirectory(job.out_dir, job.resume, job.overwrite, files=kind.files, inputs=job.inputs)
            checkpoint = run_dir.load_checkpoint() if job.resume else None
            if checkpoint is not None:
                check_resumable(checkpoint, settings_record, dist.world_size, kind.checkpoint_format)
        except VSPluginError as error:
            failure = error
            if run_dir is not None:
                run_dir.discard() if not job.resume else run_dir.close()
                run_dir = None
    if dist.enabled:
        message = broadcast_object(None if failure is None else str(failure), dist)
        checkpoint = broadcast_object(checkpoint, dist)
        if message is not None and failure is None:
            raise VSPluginError(message)
    if failure is not None:
        raise failure
    return run_dir, checkpoint


def run_compression(job: CompressionJob, kind: Optional[StudentKind] = None) -> tuple[nn.Module, dict]:
    """Run ``job``; returns the finalized student and the report dict (on every rank).

    ``kind``: the student's kind (default :func:`student_kind` of ``job.structured``)."""
    started = job.started if job.started is not None else time.perf_counter()
    kind = kind if kind is not None else student_kind(job.structured)
    settings = kind.settings(job.settings, job.student is not None)
    dist = init_distributed(resolve_device(settings.device))
    device = process_device(resolve_device(settings.device), dist)
    quiet = lambda message: None  # noqa: E731
    log = (job.log or logger.info) if dist.is_main else quiet  # per-epoch lines: logging, unless the caller takes them
    if settings.batch_size % dist.world_size:
        raise ConfigError(f"batch_size {settings.batch_size} (the global batch) must be divisible by the {dist.world_size} processes")

    warn_short_warmup(settings)

    # -- validate everything before writing anything ---------------------------------------
    # The student sees ``train_fraction`` of the training set (low-data regime); a teacher trained
    # here always sees all of it, as a pre-trained teacher would have.
    train_data = job.train
    if settings.train_fraction < 1:
        if not isinstance(train_data, torch.utils.data.Dataset):
            raise ConfigError("train_fraction < 1 needs the training data as a Dataset, not a DataLoader")
        train_data = subset_fraction(train_data, settings.train_fraction, settings.seed)
    per_rank_batch = settings.batch_size // dist.world_size
    pin = device.type == "cuda"  # pinned host memory for asynchronous copies to the GPU
    loader_options = dict(shuffle=True, seed=settings.seed, num_workers=settings.num_workers, rank=dist.rank, world_size=dist.world_size, pin_memory=pin)
    train_loader = make_loader(train_data, per_rank_batch, **loader_options)
    teacher_loader = train_loader if train_data is job.train else make_loader(job.train, per_rank_batch, **loader_options)
    test_loader = make_loader(job.test, max(per_rank_batch, 256), shuffle=False, seed=settings.seed, num_workers=settings.num_workers, rank=dist.rank, world_size=dist.world_size, pad=False, pin_memory=pin)
    if settings.amp == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA device (fp16 autocast with a gradient scaler); use --amp bf16 on the CPU")
    num_train = dataset_size(train_data)
    train_labels = dataset_labels(train_data if isinstance(train_data, torch.utils.data.Dataset) else train_data.dataset)
    if job.spec is not None:
        num_classes = job.spec.num_classes
    else:
        num_classes = job.num_classes if job.num_classes is not None else infer_num_classes(train_labels)
    check_labels(train_labels, num_classes, "training")
    test_data = job.test.dataset if isinstance(job.test, torch.utils.data.DataLoader) else job.test
    check_labels(dataset_labels(test_data) if isinstance(test_data, torch.utils.data.Dataset) else None, num_classes, "test")
    teacher = to_device(job.teacher, device, settings.channels_last)
    student_template = None if job.student is None else to_device(job.student, device, settings.channels_last)
    check_models_fit_data(teacher, student_template, first_batch(train_loader), num_classes, device)
    settings_record = {**job.rerun, **settings.to_dict(), **kind.record()}
    run_dir, checkpoint = _prepare_output(job, kind, settings_record, dist)
    if checkpoint is not None:
        total = kind.phase_epochs(job, settings)[checkpoint["phase"]]
        where = "" if run_dir is None else f" ({run_dir.file(CHECKPOINT_FILE)})"  # run_dir: rank 0 only
        log(f"resuming from {checkpoint['phase']} epoch {checkpoint['epoch']} of {total}{where}")

    env = PhaseEnvironment(
        settings=settings, device=device, dist=dist, train_loader=train_loader, teacher_loader=teacher_loader,
        test_loader=test_loader, log=log,
        write_checkpoint=None if run_dir is None else run_dir.save_checkpoint,
        settings_record=settings_record,
        history=checkpoint.get("history", {"teacher": [], "student": []}) if checkpoint is not None else {"teacher": [], "student": []},
        started=started, earlier_wall_time_s=float(checkpoint.get("wall_time_s", 0.0)) if checkpoint is not None else 0.0,
        checkpoint_format=kind.checkpoint_format,
    )
    if dist.enabled:
        torch.manual_seed(settings.seed + 1_000_003 * dist.rank)  # independent noise per rank
    try:
        student, report = _train_and_measure(job, kind, env, teacher, num_train, num_classes, checkpoint)
        if run_dir is not None:
            kind.write(run_dir, job, student, report, teacher)
    except VSPluginError as error:
        if run_dir is not None:
            if isinstance(error, OutputError) and run_dir.file(CHECKPOINT_FILE).exists():  # a full disk: continue later
                raise OutputError(f"{error}; the last checkpoint is kept: make room, then continue with --resume") from None
            if not job.resume:  # a resumed run keeps its folder (and checkpoint) as it was
                run_dir.discard()
        raise
    finally:
        if run_dir is not None:
            run_dir.close()
    barrier(dist)
    return student, report


def train_or_load_teacher(job: CompressionJob, env: PhaseEnvironment, teacher: nn.Module, checkpoint: Optional[dict]) -> None:
    """The teacher of the checkpoint, trained on (all) the training data when the run trains it."""
    if checkpoint is not None:
        teacher.load_state_dict(checkpoint["teacher"])
    if job.train_teacher and env.settings.teacher_epochs > 0 and not phase_finished(checkpoint, "teacher"):
        train_teacher(teacher, env, phase_reached(checkpoint, "teacher"))


def warn_short_warmup(settings: CompressSettings) -> None:
    """Warn when training ends before the KL weight has reached 1 (hold + warm-up > epochs)."""
    ramp_end = settings.kl_hold_epochs + settings.kl_warmup_epochs
    if settings.kl_weight > 0 and settings.epochs < ramp_end:
        warnings.warn(
            f"epochs ({settings.epochs}) is shorter than kl_hold_epochs + kl_warmup_epochs ({ramp_end:g}): the KL weight "
            f"ends at {max(0.0, (settings.epochs - settings.kl_hold_epochs) / max(settings.kl_warmup_epochs, 1e-12)):.2f} instead of 1, "
            "so the student is pruned less than its settings say; train longer or lower --kl-warmup-epochs",
            UserWarning,
            stacklevel=2,
        )


def warn_teacher_at_chance(accuracy: float, num_classes: int) -> None:
    """Warn when the teacher is no better than guessing (1.5 x chance): distilling it teaches nothing."""
    if accuracy <= 1.5 / num_classes:
        warnings.warn(
            f"the teacher's test accuracy is {100 * accuracy:.1f}%, near chance ({100 / num_classes:.1f}% for {num_classes} "
            "classes): is it trained? Give trained weights (teacher_checkpoint=) or train it first (train_teacher=True)",
            UserWarning,
            stacklevel=2,
        )


def _train_and_measure(job: CompressionJob, kind: StudentKind, env: PhaseEnvironment, teacher, num_train, num_classes, checkpoint):
    settings = env.settings
    kind.train_teacher(job, env, teacher, checkpoint)
    teacher.eval()
    teacher_accuracy = distributed_accuracy(teacher, env)
    warn_teacher_at_chance(teacher_accuracy, num_classes)
    teacher_footprint = model_footprint(teacher)

    student = copy.deepcopy(teacher) if job.student is None else to_device(job.student, env.device, settings.channels_last)
    dense_student_footprint = model_footprint(student)
    student, student_accuracy = kind.train_student(job, env, student, teacher, num_train, checkpoint)
    report = build_report(
        teacher=teacher_footprint,
        teacher_accuracy=teacher_accuracy,
        student=model_footprint(student),
        dense_student=dense_student_footprint,
        student_accuracy=student_accuracy,
        names={
            "teacher": job.names.get("teacher"),
            "student": job.names.get("student") or (job.names.get("teacher") if job.student is None else None),
            "student_init": _student_init(job, settings),
        },
        dataset={
            "name": job.names.get("dataset"),
            "train_samples": num_train,
            "test_samples": dataset_size(job.test),
            "num_classes": num_classes,
            "test_split": job.test_split,
            "input_shape": None if job.spec is None else [job.spec.channels, job.spec.height, job.spec.width],
            **job.dataset_info,
        },
        config=env.settings_record,
        history=env.history,
        wall_time_s=0.0,
        device=env.device,
        world_size=env.dist.world_size,
    )
    if job.teacher_info:
        report["teacher"]["weights_from"] = job.teacher_info
    kind.complete_report(report, job, env, student, teacher)
    report["wall_time_s"] = env.wall_time_s()
    return student, report


class WeightStudent:
    """The per-weight Variational Student: a student of sparse variational layers, pruned by the
    log alpha threshold or to a target (:func:`_train_student_phases`), written as ``student.pt``
    + ``student.json``; checkpoints of :func:`vs_plugin.pipeline.phases.train_student`."""

    files = RUN_FILES
    checkpoint_format = CHECKPOINT_FORMAT

    def __init__(self) -> None:
        self.sweep: list[dict] = []

    def settings(self, settings: CompressSettings, student_given: bool) -> CompressSettings:
        return settings

    def record(self) -> dict:
        return {}

    def phase_epochs(self, job: CompressionJob, settings: CompressSettings) -> dict:
        student_phases = settings.phase_epochs(warm_start=job.student is not None)
        return {"teacher": settings.teacher_epochs, **dict(zip(("warmstart", "student", "finetune"), student_phases))}

    def train_teacher(self, job: CompressionJob, env: PhaseEnvironment, teacher: nn.Module, checkpoint: Optional[dict]) -> None:
        train_or_load_teacher(job, env, teacher, checkpoint)

    def train_student(self, job, env: PhaseEnvironment, student, teacher, num_train, checkpoint) -> tuple[nn.Module, float]:
        settings = env.settings
        warm_started = job.student is not None and settings.phase_epochs(warm_start=True)[0] > 0
        variational_config = settings.variational_config(student_from_teacher=job.student is None or warm_started)
        student, self.sweep = _train_student_phases(job, env, student, teacher, num_train, variational_config, checkpoint)
        student.eval()
        return student, distributed_accuracy(student, env)

    def complete_report(self, report: dict, job: CompressionJob, env: PhaseEnvironment, student: nn.Module, teacher: nn.Module) -> None:
        if self.sweep:
            report["student"]["threshold_sweep"] = self.sweep
        if env.history.get("phases"):
            report["phases"] = env.history["phases"]
        report["student"]["recipe"] = env.settings.resolved_recipe
        report["student"]["teacher_outputs"] = env.notes.get("teacher_outputs")

    def write(self, run_dir: RunDirectory, job: CompressionJob, student: nn.Module, report: dict, teacher: nn.Module) -> None:
        spec = {
            "format": "vs-plugin-student/1",
            "model": report["student"]["name"],
            "input": report["dataset"]["input_shape"],
            "num_classes": report["dataset"]["num_classes"],
            "weights": "student.pt",
            "granularity": report["config"]["granularity"],
            "nnz": report["student"]["nnz"],
            "sparsity": report["student"]["sparsity"],
        }
        teacher_state = teacher.state_dict() if job.train_teacher else None
        run_dir.write_results(student.state_dict(), spec, report, teacher_state)


def _train_student_phases(job, env: PhaseEnvironment, student, teacher, num_train, variational_config, checkpoint):
    """Warm start (three-phase recipe), variational phase, pruning, fine-tune; returns (plain student, sweep).

    Each phase resumes from a checkpoint written in it and is skipped when the checkpoint is from
    a later one. ``history["phases"]`` records accuracy and sparsity after each phase.
    """
    settings = env.settings
    warm, variational_epochs, finetune = settings.phase_epochs(warm_start=job.student is not None)
    phases = env.history.setdefault("phases", {})
    kd_config = dataclasses.replace(settings.objective_config(), kl_weight=0.0, bsr_weight=0.0)
    objective_config = settings.variational_objective_config()  # kd_weight is variational_kd_weight when set

    def kd_objective() -> VariationalStudentObjective:  # CE + KD: the warm start and the fine-tune
        return VariationalStudentObjective(student, teacher if kd_config.uses_teacher else None, kd_config, num_train_samples=num_train)

    uses_teacher = objective_config.uses_teacher or objective_config.bsr_weight > 0
    if warm and not phase_finished(checkpoint, "warmstart"):
        train_student(student, teacher, kd_objective(), env, phase_reached(checkpoint, "warmstart"), phase="warmstart", epochs=warm)
        phases["warmstart"] = _phase_point(student, env)
    variationalize(student, variational_config)
    student.to(env.device)
    if phase_finished(checkpoint, "student"):  # resuming the fine-tune: the pruned student is in the checkpoint
        masks = checkpoint["keep_masks"]
        keeper = apply_keep_masks(student, masks)
        sweep = phases.get("threshold_sweep", [])
    else:
        controller = gradual = None
        phase_steps = variational_epochs * len(env.train_loader)
        if settings.target_sparsity is not None and settings.prune_schedule == "gradual":
            gradual = GradualLogAlphaPruning(
                student, settings.target_sparsity, round(settings.prune_ramp * phase_steps), settings.layer_floor,
            )
        elif settings.target_sparsity is not None and settings.kl_controller:
            controller = KLController(settings.target_sparsity, phase_steps, threshold=settings.threshold)
        objective = VariationalStudentObjective(
            student, teacher if uses_teacher else None, objective_config, num_train_samples=num_train, kl_controller=controller,
        ).to(env.device)
        train_student(student, teacher, objective, env, phase_reached(checkpoint, "student"), epochs=variational_epochs, pruning=gradual)
        sweep = threshold_sweep(student, settings.threshold_sweep, settings.threshold, env)
        phases["threshold_sweep"] = sweep
        phases["variational"] = _phase_point(student, env)
        if settings.target_sparsity is None and not finetune:
            return finalize(student), sweep  # the log alpha threshold decides, as it always did
        if settings.target_sparsity is not None:
            scores = gradual.scores() if gradual is not None else log_alpha_scores(student)
            masks = global_keep_masks(scores, settings.target_sparsity, settings.layer_floor)
        else:
            masks = keep_masks(student)
        keeper = apply_keep_masks(student, masks)
        phases["pruned"] = _phase_point(student, env)
    if finetune:
        masks = {name: mask.cpu() for name, mask in masks.items()}
        train_student(
            student, teacher, kd_objective(), env, phase_reached(checkpoint, "finetune"), phase="finetune", epochs=finetune,
            mask_keeper=keeper, checkpoint_extra={"keep_masks": masks},
        )
        phases["finetune"] = _phase_point(student, env)
    return student, sweep


def _student_init(job: CompressionJob, settings: CompressSettings) -> str:
    if job.student is None:
        return "teacher weights"
    if job.structured is not None:
        from .structured import structured_phase_epochs

        warm = structured_phase_epochs(settings, job.structured, warm_start=True)[0]
    else:
        warm = settings.phase_epochs(warm_start=True)[0]
    return f"random, then {warm} epochs of dense KD (warm start)" if warm else "random (from scratch)"


def _phase_point(model: nn.Module, env: PhaseEnvironment) -> dict:
    """Accuracy, sparsity and non-zero weights of ``model`` as it stands after a phase."""
    footprint = model_footprint(model)
    return {"accuracy": distributed_accuracy(model, env), "sparsity": footprint.sparsity, "nnz": footprint.nnz}


def threshold_sweep(student: nn.Module, thresholds, threshold: float, env: PhaseEnvironment) -> list[dict]:
    """Accuracy and sparsity of the trained variational student at other log alpha thresholds."""
    points = []
    for value in thresholds:
        set_threshold(student, value)
        footprint = model_footprint(student)
        points.append({"threshold": value, "accuracy": distributed_accuracy(student, env), "sparsity": footprint.sparsity, "nnz": footprint.nnz})
    set_threshold(student, threshold)
    return points
