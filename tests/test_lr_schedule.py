"""The teacher's learning-rate schedule (``teacher_lr_schedule``): values, resume, every entry point."""

import math

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from vs_plugin.data.loaders import make_loader
from vs_plugin.errors import ConfigError
from vs_plugin.pipeline.settings import CompressSettings
from vs_plugin.study.config import parse_study
from vs_plugin.training.optim import scheduled_lr
from vs_plugin.training.recipes import train_classifier


def test_cosine_starts_at_lr_halves_midway_and_decays_towards_zero():
    assert [scheduled_lr(1e-3, "constant", e, 4) for e in range(4)] == [1e-3] * 4
    cosine = [scheduled_lr(1e-3, "cosine", e, 4) for e in range(4)]
    assert cosine[0] == 1e-3 and cosine[2] == pytest.approx(5e-4)
    assert cosine == sorted(cosine, reverse=True) and cosine[3] == pytest.approx(1e-3 * (1 + math.cos(0.75 * math.pi)) / 2)
    with pytest.raises(ConfigError, match="lr schedule must be one of constant, cosine"):
        scheduled_lr(1e-3, "step", 0, 4)


def loader():
    torch.manual_seed(0)
    return make_loader(TensorDataset(torch.randn(32, 5), torch.randint(0, 3, (32,))), 8, shuffle=True, seed=0)


def test_train_classifier_follows_the_schedule_and_a_resumed_run_continues_it():
    model = nn.Linear(5, 3)
    state = train_classifier(model, loader(), epochs=4, lr=1e-2, device=torch.device("cpu"), lr_schedule="cosine")
    used = [record["lr"] for record in state.history]
    assert used == pytest.approx([scheduled_lr(1e-2, "cosine", e, 4) for e in range(4)])
    assert state.optimizer.param_groups[0]["lr"] == pytest.approx(0.0)  # the rate after the last epoch

    resumed = nn.Linear(5, 3)
    optimizer_state = torch.optim.Adam(resumed.parameters(), lr=1e-2).state_dict()  # a checkpoint at the base rate
    later = train_classifier(resumed, loader(), epochs=4, lr=1e-2, device=torch.device("cpu"), lr_schedule="cosine",
                             optimizer_state=optimizer_state, start_epoch=2)
    assert [record["lr"] for record in later.history] == pytest.approx(used[2:])

    constant = train_classifier(nn.Linear(5, 3), loader(), epochs=2, lr=1e-2, device=torch.device("cpu"))
    assert "lr" not in constant.history[0] and constant.optimizer.param_groups[0]["lr"] == 1e-2


def test_bad_schedules_are_refused_naming_the_accepted_ones(tmp_path):
    with pytest.raises(ConfigError, match="teacher_lr_schedule must be one of constant, cosine, got 'step'"):
        CompressSettings(teacher_lr_schedule="step")
    study = {"name": "s", "dataset": "digits", "teacher": "mlp:in-32-out", "student": "mlp:in-16-out", "teacher_lr_schedule": "linear",
             "rows": [{"label": "KD", "method": "kd"}]}
    with pytest.raises(ConfigError, match="teacher_lr_schedule must be one of constant, cosine, got 'linear'"):
        parse_study(study, tmp_path)
    assert parse_study({**study, "teacher_lr_schedule": "cosine"}, tmp_path).teacher_lr_schedule == "cosine"


def test_compress_trains_its_teacher_on_the_schedule_and_records_it(tmp_path):
    import json

    from vs_plugin.cli.main import main

    out = tmp_path / "run"
    args = ["compress", "--teacher", "mlp:in-32-out", "--student", "mlp:in-16-out", "--teacher-epochs", "2", "--epochs", "1",
            "--teacher-lr-schedule", "cosine", "--quiet", "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["teacher_lr_schedule"] == "cosine"
    assert [r["lr"] for r in report["history"]["teacher"]] == pytest.approx([1e-3, 5e-4])
