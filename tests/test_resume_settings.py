"""``--resume`` takes the run's settings from its checkpoint; an option given again must match."""

import json

import pytest

import vs_plugin.training.fit as phases  # the one loop calls train_one_epoch
from vs_plugin.cli.main import EXIT_INTERRUPTED, main

RUN = ["compress", "--teacher", "mlp:in-16-out", "--student", "mlp:in-8-out", "--teacher-epochs", "1",
       "--epochs", "3", "--kd-weight", "0.5", "--batch-size", "256", "--device", "cpu", "--quiet"]


@pytest.fixture
def interrupted(tmp_path, monkeypatch):
    """A run with non-default settings, interrupted after its first student epoch."""
    real = phases.train_one_epoch

    def interrupt_in_epoch_2(*args, **kwargs):
        if kwargs["phase"] == "student" and kwargs["epoch"] == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(phases, "train_one_epoch", interrupt_in_epoch_2)
    out = tmp_path / "run"
    assert main([*RUN, "--out", str(out)]) == EXIT_INTERRUPTED
    monkeypatch.setattr(phases, "train_one_epoch", real)
    assert (out / "checkpoint.pt").is_file() and not (out / "report.json").exists()
    return out


def test_resume_without_options_continues_with_the_checkpoints_settings(interrupted, capsys):
    assert main(["compress", "--out", str(interrupted), "--resume", "--quiet"]) == 0
    report = json.loads((interrupted / "report.json").read_text())
    assert report["config"]["epochs"] == 3 and report["config"]["kd_weight"] == 0.5
    assert report["teacher"]["name"] == "mlp:in-16-out" and report["student"]["name"] == "mlp:in-8-out"
    assert [row["epoch"] for row in report["history"]["student"]] == [1, 2, 3]


def test_resume_refuses_a_method_setting_given_again_with_another_value(interrupted, capsys):
    assert main(["compress", "--out", str(interrupted), "--resume", "--quiet", "--kd-weight", "1.0"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume with different settings" in err and "kd_weight: 0.5 -> 1.0" in err
    assert main(["compress", "--out", str(interrupted), "--resume", "--quiet", "--student", "mlp:in-4-out"]) == 2
    assert "student: 'mlp:in-8-out' -> 'mlp:in-4-out'" in capsys.readouterr().err


def test_resume_accepts_the_same_values_and_more_epochs(interrupted):
    assert main(["compress", "--out", str(interrupted), "--resume", "--quiet", "--kd-weight", "0.5", "--epochs", "4"]) == 0
    report = json.loads((interrupted / "report.json").read_text())
    assert report["config"]["epochs"] == 4 and len(report["history"]["student"]) == 4


def test_resume_with_nothing_to_resume_says_so(tmp_path, capsys):
    assert main(["compress", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
