"""Atomic file writes: a file is either absent or complete, never half-written.

Every write goes to a temporary file ``.<name>.<random>.tmp`` beside the target, is flushed to
disk (``fsync``) and then renamed onto the target. A full disk or a read-only folder becomes a
:class:`~vs_plugin.errors.OutputError` naming the file, and the temporary file is removed. A
process killed during a write (SIGKILL) can leave its temporary file behind:
:func:`remove_stale_temporaries` clears them. ``.pt`` files are serialised in memory first, so
the same tensors always give the same bytes (``torch.save`` to a path names the zip archive
after the random temporary file).
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Union

import torch

from .errors import CheckpointError, OutputError

#: Errors of the file system that mean "cannot write here", with what the user should know.
_WRITE_FAULTS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def output_error(path: Union[str, Path], error: OSError) -> OutputError:
    """A one-line :class:`OutputError` for an ``OSError`` met while writing ``path``."""
    reason = _WRITE_FAULTS.get(error.errno, error.strerror or type(error).__name__)
    return OutputError(f"could not write {path}: {reason}")


def atomic_write(path: Union[str, Path], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it onto ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
    except OSError as error:
        raise output_error(path, error) from None
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual mode
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if error.errno in _WRITE_FAULTS:
            raise output_error(path, error) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_bytes(path: Union[str, Path], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Union[str, Path], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Union[str, Path], data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def torch_bytes(obj: Any) -> bytes:
    """``torch.save(obj)`` into memory: the archive root is always ``archive/``, so equal
    tensors give equal bytes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def atomic_torch_save(path: Union[str, Path], obj: Any) -> Path:
    return atomic_write_bytes(path, torch_bytes(obj))


def _temporary_pattern(names: Iterable[str]) -> re.Pattern:
    alternatives = "|".join(re.escape(name) for name in names)
    return re.compile(rf"^\.({alternatives})\.[A-Za-z0-9_]+\.tmp$")


def remove_stale_temporaries(folder: Union[str, Path], names: Iterable[str]) -> list[Path]:
    """Remove ``.<name>.<random>.tmp`` files that :func:`atomic_write` left in ``folder`` for the
    given file ``names`` (a process killed mid-write). Only call while no other process writes
    there (the caller holds the folder's lock). Returns the removed paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = _temporary_pattern(names)
    removed = []
    for entry in folder.iterdir():
        if pattern.match(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


#: ANSI escape sequences (PyTorch colours parts of its weights-only message).
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def load_tensors(path: Union[str, Path], what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors that say what is wrong.

    A folder, a missing file, a file that is not a PyTorch archive, and a file holding pickled
    Python objects other than tensors (refused: nothing in it is executed) each get their own
    message; PyTorch's own text (cut off, coloured, advising ``weights_only=False``) is not passed on.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a folder, not a file")
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - every reader failure is described below
        text = _ANSI.sub("", str(error))
        if "GLOBAL" in text:  # the weights-only unpickler met a Python object it does not allow
            found = re.search(r"GLOBAL ([\w.]+)", text)
            detail = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"{what} {path} holds Python objects other than tensors{detail}; vs-plugin loads only tensors "
                "(weights_only) and never runs code stored in a file, so this file is refused"
            ) from None
        if isinstance(error, OSError):
            raise CheckpointError(f"could not read {what} {path}: {error.strerror or error}") from None
        raise CheckpointError(
            f"could not read {what} {path}: it is not a PyTorch checkpoint (a .pt/.pth file written by torch.save) or it is damaged"
        ) from None
