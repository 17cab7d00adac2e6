"""The Python API: ``compress`` (modules and datasets), ``compress_by_name`` (names, as the CLI),
``load_student`` (a saved compressed student back as a module)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from .data.conform import conform_data
from .data.loaders import dataset_labels
from .errors import CheckpointError, ConfigError, DataError
from .models.registry import InputSpec, build_model
from .models.weights import build_for_weights, load_weights, weights_beside
from .models.teacher import TeacherSource
from .pipeline.inputs import build_named_inputs, dataset_section
from .pipeline.outputs import STUDENT_SPEC, STUDENT_WEIGHTS
from .pipeline.resume import checkpoint_settings, resumed_values
from .pipeline.run import CompressionJob, run_compression, student_kind
from .pipeline.settings import CompressSettings
from .pipeline.validation import infer_num_classes
from .training.reproducibility import seed_everything

if TYPE_CHECKING:
    from .integrations.torch_pruning.structured_settings import StructuredSettings

ModelArgument = Union[nn.Module, str]


def _infer_spec(train: Union[Dataset, DataLoader], num_classes: Optional[int]) -> InputSpec:
    dataset = train.dataset if isinstance(train, DataLoader) else train
    try:
        sample = dataset[0][0]
    except Exception as error:  # noqa: BLE001
        raise DataError(f"cannot read a sample of the training data: {error}") from None
    if num_classes is None:
        num_classes = infer_num_classes(dataset_labels(dataset))
    shape = tuple(sample.shape)
    if len(shape) == 1:
        shape = (1, 1, shape[0])
    if len(shape) != 3:
        raise DataError(f"models given by name need (C, H, W) or (D,) samples, got shape {shape}")
    return InputSpec(shape[0], shape[1], shape[2], num_classes)


def compress(
    teacher: ModelArgument,
    student: Optional[ModelArgument] = None,
    train: Union[Dataset, DataLoader, None] = None,
    test: Union[Dataset, DataLoader, None] = None,
    *,
    train_teacher: bool = False,
    teacher_checkpoint: Optional[Union[str, Path]] = None,
    out_dir: Optional[Union[str, Path]] = None,
    resume: bool = False,
    overwrite: bool = False,
    num_classes: Optional[int] = None,
    **settings: Any,
) -> tuple[nn.Module, dict]:
    """Distil ``teacher`` into a sparse variational student; return (finalized student, report).

    Args:
        teacher: a trained module, or a model name (``mlp:in-1200-1200-out``, ``timm:resnet18``...).
        student: a module or model name of another architecture (trained from scratch), or None
            for a copy of the teacher initialised from the teacher's weights.
        train / test: any torch ``Dataset`` or ``DataLoader`` of (input, label).
        train_teacher: train the teacher first (``teacher_epochs``, ``teacher_lr``).
        teacher_checkpoint: local file with the teacher's state_dict.
        out_dir: where to write report.json, student.pt, student.json (and checkpoints).
        resume / overwrite: continue or replace the run in ``out_dir``; a resumed run takes its
            settings from the checkpoint (settings given again must match, except ``epochs``,
            ``device``, ``progress`` and the other resumable ones).
        num_classes: the class count, for a training Dataset that exposes no labels up front
            (no ``.targets``); otherwise read from the labels (every class 0..C-1 must occur).
        **settings: any field of :class:`vs_plugin.pipeline.settings.CompressSettings`. Unlike
            the command line, ``progress`` is off unless given: a library is quiet unless asked
            (per-epoch lines go to the ``vs_plugin`` logger at INFO level either way).
    """
    if train is None or test is None:
        raise ConfigError("compress needs both a train and a test dataset (or DataLoader)")
    if resume and out_dir is not None:
        settings = resumed_values(checkpoint_settings(Path(out_dir)), settings, CompressSettings.__dataclass_fields__)
    settings = {"progress": False, **settings}
    config = CompressSettings.from_mapping(settings)
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2):
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if isinstance(teacher, str) and not train_teacher and teacher_checkpoint is None:
        raise ConfigError(
            f"the teacher {teacher!r} is given by name, so it would be a random network: pass train_teacher=True to train "
            "it first, or teacher_checkpoint= with its trained weights"
        )
    train, test = conform_data(train, "training"), conform_data(test, "test")
    seed_everything(config.seed)  # models built by name get a repeatable initialisation
    names = {}
    spec = None
    if isinstance(teacher, str) or isinstance(student, str):
        spec = _infer_spec(train, num_classes)
    if isinstance(teacher, str):
        names["teacher"] = teacher
        teacher = build_model(teacher, spec)
    if isinstance(student, str):
        names["student"] = student
        student = build_model(student, spec)
    if not isinstance(teacher, nn.Module) or not (student is None or isinstance(student, nn.Module)):
        raise ConfigError("teacher and student must be nn.Module instances or model names")
    if teacher_checkpoint is not None:
        load_weights(teacher, teacher_checkpoint)
    job = CompressionJob(
        teacher=teacher, student=student, train=train, test=test, settings=config, train_teacher=train_teacher,
        spec=spec, names=names, out_dir=Path(out_dir) if out_dir else None, resume=resume, overwrite=overwrite,
        inputs=(teacher_checkpoint,) if teacher_checkpoint is not None else (), num_classes=num_classes,
    )
    return run_compression(job)


def compress_by_name(
    teacher: str,
    student: Optional[str],
    dataset: str,
    *,
    teacher_checkpoint: Optional[Union[str, Path]] = None,
    pretrained: bool = False,
    reset_head: bool = False,
    data_dir: Optional[Union[str, Path]] = None,
    download: bool = True,
    image_size: Optional[int] = None,
    out_dir: Optional[Union[str, Path]] = None,
    resume: bool = False,
    overwrite: bool = False,
    settings: Optional[CompressSettings] = None,
    log: Optional[Callable[[str], None]] = None,
    structured: Optional["StructuredSettings"] = None,
) -> tuple[nn.Module, dict]:
    """What ``vs-plugin compress`` does: build models and data by name, then compress.

    ``student=None`` or ``"same"`` copies the teacher. The teacher's weights come from
    ``teacher_checkpoint`` (a state_dict, a timm ``train.py`` checkpoint, safetensors, or a
    timm/HF model folder) or the hub (``pretrained``); otherwise it is trained first for
    ``settings.teacher_epochs`` epochs, as it is after ``reset_head``. Image folders (and in-memory
    data resized with ``image_size`` for a timm/torchvision teacher) go through timm's input
    pipeline resolved from the teacher. ``log`` receives the per-epoch lines. ``structured``
    (:class:`vs_plugin.integrations.torch_pruning.StructuredSettings`): the structured student
    (``vs-plugin compress --structured``, :mod:`vs_plugin.pipeline.structured`).
    """
    started = time.perf_counter()
    settings = settings or CompressSettings()
    student_kind(structured).settings(settings, student not in (None, "same"))  # the kind's own checks, before any data is read
    seed_everything(settings.seed)  # repeatable model initialisation
    inputs = build_named_inputs(
        teacher, student, dataset, settings=settings,
        source=TeacherSource(teacher_checkpoint, pretrained, reset_head),
        data_dir=data_dir, download=download, image_size=image_size,
    )
    bundle = inputs.bundle
    job = CompressionJob(
        teacher=inputs.teacher,
        student=inputs.student,
        train=bundle.train,
        test=bundle.test,
        settings=settings,
        train_teacher=inputs.train_teacher,
        spec=bundle.spec,
        names={"teacher": teacher, "student": None if student in (None, "same") else student, "dataset": bundle.name},
        rerun=inputs.rerun,
        test_split=bundle.test_split,
        out_dir=Path(out_dir) if out_dir else None,
        resume=resume,
        overwrite=overwrite,
        log=log,
        inputs=(teacher_checkpoint,) if teacher_checkpoint is not None else (),
        dataset_info=dataset_section(bundle),
        teacher_info=inputs.teacher_info,
        structured=structured,
        started=started,
    )
    return run_compression(job)


def load_student(run_dir: Union[str, Path]) -> nn.Module:
    """Rebuild the compressed student saved in ``run_dir`` (its spec JSON plus state_dict)."""
    run_dir = Path(run_dir)
    spec_path = run_dir / STUDENT_SPEC
    try:
        spec = json.loads(spec_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir} holds no {STUDENT_SPEC}; is it the output folder of vs-plugin compress?") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{spec_path} is not valid JSON: {error}") from None
    if spec.get("model") is None or spec.get("input") is None:
        raise CheckpointError(f"{spec_path} names no model architecture (the run used Python modules); load the state_dict into your own module")
    try:
        channels, height, width = (int(v) for v in spec["input"])
        input_spec = InputSpec(channels, height, width, int(spec["num_classes"]))
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{spec_path} needs 'input' [C, H, W] and 'num_classes' as integers") from None
    weights = weights_beside(spec_path, spec.get("weights", STUDENT_WEIGHTS))
    model = build_for_weights(spec["model"], input_spec, weights, spec_path)
    load_weights(model, weights)
    model.eval()
    return model


__all__ = ["compress", "compress_by_name", "load_student"]
