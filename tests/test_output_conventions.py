"""Output conventions: bars only on a terminal, few per-epoch lines, a quiet library, logging, plain tune logs."""

import logging

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

import vs_plugin
from vs_plugin.cli.main import main
from vs_plugin.console import EpochLines
from vs_plugin.training.loop import train_one_epoch
from vs_plugin.training.steps import ClassifierStep


def tiny_data(n=96):
    inputs = torch.randn(n, 1, 4, 4)
    return TensorDataset(inputs, (inputs.flatten(1)[:, 0] > 0).long())


def test_no_progress_bar_when_stderr_is_not_a_terminal(capsys):
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = torch.utils.data.DataLoader(tiny_data(), batch_size=8)
    train_one_epoch(model, optimizer, batches, ClassifierStep(model, torch.device("cpu")),
                    epoch=0, first_global_step=0, phase="test", progress=True, total_epochs=1)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_short_jobs_print_at_most_ten_lines_per_phase_long_epochs_every_line():
    fast = iter(range(1000))
    lines = EpochLines(60, clock=lambda: next(fast) * 0.1)
    printed = [epoch for epoch in range(1, 61) if lines.due(epoch)]
    assert printed == list(range(6, 61, 6))
    slow = iter(range(1000))
    lines = EpochLines(60, clock=lambda: next(slow) * 70.0)  # 70 s per epoch
    assert all(lines.due(epoch) for epoch in range(1, 61))
    few = EpochLines(3)
    assert [few.due(epoch) for epoch in (1, 2, 3)] == [True, True, True]


def test_python_compress_is_quiet_by_default_and_logs_its_epochs(capsys, caplog):
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    student = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with caplog.at_level(logging.INFO, logger="vs_plugin"):
        vs_plugin.compress(teacher, student, train=tiny_data(), test=tiny_data(32), epochs=2, batch_size=32, device="cpu")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    messages = [r.getMessage() for r in caplog.records if r.name == "vs_plugin"]
    assert any(m.startswith("student epoch 2/2") for m in messages)


def test_the_command_prints_epoch_lines_on_stderr_and_none_with_quiet(tmp_path, capsys):
    base = ["compress", "--teacher", "mlp:in-16-out", "--student", "mlp:in-8-out", "--teacher-epochs", "1",
            "--epochs", "2", "--batch-size", "256", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "student epoch 2/2" in captured.err and "student epoch" not in captured.out
    assert "\r" not in captured.err  # no progress-bar redraws in a captured stream
    assert main([*base, "--quiet", "--out", str(tmp_path / "b")]) == 0
    assert "student epoch" not in capsys.readouterr().err
    logger = logging.getLogger("vs_plugin")
    assert all(isinstance(h, logging.NullHandler) for h in logger.handlers)  # the command cleaned up after itself
    assert logger.level == logging.NOTSET


def test_tune_prints_nni_log_lines_without_colour_codes(capsys):
    pytest.importorskip("nni")
    from vs_plugin.cli.tune import plain_nni_console

    from nni.runtime.log import start_stdout_logging

    nni_logger = logging.getLogger("nni")
    try:
        plain_nni_console()
        plain_nni_console()  # idempotent: one line per message
        nni_logger.info("hello ${GREEN}world")
        out = capsys.readouterr().out
    finally:  # leave NNI's logging as it was for the other tests
        for handler in list(nni_logger.handlers):
            if getattr(handler, "_vs_plugin_plain", False):
                nni_logger.removeHandler(handler)
        start_stdout_logging()
    assert "\x1b[" not in out and "${" not in out
    assert out.count("hello world") == 1
