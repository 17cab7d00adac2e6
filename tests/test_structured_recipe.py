"""The structured path follows the three-phase recipe by default (issue 11): ``--epochs`` split into
a dense KD warm start (only for a student that is not a teacher copy), the gate phase with its
pruning steps, and a fine-tune; an explicit ``--finetune-epochs`` keeps the old layout; a run
killed in the warm start resumes to the uninterrupted model."""

import json

import pytest
import torch

pytest.importorskip("torch_pruning")

import vs_plugin.training.fit as fit_module  # noqa: E402
from vs_plugin.cli.main import main  # noqa: E402
from vs_plugin.errors import ConfigError  # noqa: E402
from vs_plugin.integrations.torch_pruning import StructuredSettings  # noqa: E402
from vs_plugin.pipeline.settings import CompressSettings  # noqa: E402
from vs_plugin.pipeline.structured import structured_phase_epochs  # noqa: E402

OTHER_STUDENT = ["--structured", "--teacher", "mlp:in-64-32-out", "--student", "mlp:in-48-out", "--dataset", "digits",
                 "--teacher-epochs", "2", "--epochs", "8", "--batch-size", "128", "--kl-warmup-epochs", "1",
                 "--target-macs", "0.6", "--prune-steps", "2", "--latency-repeats", "1", "--latency-batch-sizes", "1", "--quiet"]


def test_phase_split():
    settings = CompressSettings(epochs=8)
    assert structured_phase_epochs(settings, StructuredSettings(), warm_start=False) == (0, 6, 2)  # teacher copy
    assert structured_phase_epochs(settings, StructuredSettings(), warm_start=True) == (2, 4, 2)
    assert structured_phase_epochs(settings, StructuredSettings(finetune_epochs=3), warm_start=True) == (0, 8, 3)
    assert structured_phase_epochs(settings.replace(recipe="variational"), StructuredSettings(), warm_start=True) == (0, 8, 0)
    assert structured_phase_epochs(settings, StructuredSettings(prune_by="threshold"), warm_start=True) == (0, 8, 0)
    assert structured_phase_epochs(settings.replace(phase_split=(0, 1, 1)), StructuredSettings(), warm_start=True) == (0, 4, 4)
    with pytest.raises(ConfigError, match="finetune_epochs"):
        StructuredSettings(finetune_epochs=-1)


def test_too_few_gate_epochs_for_the_pruning_steps_fail_before_training(tmp_path, capsys):
    args = [a if a != "8" else "3" for a in OTHER_STUDENT]  # 3 epochs: 1 warm start, 1 gate epoch, 1 fine-tune
    assert main(["compress", *args, "--out", str(tmp_path / "run")]) == 2
    assert "prune_steps (2)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_variational_kd_weight_changes_the_gate_phase_alone(tmp_path, built_objectives):
    assert main(["compress", *OTHER_STUDENT, "--variational-kd-weight", "0.25", "--out", str(tmp_path / "run")]) == 0
    with_kl = {c.kd_weight for c, _ in built_objectives if c.kl_weight > 0}
    without_kl = {c.kd_weight for c, _ in built_objectives if c.kl_weight == 0}
    assert with_kl == {0.25}  # the gate phase's whole objective
    assert without_kl == {1.0, 0.25}  # warm start and fine-tune at kd_weight; the pruner's data terms of the gate phase


def test_the_gradual_schedule_is_refused_for_a_structured_run(tmp_path, capsys):
    args = [*OTHER_STUDENT, "--target-sparsity", "0.5", "--prune-schedule", "gradual"]
    assert main(["compress", *args, "--out", str(tmp_path / "run")]) == 2
    assert "prune_schedule='gradual'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("structured-recipe") / "run"
    assert main(["compress", *OTHER_STUDENT, "--out", str(out)]) == 0
    return out


def test_another_student_is_warm_started_then_gated_then_fine_tuned(uninterrupted):
    report = json.loads((uninterrupted / "report.json").read_text())
    history = report["history"]
    assert [len(history[p]) for p in ("warmstart", "student", "finetune")] == [2, 4, 2]
    assert history["warmstart"][-1]["test_accuracy"] > 0.5  # the dense KD student learned before the gates came
    assert report["structured"]["phase_epochs"] == {"warmstart": 2, "student": 4, "finetune": 2}
    assert report["structured"]["warmstart_accuracy"] > 0.5
    assert "2 epochs of dense KD" in report["student"]["initialised_from"]
    gates_moved = [r["gates_at_threshold"] for r in history["student"]]
    assert gates_moved[-1] > 0 or report["structured"]["student"]["macs"] < report["structured"]["dense_student"]["macs"]


def test_killed_in_the_warm_start_resumes_to_the_same_model(uninterrupted, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    calls = {"n": 0}
    original = fit_module.train_one_epoch

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # 2 teacher epochs, then warm-start epoch 2
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(fit_module, "train_one_epoch", interrupted)
    assert main(["compress", *OTHER_STUDENT, "--out", str(out)]) == 130
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (saved["phase"], saved["epoch"]) == ("warmstart", 1)
    monkeypatch.undo()
    assert main(["compress", *OTHER_STUDENT, "--out", str(out), "--resume"]) == 0
    resumed = torch.load(out / "pruned.pt", weights_only=True)
    reference = torch.load(uninterrupted / "pruned.pt", weights_only=True)
    assert resumed.keys() == reference.keys() and all(torch.equal(resumed[k], reference[k]) for k in reference)
    report = json.loads((out / "report.json").read_text())
    assert [len(report["history"][p]) for p in ("warmstart", "student", "finetune")] == [2, 4, 2]


def test_python_api_with_modules_warm_starts_another_student():
    """The way a torch-pruning user calls it from Python: their own modules and datasets."""
    import torch.nn as nn
    from sklearn.datasets import load_digits
    from torch.utils.data import TensorDataset

    from vs_plugin.integrations.torch_pruning import structured_from_modules
    from vs_plugin.models.registry import InputSpec

    digits = load_digits()
    inputs = torch.tensor(digits.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    labels = torch.tensor(digits.target)
    train, test = TensorDataset(inputs[:1400], labels[:1400]), TensorDataset(inputs[1400:], labels[1400:])
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 10))
    student = nn.Sequential(nn.Conv2d(1, 12, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(12 * 64, 10))
    settings = CompressSettings(epochs=4, teacher_epochs=2, batch_size=128, kl_warmup_epochs=1, progress=False)
    pruned, report = structured_from_modules(
        teacher, train, test, InputSpec(1, 8, 8, 10), settings=settings, student=student, train_teacher=True,
        structured=StructuredSettings(target_macs=0.6, latency_repeats=1, latency_batch_sizes=(1,)),
    )
    assert report["structured"]["phase_epochs"] == {"warmstart": 1, "student": 2, "finetune": 1}
    assert [len(report["history"][p]) for p in ("warmstart", "student", "finetune")] == [1, 2, 1]
    assert report["structured"]["warmstart_accuracy"] > 0.3
    assert pruned[0].out_channels < 12  # channels physically removed
