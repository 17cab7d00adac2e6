"""The training phases of a run, checkpointed every epoch.

The teacher (when trained here), then the student: one variational phase, or with the
three-phase recipe a dense KD warm start, the variational phase and a masked KD fine-tune of the
pruned student (``PHASES`` in order; a checkpoint names the phase it was written in).

Both phases run the same way in one process or under torchrun: the trained module is wrapped in
DistributedDataParallel when the world size is above 1, metrics are summed over ranks, and only
rank 0 writes checkpoints and prints.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn as nn

from ..layers.compiled import compile_mode_set_to
from ..losses.kl import KLWarmup
from ..losses.objective import VariationalStudentObjective
from ..metrics.accuracy import count_correct
from ..metrics.footprint import model_footprint
from ..pruning import GradualLogAlphaPruning, MaskKeeper
from ..training.distributed import DistributedContext, all_reduce_sum, gather_objects
from ..training.fit import evaluate_after, fit  # noqa: F401  (evaluate_after: the phases' schedule)
from ..training.reproducibility import restore_rng_state, rng_state
from ..training.recipes import train_classifier
from ..training.steps import StudentStep
from ..training.teacher_cache import with_cached_teacher
from .settings import CompressSettings
from ..training.optim import adam, lr_schedule_hooks

CHECKPOINT_FORMAT = "vs-plugin-checkpoint/1"
#: Phases in the order a run goes through them; "student" is the variational phase.
PHASES = ("teacher", "warmstart", "student", "finetune")


def phase_reached(checkpoint: Optional[dict], phase: str) -> Optional[dict]:
    """The checkpoint to resume ``phase`` from: itself if written in that phase, else None."""
    return checkpoint if checkpoint is not None and checkpoint["phase"] == phase else None


def phase_finished(checkpoint: Optional[dict], phase: str) -> bool:
    """True when the checkpoint was written in a later phase than ``phase``."""
    return checkpoint is not None and PHASES.index(checkpoint["phase"]) > PHASES.index(phase)


@dataclass
class PhaseEnvironment:
    """What both phases share: where to compute, what to read, where to report."""

    settings: CompressSettings
    device: torch.device
    dist: DistributedContext
    train_loader: object  # the student's training data (a subset in low-data runs)
    teacher_loader: object  # all the training data, for a teacher trained here
    test_loader: object
    log: Callable[[str], None]
    write_checkpoint: Optional[Callable[[dict], None]]  # None: no output folder, or not rank 0
    settings_record: dict
    history: dict
    started: float = field(default_factory=time.perf_counter)  # this process's start
    earlier_wall_time_s: float = 0.0  # wall time of the run before it was resumed

    def wall_time_s(self) -> float:
        """Seconds the whole run has taken, across interruptions and resumes."""
        return self.earlier_wall_time_s + time.perf_counter() - self.started
    notes: dict = field(default_factory=dict)  # facts for the report (how the teacher's outputs were computed)
    checkpoint_format: str = CHECKPOINT_FORMAT  # the run's kind of checkpoint (pipeline/run.py StudentKind)

    def autocast(self):
        """bf16 / fp16 autocast for forward passes (``amp``); parameters stay fp32."""
        if self.settings.amp in AUTOCAST_DTYPES:
            return torch.autocast(device_type=self.device.type, dtype=AUTOCAST_DTYPES[self.settings.amp])
        return nullcontext()

    def grad_scaler(self) -> Optional[torch.amp.GradScaler]:
        """A gradient scaler for fp16 (its small range underflows gradients without one), else None."""
        return torch.amp.GradScaler(self.device.type) if self.settings.amp == "fp16" else None


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def to_device(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """``model`` on ``device``; in channels_last (NHWC) memory layout on CUDA when asked."""
    model = model.to(device)
    if channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def distributed_accuracy(model: nn.Module, env: PhaseEnvironment) -> float:
    """Top-1 accuracy on the test split, each rank counting its disjoint shard."""
    correct, total = count_correct(model, env.test_loader, env.device)
    counts = all_reduce_sum(torch.tensor([correct, total], dtype=torch.float64, device=env.device), env.dist)
    return float(counts[0] / counts[1])


def _ddp(module: nn.Module, env: PhaseEnvironment) -> nn.Module:
    if not env.dist.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def _save(
    env: PhaseEnvironment, phase: str, epoch: int, teacher: nn.Module, student: Optional[nn.Module], optimizer, global_step: int,
    extra: Optional[dict] = None,
) -> None:
    rng = gather_objects(rng_state(), env.dist)  # collective: every rank takes part
    if env.write_checkpoint is None:
        return
    env.write_checkpoint(
        {
            "format": env.checkpoint_format,
            "phase": phase,
            "epoch": epoch,
            "global_step": global_step,
            "world_size": env.dist.world_size,
            "teacher": teacher.state_dict(),
            "student": None if student is None else student.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": rng,
            "history": env.history,
            "settings": env.settings_record,
            "wall_time_s": env.wall_time_s(),
            **(extra or {}),
        }
    )


def _resume(checkpoint: Optional[dict], env: PhaseEnvironment) -> int:
    """Epochs done in the checkpoint's phase (0 without one); restores this rank's random state."""
    if checkpoint is None:
        return 0
    restore_rng_state(checkpoint["rng"][env.dist.rank])
    return checkpoint["epoch"]


def _loop(env: PhaseEnvironment, model: nn.Module, evaluate: Callable[[], dict]) -> dict:
    """The loop options every phase shares (distributed, AMP, bars, evaluation, lines)."""
    settings = env.settings
    return dict(progress=settings.progress, context=env.dist, scaler=env.grad_scaler(), evaluate=evaluate,
                eval_every=settings.eval_every, log=env.log)


def train_teacher(teacher: nn.Module, env: PhaseEnvironment, checkpoint: Optional[dict]) -> None:
    """Train the teacher with cross-entropy for ``teacher_epochs`` (resuming mid-phase if asked)."""
    settings = env.settings
    start = _resume(checkpoint, env)
    train_classifier(
        teacher, env.teacher_loader, epochs=settings.teacher_epochs, lr=settings.teacher_lr, device=env.device,
        lr_schedule=settings.teacher_lr_schedule,
        optimizer_state=checkpoint["optimizer"] if checkpoint is not None else None, forward=_ddp(teacher, env),
        autocast=env.autocast, start_epoch=start, history=env.history["teacher"],
        after_epoch=[lambda fit, record: _save(env, "teacher", fit.epoch, teacher, None, fit.optimizer, 0)],
        **_loop(env, teacher, lambda: {"test_accuracy": distributed_accuracy(teacher, env)}),
    )


def train_student(
    student: nn.Module,
    teacher: nn.Module,
    objective: VariationalStudentObjective,
    env: PhaseEnvironment,
    checkpoint: Optional[dict],
    *,
    phase: str = "student",
    epochs: Optional[int] = None,
    mask_keeper: Optional[MaskKeeper] = None,
    checkpoint_extra: Optional[dict] = None,
    pruning: Optional[GradualLogAlphaPruning] = None,
) -> None:
    """Train the student with ``objective`` for ``epochs`` (default ``settings.epochs``), resuming if asked.

    ``phase`` is "student" for the variational phase, "warmstart" / "finetune" for the KD phases of
    the three-phase recipe (their objective has no KL); ``mask_keeper`` keeps pruned weights at
    zero through every optimizer step; ``checkpoint_extra`` is saved with every checkpoint;
    ``pruning`` masks variational units on its schedule during the phase (its masks are
    checkpointed and restored on resume).
    """
    settings = env.settings
    epochs = settings.epochs if epochs is None else epochs
    steps_per_epoch = len(env.train_loader)
    warmup = KLWarmup.from_epochs(settings.kl_warmup_epochs, steps_per_epoch, settings.kl_hold_epochs)
    optimizer = adam(student.parameters(), lr=settings.lr)
    schedule = settings.finetune_lr_schedule if phase == "finetune" else "constant"
    if mask_keeper is not None:
        mask_keeper.attach(optimizer)
    if pruning is not None:
        pruning.attach(optimizer)
    controller = objective.kl_controller
    if checkpoint is not None:
        student.load_state_dict(checkpoint["student"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if controller is not None and "kl_controller" in checkpoint:
            controller.load_state_dict(checkpoint["kl_controller"])
        if pruning is not None and "gradual_pruning" in checkpoint:
            pruning.load_state_dict(checkpoint["gradual_pruning"])
    start = _resume(checkpoint, env)
    lr_hooks = lr_schedule_hooks(optimizer, settings.lr, schedule, epochs, start_epoch=start)
    uses_teacher = objective.config.uses_teacher
    batches = env.train_loader
    if uses_teacher and settings.cache_teacher:
        batches = with_cached_teacher(
            batches, teacher, env.device, feature_layer=objective.config.lp_teacher_layer,
            with_features=objective.config.lp_gamma > 0, autocast=env.autocast,
        )
    if uses_teacher:
        # In-memory data without augmentation: the teacher's outputs are computed once. Batches
        # drawn through transforms (timm augmentation) change every epoch: the teacher runs on
        # each batch the student sees, which is what distillation needs.
        env.notes["teacher_outputs"] = "cached once per training sample" if batches is not env.train_loader else "computed every step"
    step = StudentStep(_ddp(student, env), teacher if uses_teacher else None, objective, warmup, env.device, env.autocast)
    step_function = step if pruning is None else pruning.wrap(step)

    def evaluate() -> dict:
        return {"test_accuracy": distributed_accuracy(student, env), "sparsity": model_footprint(student).sparsity}

    def beta(fit, record) -> None:
        record.extra["beta"] = warmup.beta(fit.global_step - 1)
        if controller is not None:
            record.extra["kl_scale"] = controller.scale

    def save(fit, record) -> None:
        extra = dict(checkpoint_extra or {})
        if controller is not None:
            extra["kl_controller"] = controller.state_dict()
        if pruning is not None:
            extra["gradual_pruning"] = pruning.state_dict()
        _save(env, phase, fit.epoch, teacher, student, fit.optimizer, fit.global_step, extra)

    try:
        with compile_mode_set_to("auto" if settings.compile_kl else "off"):
            fit(student, optimizer, batches, step_function, epochs=epochs, phase=phase, start_epoch=start,
                history=env.history.setdefault(phase, []), measure=[*lr_hooks, *([beta] if phase == "student" else [])],
                after_epoch=[save], **_loop(env, student, evaluate))
    finally:
        step.close()
        if mask_keeper is not None:
            mask_keeper.detach()
        if pruning is not None:
            pruning.detach()
