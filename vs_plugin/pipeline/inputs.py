"""Models and data by name, as ``vs-plugin compress`` (plain and ``--structured``) builds them.

The teacher's ``pretrained_cfg`` decides the image pipeline (timm's data config and transforms,
``data/transforms.py``) of image folders and of resized in-memory data, so it is resolved
before the data is loaded; then the teacher is built for the data's shape and gets its weights
(``models/teacher.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch.nn as nn

from ..data.bundle import DataBundle
from ..data.registry import load_dataset
from ..data.transforms import build_pipeline
from ..models.pretrained import check_pretrained_available
from ..models.registry import build_model
from ..models.teacher import TeacherSource, load_teacher, teacher_pretrained_cfg
from .settings import CompressSettings


@dataclass
class NamedInputs:
    """What a run by name starts from.

    Attributes:
        bundle: the data (with its image pipeline, if any).
        teacher: the teacher with its weights (random when it is trained here).
        student: another architecture, or None for a copy of the teacher.
        teacher_info: where the teacher's weights came from (report.json ``teacher.weights_from``).
        train_teacher: the run trains (or, after a head reset, fine-tunes) the teacher first.
        rerun: the run arguments stored in report.json to repeat the run.
    """

    bundle: DataBundle
    teacher: nn.Module
    student: Optional[nn.Module]
    teacher_info: dict
    train_teacher: bool
    rerun: dict


def is_image_folder(dataset: str) -> bool:
    return dataset.partition(":")[0] == "folder"


def build_named_inputs(
    teacher: str,
    student: Optional[str],
    dataset: str,
    *,
    settings: CompressSettings,
    source: TeacherSource,
    data_dir: Optional[Union[str, Path]] = None,
    download: bool = True,
    image_size: Optional[int] = None,
) -> NamedInputs:
    """Resolve the image pipeline from the teacher, load the data, build both models."""
    if source.pretrained:
        check_pretrained_available(teacher)  # offline: fail in seconds, before reading any data
    pretrained_cfg = teacher_pretrained_cfg(teacher, source)
    pipeline = None
    if is_image_folder(dataset) or (image_size is not None and pretrained_cfg is not None):
        pipeline = build_pipeline(pretrained_cfg, image_size, settings.augment_settings())
    bundle = load_dataset(dataset, Path(data_dir) if data_dir else None, download=download, image_size=image_size, pipeline=pipeline)
    teacher_model, teacher_info = load_teacher(teacher, bundle.spec, source)
    student_model = None if student in (None, "same") else build_model(student, bundle.spec)
    rerun = {
        "teacher": teacher,
        "student": student or "same",
        "dataset": dataset,
        "teacher_checkpoint": None if source.checkpoint is None else str(source.checkpoint),
        "pretrained": source.pretrained,
        "reset_head": source.reset_head,
        "data_dir": None if data_dir is None else str(data_dir),
        "image_size": image_size,
    }
    return NamedInputs(bundle, teacher_model, student_model, teacher_info, teacher_info["trained_here"], rerun)


def dataset_section(bundle: DataBundle) -> dict:
    """Facts about the image pipeline for report.json's ``dataset`` section (empty without one)."""
    return {} if bundle.pipeline is None else {"image_pipeline": bundle.pipeline.describe()}
