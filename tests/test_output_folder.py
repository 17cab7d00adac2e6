"""The output folder of ``vs-plugin compress``: overwrite only on success, never delete an input,
one run per folder, a writable folder checked before training, no stale temporary files, clear
errors for a full disk, byte-reproducible ``.pt`` files, the wall time and a message on resume."""

import errno
import hashlib
import json
import os

import pytest
import torch

import vs_plugin.pipeline.phases as phases_module
import vs_plugin.training.fit as fit_module  # the one loop calls train_one_epoch
from vs_plugin.cli.main import main
from vs_plugin.errors import VSPluginError
from vs_plugin.io import atomic_torch_save
from vs_plugin.pipeline.outputs import RunDirectory

SMALL = ["--teacher", "mlp:in-64-out", "--student", "mlp:in-32-out", "--dataset", "digits", "--teacher-epochs", "1", "--epochs", "2", "--quiet"]


def interrupt_epoch(monkeypatch, at_call: int) -> None:
    calls = {"n": 0}
    original = fit_module.train_one_epoch

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(fit_module, "train_one_epoch", interrupted)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "done"
    assert main(["compress", *SMALL, "--out", str(out)]) == 0
    return out


def copy_run(source, target):
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_interrupted_overwrite_keeps_the_previous_run(finished, tmp_path, monkeypatch):
    out = copy_run(finished, tmp_path / "run")
    before = {p.name: digest(p) for p in out.iterdir()}
    interrupt_epoch(monkeypatch, 2)
    assert main(["compress", *SMALL, "--epochs", "3", "--out", str(out), "--overwrite"]) == 130
    after = {p.name: digest(p) for p in out.iterdir() if not p.name.startswith(".")}
    assert after == before  # every file of the finished run is still there, unchanged


def test_successful_overwrite_replaces_the_run(finished, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    assert main(["compress", *SMALL, "--epochs", "3", "--out", str(out), "--overwrite"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["epochs"] == 3 and len(report["history"]["student"]) == 3
    assert {p.name for p in out.iterdir()} == {"report.json", "student.pt", "student.json", "teacher.pt", "checkpoint.pt"}


def test_overwrite_never_deletes_the_teacher_checkpoint_it_reads(finished, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    teacher = out / "teacher.pt"
    teacher_bytes = teacher.read_bytes()
    assert main(["compress", *SMALL, "--teacher-checkpoint", str(teacher), "--out", str(out), "--overwrite"]) == 0
    assert teacher.read_bytes() == teacher_bytes
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["teacher_checkpoint"] == str(teacher) and teacher.exists()


def test_a_second_run_on_a_locked_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "busy"
    holder = RunDirectory(out)  # another run holds the folder
    try:
        assert main(["compress", *SMALL, "--out", str(out)]) == 2
        assert "another vs-plugin run" in capsys.readouterr().err
    finally:
        holder.close()
    assert main(["compress", *SMALL, "--out", str(out)]) == 0  # free again once released


def test_the_lock_is_released_when_a_run_fails(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(VSPluginError):
        RunDirectory(out, resume=True)
    assert not out.exists()  # the folder it created is gone again
    RunDirectory(out).close()  # not left locked


def test_read_only_output_folder_is_refused_before_training(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    trained = []
    monkeypatch.setattr(fit_module, "train_one_epoch", lambda *a, **k: trained.append(1))
    if os.access(out, os.W_OK):  # root writes anywhere: make the probe meet a read-only file system
        import vs_plugin.pipeline.outputs as outputs_module

        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(outputs_module, "_probe_writable", read_only)
    try:
        assert main(["compress", *SMALL, "--out", str(out)]) == 2
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err
    assert "not writable" in err and str(out) in err
    assert trained == []


def test_disk_full_is_a_clear_error_and_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    import vs_plugin.io as io_module

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_module.os, "fsync", full)
    out = tmp_path / "full"
    assert main(["compress", *SMALL, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no space left" in err.lower() and "Traceback" not in err
    assert not out.exists() or not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_disk_full_after_the_first_epoch_keeps_the_checkpoint_for_resume(finished, tmp_path, monkeypatch, capsys):
    import vs_plugin.io as io_module

    original, calls = io_module.os.fsync, {"n": 0}

    def full_after_two(fd):
        calls["n"] += 1
        if calls["n"] > 2:  # teacher epoch 1 and student epoch 1 are saved, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(fd)

    monkeypatch.setattr(io_module.os, "fsync", full_after_two)
    out = tmp_path / "full"
    assert main(["compress", *SMALL, "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["compress", *SMALL, "--out", str(out), "--resume"]) == 0
    assert digest(out / "student.pt") == digest(finished / "student.pt")


def test_stale_temporary_files_are_removed_on_the_next_run(finished, tmp_path, monkeypatch):
    out = tmp_path / "run"
    interrupt_epoch(monkeypatch, 2)
    assert main(["compress", *SMALL, "--out", str(out)]) == 130
    stale = out / ".checkpoint.pt.k3j2h1.tmp"  # what a SIGKILL during a save leaves
    stale.write_bytes(b"half a checkpoint")
    monkeypatch.undo()
    assert main(["compress", *SMALL, "--out", str(out), "--resume"]) == 0
    assert not stale.exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_pt_files_are_byte_reproducible(tmp_path):
    state = {"weight": torch.arange(6.0).reshape(2, 3)}
    first = atomic_torch_save(tmp_path / "a.pt", state)
    second = atomic_torch_save(tmp_path / "b.pt", state)
    assert first.read_bytes() == second.read_bytes()


def test_two_runs_write_identical_student_files(finished, tmp_path):
    again = tmp_path / "again"
    assert main(["compress", *SMALL, "--out", str(again)]) == 0
    assert digest(again / "student.pt") == digest(finished / "student.pt")
    assert digest(again / "teacher.pt") == digest(finished / "teacher.pt")


def test_resume_says_where_it_continues_and_counts_the_whole_wall_time(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    interrupt_epoch(monkeypatch, 3)  # teacher epoch 1, student epoch 1, then interrupted
    original_save = phases_module._save

    def slow_save(*args, **kwargs):
        import time

        time.sleep(0.5)  # time spent before the interruption must count
        return original_save(*args, **kwargs)

    monkeypatch.setattr(phases_module, "_save", slow_save)
    assert main(["compress", *SMALL, "--out", str(out)]) == 130
    monkeypatch.undo()
    args = [a for a in SMALL if a != "--quiet"] + ["--no-progress"]
    assert main(["compress", *args, "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert "resuming from student epoch 1 of 2" in captured.out + captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["wall_time_s"] >= 1.0  # both saves before the interruption (0.5 s each) count


def test_epochs_shorter_than_the_kl_warmup_warn(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="kl_warmup_epochs"):
        assert main(["compress", *SMALL, "--kl-warmup-epochs", "5", "--out", str(out)]) == 0
