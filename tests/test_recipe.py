"""The three-phase recipe and the sparsity target of ``vs-plugin compress``; the KL tempering."""

import json

import pytest
import torch
import torch.nn as nn

import vs_plugin.training.fit as fit_module  # the one loop calls train_one_epoch
from vs_plugin.cli.main import main
from vs_plugin.errors import ConfigError
from vs_plugin.losses.objective import ObjectiveConfig, VariationalStudentObjective
from vs_plugin.pipeline.settings import CompressSettings
from vs_plugin.pruning import keep_count
from vs_plugin import VariationalConfig, variationalize

RECIPE = [
    "--teacher", "mlp:in-64-out", "--student", "mlp:in-32-out", "--dataset", "digits", "--teacher-epochs", "2",
    "--epochs", "4", "--recipe", "three-phase", "--target-sparsity", "0.9", "--quiet",
]


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe") / "run"
    assert main(["compress", *RECIPE, "--out", str(out)]) == 0
    return out


def test_three_phases_run_in_order_and_land_exactly_on_the_target(recipe_run):
    report = json.loads((recipe_run / "report.json").read_text())
    history = report["history"]
    assert [len(history[p]) for p in ("warmstart", "student", "finetune")] == [1, 2, 1]  # 4 epochs split 0.25/0.5/0.25
    total = 64 * 32 + 32 * 10
    assert report["student"]["nnz"] == keep_count(total, 0.9)
    phases = report["phases"]
    assert phases["warmstart"]["sparsity"] == 0.0
    assert phases["pruned"]["nnz"] == phases["finetune"]["nnz"] == report["student"]["nnz"]
    assert report["student"]["accuracy"] == pytest.approx(phases["finetune"]["accuracy"])
    assert report["student"]["initialised_from"].startswith("random, then 1 epochs of dense KD")


def test_fine_tune_keeps_the_pruned_weights_at_zero(recipe_run):
    state = torch.load(recipe_run / "student.pt", weights_only=True)
    nnz = sum(int(torch.count_nonzero(v)) for k, v in state.items() if k.endswith("weight"))
    assert nnz == keep_count(64 * 32 + 32 * 10, 0.9)


def test_resume_during_the_fine_tune_gives_the_same_student(tmp_path, monkeypatch, recipe_run):
    calls = {"n": 0}
    original = fit_module.train_one_epoch

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if kwargs.get("phase") == "finetune":
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(fit_module, "train_one_epoch", interrupted)
    assert main(["compress", *RECIPE, "--out", str(out)]) == 130
    assert torch.load(out / "checkpoint.pt", weights_only=True)["phase"] == "student"
    monkeypatch.setattr(fit_module, "train_one_epoch", original)
    assert main(["compress", *RECIPE, "--out", str(out), "--resume"]) == 0
    resumed = torch.load(out / "student.pt", weights_only=True)
    uninterrupted = torch.load(recipe_run / "student.pt", weights_only=True)
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


def test_variational_kd_weight_changes_the_variational_phase_alone(tmp_path, built_objectives):
    out = tmp_path / "run"
    assert main(["compress", *RECIPE, "--variational-kd-weight", "0", "--out", str(out)]) == 0
    # warm start and fine-tune: CE + KD (weight 1, no KL); variational phase: CE + KL, no KD, no teacher
    assert [(c.kd_weight, c.kl_weight > 0, teacher) for c, teacher in built_objectives] == [
        (1.0, False, True), (0.0, True, False), (1.0, False, True)]
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["variational_kd_weight"] == 0.0 and report["config"]["kd_weight"] == 1.0
    assert [len(report["history"][p]) for p in ("warmstart", "student", "finetune")] == [1, 2, 1]


def test_auto_is_three_phase_with_a_target_and_one_phase_without():
    assert CompressSettings().recipe == "auto"
    assert CompressSettings(epochs=8).phase_epochs(warm_start=True) == (0, 8, 0)
    assert CompressSettings(epochs=8, target_sparsity=0.9).phase_epochs(warm_start=True) == (2, 4, 2)
    assert CompressSettings(epochs=8, target_sparsity=0.9, recipe="variational").phase_epochs(warm_start=True) == (0, 8, 0)


def test_a_target_without_a_recipe_runs_three_phases(tmp_path):
    args = [a for a in RECIPE if a not in ("--recipe", "three-phase")]
    assert main(["compress", *args, "--out", str(tmp_path / "run")]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["student"]["recipe"] == "three-phase" and report["config"]["recipe"] == "auto"
    assert set(report["phases"]) >= {"warmstart", "variational", "pruned", "finetune"}


def test_a_teacher_copy_skips_the_warm_start():
    settings = CompressSettings(recipe="three-phase", epochs=8)
    assert settings.phase_epochs(warm_start=True) == (2, 4, 2)
    assert settings.phase_epochs(warm_start=False) == (0, 6, 2)
    assert CompressSettings(epochs=8).phase_epochs(warm_start=True) == (0, 8, 0)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(target_sparsity=1.0), "target_sparsity"),
        (dict(recipe="magic"), "recipe"),
        (dict(phase_split=(0.5, 0.0, 0.5), recipe="three-phase"), "phase_split"),
        (dict(phase_split=(0.5, 0.5)), "phase_split"),
        (dict(recipe="three-phase", epochs=2, phase_split=(1.0, 0.1, 1.0)), "no variational epoch"),
        (dict(layer_floor=1.0), "layer_floor"),
        (dict(kl_min_samples=-1), "kl_min_samples"),
        (dict(variational_kd_weight=-0.5), "variational_kd_weight"),
        (dict(variational_kd_weight="high"), "variational_kd_weight"),
    ],
)
def test_bad_recipe_settings_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        CompressSettings(**changes)


def test_bad_target_on_the_command_line_exits_2(tmp_path, capsys):
    assert main(["compress", *RECIPE, "--target-sparsity", "1.5", "--out", str(tmp_path / "x")]) == 2
    assert "target_sparsity" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_kl_is_tempered_below_n0_samples():
    student = variationalize(nn.Sequential(nn.Linear(4, 3)), VariationalConfig())
    exact = VariationalStudentObjective(student, None, ObjectiveConfig(kd_weight=0.0), num_train_samples=100)
    tempered = VariationalStudentObjective(student, None, ObjectiveConfig(kd_weight=0.0, kl_min_samples=1000), num_train_samples=100)
    large = VariationalStudentObjective(student, None, ObjectiveConfig(kd_weight=0.0, kl_min_samples=1000), num_train_samples=5000)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    with torch.no_grad():
        logits = student(x)
        kl_exact = float(exact(logits, None, y)["kl"])
        assert float(tempered(logits, None, y)["kl"]) == pytest.approx(kl_exact / 10)
        assert float(large(logits, None, y)["kl"]) == pytest.approx(kl_exact / 50)
    assert CompressSettings().objective_config().kl_min_samples == 1000


def test_python_api_lands_on_the_target_too():
    import vs_plugin
    from vs_plugin.data import load_dataset

    bundle = load_dataset("digits")
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    _, report = vs_plugin.compress(
        teacher, student, bundle.train, bundle.test, train_teacher=True, teacher_epochs=1, epochs=4,
        recipe="three-phase", target_sparsity=0.8, progress=False,
    )
    assert report["student"]["nnz"] == keep_count(64 * 16 + 16 * 10, 0.8)
    assert set(report["phases"]) >= {"warmstart", "variational", "pruned", "finetune"}
