"""``vs-plugin compress`` end to end on the embedded digits data, repeatability and resume."""

import json
import subprocess
import sys

import pytest
import torch

import vs_plugin.training.fit as fit_module  # the one loop calls train_one_epoch
from vs_plugin import load_student
from vs_plugin.cli.main import main
from vs_plugin.data import load_dataset, make_loader
from vs_plugin.metrics import csr_bytes, evaluate_accuracy

SMALL = ["--teacher", "mlp:in-64-out", "--student", "mlp:in-32-out", "--dataset", "digits", "--teacher-epochs", "2", "--epochs", "3", "--quiet"]
REQUIRED_KEYS = [
    ("teacher", "accuracy"),
    ("teacher", "params"),
    ("student", "accuracy"),
    ("student", "nnz"),
    ("student", "sparsity"),
    ("student", "compression_vs_teacher"),
    ("student", "memory_bytes"),
    ("student", "memory_reduction_vs_teacher"),
]


def weight_tensors(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.endswith("weight") and v.dim() >= 2}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "small"
    assert main(["compress", *SMALL, "--out", str(out)]) == 0
    return out


def test_outputs_and_report(small_run, capsys):
    assert {p.name for p in small_run.iterdir()} == {"report.json", "student.pt", "student.json", "teacher.pt", "checkpoint.pt"}
    report = json.loads((small_run / "report.json").read_text())
    for section, key in REQUIRED_KEYS:
        assert key in report[section], f"{section}.{key}"
    assert "config" in report and report["wall_time_s"] > 0
    assert report["config"]["teacher"] == "mlp:in-64-out" and report["config"]["epochs"] == 3
    state = torch.load(small_run / "student.pt", weights_only=True)
    weights = weight_tensors(state)
    nnz = sum(int(torch.count_nonzero(w)) for w in weights.values())
    total = sum(w.numel() for w in weights.values())
    student = report["student"]
    assert student["nnz"] == nnz
    assert student["sparsity"] == pytest.approx(1 - nnz / total)
    assert student["compression_vs_teacher"] == pytest.approx(report["teacher"]["weights"] / nnz)
    others = sum(v.numel() for k, v in state.items() if k not in weights)
    assert student["memory_bytes"] == sum(csr_bytes(w)[0] for w in weights.values()) + 4 * others
    assert report["teacher"]["params"] == 64 * 64 + 64 + 64 * 10 + 10
    assert len(report["history"]["student"]) == 3 and len(report["history"]["teacher"]) == 2


def test_saved_student_loads_into_the_plain_architecture(small_run):
    model = load_student(small_run)
    assert all(type(m).__name__ in {"MLP", "Flatten", "Linear", "ReLU"} for m in model.modules())
    bundle = load_dataset("digits")
    accuracy = evaluate_accuracy(model, make_loader(bundle.test, 256, shuffle=False, seed=0))
    assert accuracy == pytest.approx(json.loads((small_run / "report.json").read_text())["student"]["accuracy"])


def test_rerun_from_report_repeats_the_run(small_run, tmp_path):
    again = tmp_path / "again"
    assert main(["compress", "--config", str(small_run / "report.json"), "--out", str(again), "--quiet"]) == 0
    first = torch.load(small_run / "student.pt", weights_only=True)
    second = torch.load(again / "student.pt", weights_only=True)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_existing_run_needs_resume_or_overwrite(small_run, capsys):
    assert main(["compress", *SMALL, "--out", str(small_run)]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("interrupt_at_call", [2, 4], ids=["during-teacher", "during-student"])
def test_resume_after_interruption_gives_the_same_student(tmp_path, monkeypatch, interrupt_at_call, small_run):
    calls = {"n": 0}
    original = fit_module.train_one_epoch

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == interrupt_at_call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(fit_module, "train_one_epoch", interrupted)
    assert main(["compress", *SMALL, "--out", str(out)]) == 130
    assert (out / "checkpoint.pt").exists() and not (out / "report.json").exists()
    monkeypatch.setattr(fit_module, "train_one_epoch", original)
    assert main(["compress", *SMALL, "--out", str(out), "--resume"]) == 0
    resumed = torch.load(out / "student.pt", weights_only=True)
    uninterrupted = torch.load(small_run / "student.pt", weights_only=True)
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


def test_resume_refuses_changed_settings(small_run, capsys):
    assert main(["compress", *SMALL, "--temperature", "2", "--out", str(small_run), "--resume"]) == 2
    assert "temperature" in capsys.readouterr().err


def test_console_script_process_runs_on_digits(tmp_path):
    out = tmp_path / "proc"
    result = subprocess.run(
        [sys.executable, "-m", "vs_plugin", "compress", *SMALL, "--epochs", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "compression:" in result.stdout and (out / "report.json").exists()


def test_default_digits_run_meets_the_targets(tmp_path):
    """The README's main job: default settings on digits, >90% sparsity within 2 points of the teacher."""
    out = tmp_path / "default"
    assert main(["compress", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["student"]["sparsity"] > 0.90
    assert report["teacher"]["accuracy"] - report["student"]["accuracy"] <= 0.02


def test_low_data_student_but_full_data_teacher(tmp_path, small_run):
    out = tmp_path / "low"
    assert main(["compress", *SMALL, "--train-fraction", "0.1", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    labels = load_dataset("digits").train.tensors[1]
    expected = sum(round(0.1 * int(n)) for n in torch.bincount(labels))  # stratified: 10% of each class
    assert report["dataset"]["train_samples"] == expected
    # The teacher trained here saw the whole training set: it is bit-identical to the full run's.
    low = torch.load(out / "teacher.pt", weights_only=True)
    full = torch.load(small_run / "teacher.pt", weights_only=True)
    assert all(torch.equal(low[k], full[k]) for k in full)


def test_small_run_has_no_collapse_warning(small_run):
    assert json.loads((small_run / "report.json").read_text())["warnings"] == []


def test_a_student_pruned_to_nothing_is_reported(tmp_path, capsys):
    out = tmp_path / "collapsed"
    args = [*SMALL, "--train-fraction", "0.05", "--kl-weight", "1000", "--kl-warmup-epochs", "0", "--epochs", "40", "--lr", "0.01"]
    assert main(["compress", *args, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["student"]["nnz"] == 0
    warning, chance = report["warnings"]  # the collapse, then the student at chance it leads to
    assert "every weight of 2 layer(s) was pruned" in warning and "N = 70 training samples" in warning
    assert "near chance" in chance
    assert "WARNING: every weight" in capsys.readouterr().out
