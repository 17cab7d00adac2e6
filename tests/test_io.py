"""Atomic writes: complete or absent, with the usual file mode."""

import os
import stat

import pytest

from vs_plugin.io import atomic_write, atomic_write_json


def test_atomic_write_gives_the_umask_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "report.json", {"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text().strip() == '{\n  "a": 1\n}'


def test_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
