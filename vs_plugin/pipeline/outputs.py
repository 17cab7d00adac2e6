"""The output folder of a run: lock, per-epoch checkpoint, final artefacts, overwrite, clean-up.

- **One run per folder.** The folder is locked (:class:`~vs_plugin.folder_lock.FolderLock`) from
  the moment the run takes it until it ends; a second run on it fails with a clear error.
- **Writable before training.** The folder is created and a probe file written and removed before
  any training, so a read-only or missing-permission folder fails at once.
- **Atomic files.** Every file is written atomically (:mod:`vs_plugin.io`). Final artefacts are
  written only after training succeeded, ``report.json`` last, so its presence means a complete
  run. Temporary files left by a killed process are removed when the next run takes the folder.
- **Overwrite replaces only on success.** With ``overwrite`` the new run writes into the hidden
  subfolder ``.vs-plugin-new/``; the previous run stays untouched until the new one has
  succeeded, then the new files are renamed into place (``report.json`` last) and previous run
  files the new run did not produce are removed, except an input of the new run (a
  ``--teacher-checkpoint`` inside the folder), which is never deleted. An interrupted overwrite
  leaves the previous run as it was; ``resume`` continues the interrupted overwrite.
- **Failure.** When a run fails on bad input or a diverging loss, the files it wrote are removed
  (and the folder, if it created it); an interrupted run keeps its checkpoint for ``resume``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ..errors import CheckpointError, ConfigError, OutputError, VSPluginError
from ..folder_lock import FolderLock
from ..io import atomic_torch_save, atomic_write_json, load_tensors, remove_stale_temporaries

REPORT = "report.json"
STUDENT_WEIGHTS = "student.pt"
STUDENT_SPEC = "student.json"
TEACHER_WEIGHTS = "teacher.pt"
CHECKPOINT = "checkpoint.pt"
RUN_FILES = (REPORT, STUDENT_WEIGHTS, STUDENT_SPEC, TEACHER_WEIGHTS, CHECKPOINT)
#: Where an overwriting run writes until it has succeeded.
STAGING = ".vs-plugin-new"


def _probe_writable(folder: Path) -> None:
    """Create and remove a file in ``folder``; raises OSError when that is not possible."""
    handle, name = tempfile.mkstemp(prefix=".vs-plugin-probe.", suffix=".tmp", dir=folder)
    os.close(handle)
    os.unlink(name)


class RunDirectory:
    """Owns ``path`` for one run (see the module docstring); :meth:`close` releases it.

    Args:
        path: the output folder.
        resume: continue from the checkpoint in ``path`` (or of an interrupted overwrite).
        overwrite: replace a previous run in ``path`` once this one has succeeded.
        files: the names of the files a run writes there.
        inputs: files this run reads (a teacher checkpoint); never deleted.
    """

    def __init__(
        self,
        path: Path,
        resume: bool = False,
        overwrite: bool = False,
        files: Sequence[str] = RUN_FILES,
        inputs: Iterable[Any] = (),
    ) -> None:
        self.path = Path(path)
        self.resume = resume
        self.files = tuple(files)
        self._inputs = {Path(p).resolve() for p in inputs if p is not None}
        self._written: set[str] = set()
        self._lock: Optional[FolderLock] = None
        self._created_folder = False
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"output path {self.path} exists and is not a folder")
        self._take_folder()
        try:
            staging = self.path / STAGING
            staged_checkpoint = (staging / CHECKPOINT).is_file()
            previous = [name for name in self.files if (self.path / name).exists()]
            if resume and not staged_checkpoint and not (self.path / CHECKPOINT).is_file():
                raise CheckpointError(f"nothing to resume: {self.path} has no {CHECKPOINT}")
            if previous and not resume and not overwrite:
                raise ConfigError(
                    f"{self.path} already holds a run ({', '.join(previous)}); pass --resume to continue it "
                    "or --overwrite to replace it"
                )
            if resume:
                self.write_dir = staging if staged_checkpoint else self.path
            elif overwrite and previous:
                shutil.rmtree(staging, ignore_errors=True)  # an earlier overwrite that never finished
                self.write_dir = staging
            else:
                self.write_dir = self.path
            if self.write_dir != self.path:
                self.write_dir.mkdir(exist_ok=True)
                remove_stale_temporaries(self.write_dir, self.files)
        except BaseException:
            self.close()
            self._remove_created_folder()
            raise

    def _take_folder(self) -> None:
        """Create the folder, check that it is writable, lock it and clear stale temporary files."""
        try:
            if not self.path.exists():
                self.path.mkdir(parents=True)
                self._created_folder = True
            _probe_writable(self.path)
        except OSError as error:
            reason = error.strerror or type(error).__name__
            self._remove_created_folder()
            raise OutputError(f"output folder {self.path} is not writable ({reason}); choose another --out") from None
        try:
            self._lock = FolderLock(self.path)
        except VSPluginError:
            self._remove_created_folder()
            raise
        remove_stale_temporaries(self.path, self.files)

    @property
    def staged(self) -> bool:
        """True when this run writes beside a previous run and replaces it on success."""
        return self.write_dir != self.path

    def open(self) -> None:
        """Kept for callers of the earlier interface: the folder is taken in the constructor."""

    def load_checkpoint(self) -> dict:
        return load_tensors(self.write_dir / CHECKPOINT, "checkpoint")

    def file(self, name: str) -> Path:
        """Where this run writes ``name`` (inside the staging folder while overwriting)."""
        return self.write_dir / name

    def mark_written(self, *names: str) -> None:
        """Record files written through :meth:`file` by other code (removed again on failure)."""
        self._written.update(names)

    def write_torch(self, name: str, obj: Any) -> None:
        atomic_torch_save(self.file(name), obj)
        self._written.add(name)

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_json(self.file(name), data)
        self._written.add(name)

    def save_checkpoint(self, state: dict) -> None:
        self.write_torch(CHECKPOINT, state)

    def write_results(self, student_state: dict, spec: dict, report: dict, teacher_state: Optional[dict]) -> None:
        self.write_torch(STUDENT_WEIGHTS, student_state)
        self.write_json(STUDENT_SPEC, spec)
        if teacher_state is not None:
            self.write_torch(TEACHER_WEIGHTS, teacher_state)
        self.write_json(REPORT, report)
        self.commit()

    def commit(self) -> None:
        """Put a staged run in place of the previous one (``report.json`` last); no-op otherwise."""
        if not self.staged:
            return
        new = [name for name in self.files if (self.write_dir / name).exists()]
        (self.path / REPORT).unlink(missing_ok=True)  # from here on the folder holds no complete run
        for name in new:
            if name != REPORT:
                os.replace(self.write_dir / name, self.path / name)
        for name in self.files:
            target = self.path / name
            if name not in new and target.exists() and target.resolve() not in self._inputs:
                target.unlink()
        if REPORT in new:
            os.replace(self.write_dir / REPORT, self.path / REPORT)
        shutil.rmtree(self.write_dir, ignore_errors=True)
        self.write_dir = self.path

    def discard(self) -> None:
        """Remove what this run wrote (and the folder if this run created it)."""
        if self.staged:
            shutil.rmtree(self.write_dir, ignore_errors=True)
        else:
            for name in self._written:
                target = self.path / name
                if target.resolve() not in self._inputs:
                    target.unlink(missing_ok=True)
        self._written.clear()
        self.close()
        self._remove_created_folder()

    def close(self) -> None:
        """Release the folder's lock (idempotent)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _remove_created_folder(self) -> None:
        if self._created_folder and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()
