"""The output folder of a run: per-epoch checkpoint, final artefacts, clean-up on failure.

Every file is written atomically. Final artefacts are written only after training succeeded,
``report.json`` last, so its presence means a complete run. When a run fails on bad input or a
diverging loss, the files it wrote are removed (and the folder, if it created it); an
interrupted run keeps its checkpoint for ``--resume``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import torch

from ..errors import CheckpointError, ConfigError
from ..io import atomic_torch_save, atomic_write_json

REPORT = "report.json"
STUDENT_WEIGHTS = "student.pt"
STUDENT_SPEC = "student.json"
TEACHER_WEIGHTS = "teacher.pt"
CHECKPOINT = "checkpoint.pt"
RUN_FILES = (REPORT, STUDENT_WEIGHTS, STUDENT_SPEC, TEACHER_WEIGHTS, CHECKPOINT)


class RunDirectory:
    """Owns ``path`` for one run.

    Args:
        path: the output folder.
        resume: continue from ``checkpoint.pt`` in ``path``.
        overwrite: replace a previous run in ``path``.
    """

    def __init__(self, path: Path, resume: bool = False, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.resume = resume
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"output path {self.path} exists and is not a folder")
        previous = [name for name in RUN_FILES if (self.path / name).exists()]
        if resume and not (self.path / CHECKPOINT).is_file():
            raise CheckpointError(f"nothing to resume: {self.path} has no {CHECKPOINT}")
        if previous and not resume and not overwrite:
            raise ConfigError(
                f"{self.path} already holds a run ({', '.join(previous)}); pass --resume to continue it "
                "or --overwrite to replace it"
            )
        self._overwrite = overwrite and not resume
        self._created_folder = False
        self._written: set[str] = set()

    def open(self) -> None:
        """Create the folder (and remove a previous run when overwriting). Call after validation."""
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self._created_folder = True
        if self._overwrite:
            for name in RUN_FILES:
                (self.path / name).unlink(missing_ok=True)

    def load_checkpoint(self) -> dict:
        path = self.path / CHECKPOINT
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001
            raise CheckpointError(f"could not read {path}: {str(error).splitlines()[0][:200]}") from None

    def save_checkpoint(self, state: dict) -> None:
        atomic_torch_save(self.path / CHECKPOINT, state)
        self._written.add(CHECKPOINT)

    def write_results(self, student_state: dict, spec: dict, report: dict, teacher_state: Optional[dict]) -> None:
        atomic_torch_save(self.path / STUDENT_WEIGHTS, student_state)
        atomic_write_json(self.path / STUDENT_SPEC, spec)
        self._written.update({STUDENT_WEIGHTS, STUDENT_SPEC})
        if teacher_state is not None:
            atomic_torch_save(self.path / TEACHER_WEIGHTS, teacher_state)
            self._written.add(TEACHER_WEIGHTS)
        atomic_write_json(self.path / REPORT, report)
        self._written.add(REPORT)

    def discard(self) -> None:
        """Remove what this run wrote (and the folder if this run created it)."""
        for name in self._written:
            (self.path / name).unlink(missing_ok=True)
        if self._created_folder and self.path.exists() and not any(self.path.iterdir()):
            shutil.rmtree(self.path, ignore_errors=True)

    def file(self, name: str) -> Path:
        return self.path / name


