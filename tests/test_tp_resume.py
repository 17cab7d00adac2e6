"""``vs-plugin compress --structured`` is checkpointed every epoch and ``--resume`` continues it:
killed in any phase (teacher, gated student between pruning steps, fine-tuning), the resumed run
writes the same pruned model as an uninterrupted one."""

import json

import pytest
import torch

pytest.importorskip("torch_pruning")

import vs_plugin.training.fit as fit_module  # noqa: E402  (every phase trains through the one loop)
from vs_plugin.cli.main import main  # noqa: E402

SMALL = ["--structured", "--teacher", "mlp:in-64-32-out", "--dataset", "digits", "--teacher-epochs", "2", "--epochs", "3",
         "--batch-size", "128", "--kl-warmup-epochs", "1", "--target-macs", "0.6", "--prune-steps", "2",
         "--finetune-epochs", "2", "--latency-repeats", "1", "--latency-batch-sizes", "1", "--quiet"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("structured") / "run"
    assert main(["compress", *SMALL, "--out", str(out)]) == 0
    return out


def interrupt(monkeypatch, module, at_call):
    calls = {"n": 0}
    original = module.train_one_epoch

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "train_one_epoch", interrupted)


@pytest.mark.parametrize(
    "module, at_call, phase",
    [
        (fit_module, 2, "teacher"),  # killed in teacher epoch 2
        (fit_module, 5, "student"),  # killed in student epoch 3, after the first pruning step
        (fit_module, 7, "finetune"),  # killed in fine-tuning epoch 2 (2 teacher + 3 student epochs before)
    ],
    ids=["teacher", "student-after-a-prune-step", "finetune"],
)
def test_resume_gives_the_uninterrupted_pruned_model(uninterrupted, tmp_path, monkeypatch, module, at_call, phase, capsys):
    out = tmp_path / "run"
    interrupt(monkeypatch, module, at_call)
    assert main(["compress", *SMALL, "--out", str(out)]) == 130
    assert (out / "checkpoint.pt").exists() and not (out / "report.json").exists()
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert saved["phase"] == (phase if phase != "student" else "student")
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["compress", *[a for a in SMALL if a != "--quiet"], "--no-progress", "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()  # progress lines go through logging to stderr (issue 16's conventions)
    assert f"resuming from {saved['phase']} epoch {saved['epoch']}" in captured.out + captured.err
    resumed = torch.load(out / "pruned.pt", weights_only=True)
    reference = torch.load(uninterrupted / "pruned.pt", weights_only=True)
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    assert json.loads((out / "pruned.json").read_text())["plan"] == json.loads((uninterrupted / "pruned.json").read_text())["plan"]
    report = json.loads((out / "report.json").read_text())
    assert len(report["history"]["student"]) == 3 and len(report["history"]["finetune"]) == 2


def test_structured_resume_refuses_other_settings(uninterrupted, capsys):
    assert main(["compress", *SMALL, "--target-macs", "0.4", "--out", str(uninterrupted), "--resume"]) == 2
    assert "target_macs" in capsys.readouterr().err
