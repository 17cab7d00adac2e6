"""Every bad input: a one-line error naming the problem, exit status 2, nothing written."""

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

import vs_plugin
from vs_plugin.cli.main import main
from vs_plugin.errors import ConfigError, ModelError
from vs_plugin.models import InputSpec, build_model

BASE = ["compress", "--teacher", "mlp:in-32-out", "--student", "mlp:in-16-out", "--teacher-epochs", "1", "--epochs", "1", "--quiet"]


def run_bad(tmp_path, capsys, *extra):
    out = tmp_path / "out"
    code = main([*BASE, "--out", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("vs-plugin: error: ") and "\n" not in err, err
    assert not out.exists(), "nothing may be left behind"
    return err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--teacher", "resnet9000"], "known models: "),
        (["--dataset", "imagenet"], "known datasets: "),
        (["--student", "mlp:in-16-5"], "5 outputs but the data has 10 classes"),
        (["--temperature", "-1"], "temperature must be > 0"),
        (["--kd-weight", "-0.5"], "kd_weight must be a number >= 0"),
        (["--kl-weight", "-1"], "kl_weight must be a number >= 0"),
        (["--bsr-weight", "-1"], "bsr_weight must be a number >= 0"),
        (["--train-fraction", "0"], r"train_fraction must lie in \(0, 1\]"),
        (["--train-fraction", "1.5"], r"train_fraction must lie in \(0, 1\]"),
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--granularity", "block"], "granularity must be one of weight, channel"),
        (["--threshold", "20"], "threshold must lie in"),
        (["--device", "tpu"], "device must be one of"),
        (["--teacher-lr-schedule", "step"], "teacher_lr_schedule must be one of constant, cosine"),
        (["--bsr-norm", "l3"], "bsr_norm must be one of"),
        (["--include", "encoder.*"], "matches no module"),
    ],
)
def test_bad_names_and_settings(tmp_path, capsys, args, message):
    import re

    err = run_bad(tmp_path, capsys, *args)
    assert re.search(message, err), err


def test_missing_data_files_say_how_to_install(tmp_path, capsys):
    err = run_bad(tmp_path, capsys, "--dataset", "fashion-mnist", "--data-dir", str(tmp_path), "--no-download")
    assert "apt-get install dataset-fashion-mnist" in err


def test_corrupt_teacher_checkpoint(tmp_path, capsys):
    bad = tmp_path / "teacher.pt"
    bad.write_bytes(b"garbage" * 100)
    assert "could not read checkpoint" in run_bad(tmp_path, capsys, "--teacher-checkpoint", str(bad))


def test_teacher_checkpoint_of_another_class_count(tmp_path, capsys):
    other = build_model("mlp:in-32-out", InputSpec(1, 8, 8, 7))
    path = tmp_path / "seven.pt"
    torch.save(other.state_dict(), path)
    # Issue 13: a head of another class count is named as such (it was a generic "shape mismatch").
    message = run_bad(tmp_path, capsys, "--teacher-checkpoint", str(path))
    assert "class-count mismatch" in message and "7-class head" in message and "--reset-head" in message


def test_nan_loss_stops_cleanly(tmp_path, capsys):
    teacher = build_model("mlp:in-32-out", InputSpec(1, 8, 8, 10))
    with torch.no_grad():
        teacher[1].weight.fill_(float("nan"))
    path = tmp_path / "nan.pt"
    torch.save(teacher.state_dict(), path)
    err = run_bad(tmp_path, capsys, "--teacher-checkpoint", str(path))
    assert "loss became nan" in err


def test_bad_config_files(tmp_path, capsys):
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("temprature: 3\n")
    assert "unknown setting(s) temprature" in run_bad(tmp_path, capsys, "--config", str(unknown))
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: [1,\n")
    assert "not valid YAML" in run_bad(tmp_path, capsys, "--config", str(broken))
    assert "cannot read config file" in run_bad(tmp_path, capsys, "--config", str(tmp_path / "none.yaml"))


def test_resume_without_checkpoint(tmp_path, capsys):
    assert "nothing to resume" in run_bad(tmp_path, capsys, "--resume")


def test_cuda_when_unavailable(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert "CUDA is not available" in run_bad(tmp_path, capsys, "--device", "cuda")


def test_api_class_count_mismatch_between_modules():
    data = TensorDataset(torch.randn(20, 4), torch.arange(20) % 3)
    teacher = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ModelError, match="student outputs 5 classes but the data has 3"):
        vs_plugin.compress(teacher, nn.Sequential(nn.Linear(4, 5)), data, data, epochs=1)
    with pytest.raises(ModelError, match="teacher outputs 3 classes but the data has 4"):
        vs_plugin.compress(teacher, None, TensorDataset(torch.randn(20, 4), torch.arange(20) % 4), data, epochs=1)


def test_api_rejects_unknown_and_mistyped_settings():
    data = TensorDataset(torch.randn(8, 4), torch.arange(8) % 2)
    with pytest.raises(ConfigError, match="unknown setting"):
        vs_plugin.compress(nn.Linear(4, 2), None, data, data, temprature=2)
    with pytest.raises(ConfigError, match="wrong type"):
        vs_plugin.compress(nn.Linear(4, 2), None, data, data, epochs="ten")
