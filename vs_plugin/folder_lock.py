"""One process at a time in an output folder: an advisory lock on ``<folder>/.vs-plugin.lock``.

The lock is ``flock`` on an open file, so the kernel releases it when the process ends in any way
(also SIGKILL): a crashed run never leaves its folder locked. The lock file is removed on
release; a process that locked a file that was removed meanwhile tries again. Where ``fcntl``
does not exist (Windows) folders are not locked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from .errors import OutputError

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".vs-plugin.lock"


class FolderLock:
    """Hold ``folder``'s lock until :meth:`release` (or the process ends).

    Raises:
        OutputError: another process holds it, or the folder is not writable.
    """

    def __init__(self, folder: Union[str, Path]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: Optional[int] = None
        if fcntl is None:  # pragma: no cover
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                from .io import output_error

                raise output_error(self.path, error) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = _read_pid(self.path)
                raise OutputError(
                    f"another vs-plugin run{'' if holder is None else f' (process {holder})'} is using {self.folder}; "
                    "wait for it to finish or choose another output folder"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file as we opened it: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


__all__ = ["FolderLock", "LOCK_NAME"]
