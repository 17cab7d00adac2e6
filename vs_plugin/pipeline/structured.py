"""``vs-plugin compress --structured``: a Variational Student that comes out physically smaller.

1. The teacher is loaded (``--teacher-checkpoint``) or trained (CE, ``teacher_epochs``, on all the
   training data as in every run: :func:`vs_plugin.pipeline.run.train_or_load_teacher`).
2. The recipe splits ``--epochs`` (:func:`structured_phase_epochs`; three-phase by default, as
   for every target): a dense CE + KD warm start when the student is another architecture (a
   teacher copy needs none), then the gate phase, then the fine-tune share.
3. In the gate phase the student gets one Gaussian gate per output channel (core channel mode)
   and trains with the Variational Student objective on the core loop
   (:func:`vs_plugin.training.fit.fit`). ``prune_steps`` pruning steps are spread over the gate
   epochs (the last one at their end), through the torch-pruning adapter's hook
   (:class:`vs_plugin.integrations.torch_pruning.channel_pruning.ChannelPruning`): channels go by
   log alpha threshold, by ratio, or by log alpha ranking until the MACs fall to ``target_macs``
   of the dense student's. The gates are then folded into the weights (``finalize``): a plain,
   smaller model, fine-tuned with CE + KD for the fine-tune share (or ``finetune_epochs``).
4. Measured in one process: top-1 accuracy (masked student before the last step, pruned,
   fine-tuned), parameters and MACs (torch-pruning's counter, one sample), CPU latency of the
   dense teacher and the pruned student at each batch size (median of ``latency_repeats``
   interleaved runs).

The run is the one compression run (:func:`vs_plugin.pipeline.run.run_compression`: inputs
checked, run folder, resume check, teacher, report); this module is its structured
:class:`StructuredStudent` kind. Written to the output folder: ``report.json`` (the core report
plus a ``structured`` section), ``pruned.json`` + ``pruned.pt`` (spec and state_dict,
:func:`load_pruned`), ``teacher.pt`` when the teacher was trained here, and ``checkpoint.pt``
after every epoch of every phase, from which ``resume`` continues
(:mod:`vs_plugin.integrations.torch_pruning.structured_resume` replays the pruning steps); the
folder is the core run folder (locked, overwritten only on success). Our choices, stated in the report: gates start at
log sigma^2 = -6 unless ``init_log_sigma2`` is set (at -15 the clipped log alpha gets no KL
gradient), and learn at ``gate_lr`` (default 10 x ``lr``: gates must travel ~10 units of log
alpha, weights only a little).

This module is core code: it imports the torch-pruning adapter only inside its functions, so the
core loads without torch_pruning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..metrics.accuracy import evaluate_accuracy
from ..models.registry import InputSpec
from ..training.fit import each_epoch, fit
from ..training.recipes import accuracy_hook, distill
from ..training.reproducibility import restore_rng_state, rng_state, seed_everything
from ..training.steps import StudentStep
from ..variationalize import finalize
from .outputs import CHECKPOINT, REPORT, RunDirectory, TEACHER_WEIGHTS
from .phases import PhaseEnvironment, phase_finished
from .run import CompressionJob, run_compression, train_or_load_teacher
from .settings import CompressSettings

if TYPE_CHECKING:  # the adapter is imported only inside functions
    from ..integrations.torch_pruning.plan import PlanItem
    from ..integrations.torch_pruning.structured_settings import StructuredSettings

PRUNED_SPEC, PRUNED_WEIGHTS = "pruned.json", "pruned.pt"  # the adapter's serialization names them too
OUTPUT_FILES = (REPORT, PRUNED_SPEC, PRUNED_WEIGHTS, TEACHER_WEIGHTS, CHECKPOINT)
STRUCTURED_CHECKPOINT_FORMAT = "vs-plugin-structured-checkpoint/1"
#: (phase, epochs done, payload) -> written as the run's checkpoint (:meth:`StructuredStudent.train_student`).
SaveFunction = Callable[[str, int, dict], None]


def structured_phase_epochs(settings: CompressSettings, structured: "StructuredSettings", warm_start: bool) -> tuple[int, int, int]:
    """Epochs of (dense KD warm start, gate training with the pruning steps, fine-tune) of a structured run.

    A structured run always prunes to a target (MACs or a channel ratio), so ``recipe="auto"`` is the
    three-phase recipe (``phase_split`` of ``epochs``; the warm start only for a student that is not
    a copy of the teacher, ``warm_start``); with ``prune_by="threshold"`` (no target) it is one gate
    phase of ``epochs``, as is ``recipe="variational"``. An explicit ``finetune_epochs`` keeps the
    layout the user wrote: ``epochs`` of gate training, then ``finetune_epochs``, no warm start.
    """
    if structured.finetune_epochs is not None:
        return 0, settings.epochs, structured.finetune_epochs
    one_phase = settings.recipe == "variational" or (settings.recipe == "auto" and structured.prune_by == "threshold")
    if one_phase:
        return 0, settings.epochs, 0
    return settings.replace(recipe="three-phase").phase_epochs(warm_start=warm_start)


@dataclass
class StructuredOutcome:
    """A trained and pruned structured student (plain layers) and what happened on the way."""

    student: nn.Module
    plan: list["PlanItem"]
    accuracy: float
    extra: dict
    student_history: list[dict]
    finetune_history: list[dict]
    warmstart_history: list[dict] = field(default_factory=list)


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
    warm, gate_epochs, finetune_epochs = structured_phase_epochs(settings, structured, warm_start=not from_teacher)
    extra_phases: dict = dict(resume.get("extra_phases", {})) if resume is not None else {}
    warm_history: list[dict] = list(resume.get("warmstart_history", [])) if resume is not None else []
    if warm and (resume is None or resume["phase"] == "warmstart"):
        warm_from_epoch, optimizer_state = 0, None
        if resume is not None:
            load_model_state(student, resume["student"], "warm-start student")
            warm_from_epoch, optimizer_state = int(resume["epoch"]), resume["optimizer"]
            restore_rng_state(resume["rng"])
            resume = None

        def save_warm(state, record) -> None:
            save("warmstart", state.epoch, {"student": student.state_dict(), "optimizer": state.optimizer.state_dict(),
                                            "warmstart_history": state.history, "rng": rng_state()})

        student.to(device)
        distill(
            student, teacher, train_loader, epochs=warm, lr=settings.lr, objective=settings.objective_config(), device=device,
            phase="warmstart", optimizer_state=optimizer_state, start_epoch=warm_from_epoch, history=warm_history,
            progress=settings.progress, log=log, evaluate=accuracy_hook(student, test_loader, device),
            after_epoch=[*each_epoch(on_epoch), *([save_warm] if save is not None else [])],
        )
        student.train()
        extra_phases["warmstart_accuracy"] = evaluate_accuracy(student, test_loader, device)
    hook = ChannelPruning(
        student, teacher, example_inputs, num_train_samples=num_train_samples, settings=settings.replace(epochs=gate_epochs),
        structured=structured, from_teacher=from_teacher or warm > 0, steps_per_epoch=len(train_loader), test_loader=test_loader,
        device=device,
    )
    student.to(device)
    objective = hook.objective
    step = StudentStep(student, teacher if objective.config.uses_teacher else None, objective, hook.warmup, device)
    optimizer = hook.optimizer()
    student_history: list[dict] = []
    start = 0
    if resume is not None:  # rebuild the student as pruned so far, then load its state
        hook.restore(resume)
        student_history, start = list(resume["student_history"]), gate_epochs
        if resume["phase"] == "student":
            load_model_state(student, resume["student"], "student")
            optimizer = hook.optimizer()
            optimizer.load_state_dict(resume["optimizer"])
            start = int(resume["epoch"])
            restore_rng_state(resume["rng"])

    def phase_state() -> dict:
        return {**hook.state(), "student_history": student_history, "warmstart_history": warm_history,
                "extra_phases": extra_phases}

    def checkpoint(state, record) -> None:
        save("student", state.epoch, {"student": student.state_dict(), "optimizer": state.optimizer.state_dict(),
                                      "rng": rng_state(), **phase_state()})

    try:
        fit(student, optimizer, train_loader, step, epochs=gate_epochs, phase="student", start_epoch=start,
            history=student_history, progress=settings.progress, log=log, evaluate=accuracy_hook(student, test_loader, device),
            measure=[hook.measure], after_epoch=[*each_epoch(on_epoch), *([checkpoint] if save is not None else [])])
    finally:
        step.close()

    finalize(student)
    student.eval()
    extra = hook.extra  # saved with every later checkpoint (hook.state), so a resumed fine-tune keeps pruned_accuracy
    extra.update(extra_phases)
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

    if finetune_epochs > 0:
        distill(
            student, teacher, train_loader, epochs=finetune_epochs, lr=settings.lr, objective=settings.objective_config(),
            lr_schedule=settings.finetune_lr_schedule, device=device, optimizer_state=finetune_optimizer, start_epoch=finetune_start, history=finetune_history,
            progress=settings.progress, log=log, evaluate=accuracy_hook(student, test_loader, device),
            after_epoch=[*each_epoch(on_epoch), *([save_finetune] if save is not None else [])],
        )
    student.eval()
    accuracy = evaluate_accuracy(student, test_loader, device)
    extra["finetuned_accuracy"] = accuracy if finetune_epochs else None
    extra["phase_epochs"] = {"warmstart": warm, "student": gate_epochs, "finetune": finetune_epochs}
    return StructuredOutcome(student, hook.plan, accuracy, extra, student_history, finetune_history, warm_history)


class StructuredStudent:
    """The structured kind of the one compression run: channel gates trained on the core loop and
    removed through torch-pruning (:func:`train_structured`); checkpoints in their own format
    (the pruning steps are replayed on resume); ``pruned.json`` + ``pruned.pt`` and the report's
    ``structured`` section (params, MACs, CPU latency)."""

    files = OUTPUT_FILES
    checkpoint_format = STRUCTURED_CHECKPOINT_FORMAT

    def __init__(self, structured: "StructuredSettings", teacher_history: Optional[list] = None) -> None:
        self.structured = structured
        self.teacher_history = list(teacher_history or [])
        self.outcome: Optional[StructuredOutcome] = None
        self.dense_size: dict = {}

    def settings(self, settings: CompressSettings, student_given: bool) -> CompressSettings:
        from ..integrations.torch_pruning.structured_settings import check_single_process, prune_epochs

        check_single_process(settings)
        if settings.prune_schedule != "end":
            raise ConfigError(
                f"prune_schedule={settings.prune_schedule!r} applies to per-weight and per-channel students "
                "pruned in place; a structured run removes channels at its own prune steps (--prune-steps): "
                "leave prune_schedule at 'end'"
            )
        gate_epochs = structured_phase_epochs(settings, self.structured, warm_start=student_given)[1]
        prune_epochs(gate_epochs, self.structured.prune_steps)  # fail before any training
        return settings.replace(granularity="channel")

    def record(self) -> dict:
        return {"structured": self.structured.to_dict()}

    def phase_epochs(self, job: CompressionJob, settings: CompressSettings) -> dict:
        phases = structured_phase_epochs(settings, self.structured, warm_start=job.student is not None)
        return {"teacher": settings.teacher_epochs, **dict(zip(("warmstart", "student", "finetune"), phases))}

    def train_teacher(self, job: CompressionJob, env: PhaseEnvironment, teacher: nn.Module, checkpoint: Optional[dict]) -> None:
        seed_everything(env.settings.seed)
        train_or_load_teacher(job, env, teacher, checkpoint)
        if not env.history["teacher"]:  # the records of a teacher trained elsewhere, if given
            env.history["teacher"] = list(self.teacher_history)
        if job.train_teacher and not phase_finished(checkpoint, "teacher"):
            seed_everything(env.settings.seed)  # the student's draws do not depend on how the teacher was trained

    def train_student(self, job, env: PhaseEnvironment, student, teacher, num_train, checkpoint) -> tuple[nn.Module, float]:
        from ..integrations.torch_pruning.structured_report import model_size

        input_shape = (job.spec.channels, job.spec.height, job.spec.width)
        self.dense_size = model_size(student, input_shape)
        common = {"format": STRUCTURED_CHECKPOINT_FORMAT, "settings": env.settings_record, "teacher": teacher.state_dict(),
                  "history": {"teacher": env.history["teacher"]}}

        def save(phase: str, epoch: int, payload: dict) -> None:
            env.write_checkpoint({**common, "phase": phase, "epoch": epoch, "wall_time_s": env.wall_time_s(), **payload})

        self.outcome = train_structured(
            student, teacher, env.train_loader, env.test_loader, torch.zeros(1, *input_shape, device=env.device),
            num_train_samples=num_train, settings=env.settings, structured=self.structured, from_teacher=job.student is None,
            device=env.device, log=env.log, resume=checkpoint if checkpoint is not None and checkpoint["phase"] != "teacher" else None,
            save=None if env.write_checkpoint is None else save,
        )
        env.history = {"teacher": env.history["teacher"], "warmstart": self.outcome.warmstart_history,
                       "student": self.outcome.student_history, "finetune": self.outcome.finetune_history}
        return self.outcome.student, self.outcome.accuracy

    def complete_report(self, report: dict, job: CompressionJob, env: PhaseEnvironment, student: nn.Module, teacher: nn.Module) -> None:
        from ..integrations.torch_pruning.structured_report import structured_section

        input_shape = tuple(report["dataset"]["input_shape"])
        report["structured"] = structured_section(teacher, student, self.dense_size, input_shape, self.structured, self.outcome.extra)

    def write(self, run_dir: RunDirectory, job: CompressionJob, student: nn.Module, report: dict, teacher: nn.Module) -> None:
        from ..integrations.torch_pruning.serialization import save_pruned

        save_pruned(student, run_dir.file(PRUNED_SPEC), self.outcome.plan, input_shape=tuple(report["dataset"]["input_shape"]),
                    num_classes=report["dataset"]["num_classes"], model_name=report["student"]["name"],
                    extra={"accuracy": self.outcome.accuracy, "macs": report["structured"]["student"]["macs"]})
        run_dir.mark_written(PRUNED_SPEC, PRUNED_WEIGHTS)
        if job.train_teacher:
            run_dir.write_torch(TEACHER_WEIGHTS, teacher.state_dict())
        report["structured"]["files"] = {"spec": PRUNED_SPEC, "weights": PRUNED_WEIGHTS}
        run_dir.write_json(REPORT, report)
        run_dir.commit()


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
    """The structured Variational Student of ``teacher``; returns (pruned student, report): the
    one compression run (:func:`vs_plugin.pipeline.run.run_compression`) of the structured kind.

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
        log: sink for per-epoch lines (default: the ``vs_plugin`` logger).
        started_at: ``time.perf_counter()`` when the run began (the report's wall time).
        dataset_info / teacher_info: more facts for the report's ``dataset`` section (the image
            pipeline) and ``teacher.weights_from`` (where the teacher's weights came from).
        inputs: files the run reads (never deleted from ``out_dir``).
    """
    job = CompressionJob(
        teacher=teacher, student=student, train=train, test=test, settings=settings, train_teacher=train_teacher, spec=spec,
        names=dict(names or {}), rerun=dict(rerun or {}), test_split=test_split, out_dir=None if out_dir is None else Path(out_dir),
        resume=resume, overwrite=overwrite, log=log, inputs=tuple(p for p in inputs if p is not None),
        dataset_info=dict(dataset_info or {}), teacher_info=dict(teacher_info or {}), structured=structured,
        started=started_at if started_at is not None else time.perf_counter(),
    )
    if teacher_history:
        return run_compression(job, StructuredStudent(structured, teacher_history))
    return run_compression(job)


def run_structured(
    teacher: str, student: Optional[str], dataset: str, *, settings: CompressSettings, structured: "StructuredSettings", **options: Any,
) -> tuple[nn.Module, dict]:
    """What ``vs-plugin compress --structured`` does: :func:`vs_plugin.compress_by_name` (which
    takes the same ``options``: teacher_checkpoint, pretrained, reset_head, data_dir, download,
    image_size, out_dir, overwrite, resume, log) with ``structured`` settings. Without teacher
    weights (or after ``reset_head``) the teacher is trained first. Every epoch of every phase is
    checkpointed in ``out_dir``; ``resume`` continues from there."""
    from ..api import compress_by_name

    return compress_by_name(teacher, student, dataset, settings=settings, structured=structured, **options)


__all__ = [
    "OUTPUT_FILES",
    "STRUCTURED_CHECKPOINT_FORMAT",
    "StructuredOutcome",
    "train_structured",
    "StructuredStudent",
    "structured_from_modules",
    "run_structured",
]
