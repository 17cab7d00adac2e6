"""Multi-process training with torchrun (gloo on CPU): equivalence with one process, and resume
after the run was killed in the middle of training."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from vs_plugin.data.loaders import InMemoryLoader
from vs_plugin.training.distributed import SINGLE_PROCESS, init_distributed

RUN = ["--teacher", "mlp:in-64-out", "--student", "mlp:in-32-out", "--batch-size", "64", "--quiet"]


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(29500 + os.getpid() % 1000), "-m", "vs_plugin", "compress", *args]


def single(*args: str) -> list[str]:
    return [sys.executable, "-m", "vs_plugin", "compress", *args]


def report(folder) -> dict:
    return json.loads((folder / "report.json").read_text())


def test_not_under_torchrun_is_a_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed(torch.device("cpu")) is SINGLE_PROCESS


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    common = [*RUN, "--teacher-epochs", "4", "--epochs", "12"]
    one, two = tmp_path / "one", tmp_path / "two"
    result = subprocess.run(single(*common, "--out", str(one)), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    result = subprocess.run(torchrun(*common, "--out", str(two)), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("wrote ") == 1, "only rank 0 prints and writes"
    a, b = report(one), report(two)
    assert b["environment"]["processes"] == 2 and a["environment"]["processes"] == 1
    # Same global batches (rank r takes every other sample of the same permutation): the teacher
    # trains identically up to float rounding; the student differs only by its noise draws.
    assert abs(a["teacher"]["accuracy"] - b["teacher"]["accuracy"]) <= 0.01
    assert abs(a["student"]["accuracy"] - b["student"]["accuracy"]) <= 0.03
    assert abs(a["student"]["sparsity"] - b["student"]["sparsity"]) <= 0.03
    assert len(b["history"]["student"]) == 12


def test_resume_under_torchrun_after_a_kill_mid_training(tmp_path):
    common = [*RUN, "--teacher-epochs", "3", "--epochs", "40"]
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    result = subprocess.run(torchrun(*common, "--out", str(reference)), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]

    process = subprocess.Popen(torchrun(*common, "--out", str(interrupted)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = interrupted / "checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=True)["phase"] == "student":
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the whole torchrun group, in the middle of an epoch
    process.wait()
    assert not (interrupted / "report.json").exists(), "the run finished before it could be interrupted"
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["world_size"] == 2 and len(saved["rng"]) == 2 and saved["epoch"] < 40

    result = subprocess.run(torchrun(*common, "--out", str(interrupted), "--resume"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    resumed = torch.load(interrupted / "student.pt", weights_only=True)
    expected = torch.load(reference / "student.pt", weights_only=True)
    # Data order, per-rank noise and optimizer state all come back: the result is bit-identical.
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)

    result = subprocess.run(single(*common, "--out", str(interrupted), "--resume"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "same number" in result.stderr


def test_global_batch_must_divide_by_processes(tmp_path):
    result = subprocess.run(torchrun(*RUN, "--batch-size", "63", "--epochs", "1", "--teacher-epochs", "1", "--out", str(tmp_path / "x")), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "divisible" in result.stderr
    assert not (tmp_path / "x").exists()


def test_evaluation_shards_cover_the_test_set_once():
    data = torch.utils.data.TensorDataset(torch.arange(11).float(), torch.arange(11))
    seen = [int(i) for r in range(3) for batch in InMemoryLoader(data, 4, rank=r, world_size=3, pad=False) for i in batch[1]]
    assert sorted(seen) == list(range(11))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "--config", "configs/compare-digits.yaml", "--out", "x"], "vs-plugin compare runs in one process"),
        (["tune", "--config", "configs/tune-digits.yml"], "vs-plugin tune runs in one process"),
        (["compress", "--structured", "--out", "x"], "--structured runs in one process"),
    ],
)
def test_single_process_commands_refuse_torchrun(monkeypatch, capsys, argv, message):
    from vs_plugin.cli.main import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert main(argv) == 2
    assert message in capsys.readouterr().err
