"""The fine-tune's learning-rate schedule (``finetune_lr_schedule``): values, the compress recipe,
resume, gradual magnitude pruning (annealed after its last pruning step), the baselines' fine-tune,
torch-pruning's baselines, and the study / compare budgets that hand it to every row."""

import json

import pytest
import torch
import torch.nn as nn

import vs_plugin.training.fit as fit_module  # the one loop calls train_one_epoch
from vs_plugin.cli.main import main
from vs_plugin.compare import gradual_magnitude as gradual_module
from vs_plugin.compare.config import CompareConfig, MethodEntry
from vs_plugin.compare.gradual_magnitude import GradualMagnitudeMethod
from vs_plugin.compare.method import MethodContext, TrainingBudget
from vs_plugin.data.loaders import make_loader
from vs_plugin.errors import ConfigError
from vs_plugin.pipeline.settings import CompressSettings
from vs_plugin.study.config import parse_study
from vs_plugin.study.keys import row_inputs
from vs_plugin.training import recipes
from vs_plugin.training.optim import lr_schedule_hooks, scheduled_lr

RECIPE = [
    "--teacher", "mlp:in-64-out", "--student", "mlp:in-32-out", "--dataset", "digits", "--teacher-epochs", "1",
    "--epochs", "8", "--recipe", "three-phase", "--target-sparsity", "0.9", "--kl-warmup-epochs", "2", "--quiet",
]  # the fine-tune anneals by default


def test_annealing_can_start_after_some_epochs_at_the_base_rate():
    rates = [scheduled_lr(1e-3, "cosine", e, 6, anneal_from=2) for e in range(6)]
    assert rates[:3] == [1e-3, 1e-3, 1e-3]  # epochs 0, 1 at the base rate; epoch 2 is the first annealed one
    assert rates[2:] == pytest.approx([scheduled_lr(1e-3, "cosine", e, 4) for e in range(4)])
    assert [scheduled_lr(1e-3, "constant", e, 6, anneal_from=2) for e in range(6)] == [1e-3] * 6
    assert scheduled_lr(1e-3, "cosine", 5, 6, anneal_from=6) == 1e-3  # nothing left to anneal


def test_the_hooks_put_the_optimizer_at_the_start_epochs_rate():
    optimizer = torch.optim.Adam(nn.Linear(2, 2).parameters(), lr=1e-3)
    assert lr_schedule_hooks(optimizer, 1e-3, "constant", 4, start_epoch=3) == []
    assert optimizer.param_groups[0]["lr"] == 1e-3
    assert len(lr_schedule_hooks(optimizer, 1e-3, "cosine", 4, start_epoch=2)) == 1
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    with pytest.raises(ConfigError, match="lr schedule must be one of constant, cosine, got 'step'"):
        lr_schedule_hooks(optimizer, 1e-3, "step", 4)


@pytest.fixture(scope="module")
def annealed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("annealed") / "run"
    assert main(["compress", *RECIPE, "--out", str(out)]) == 0
    return out


def interrupted_in_the_fine_tune(out, monkeypatch, at_epoch: int) -> dict:
    """Run RECIPE into ``out``, cut by Ctrl-C when fine-tune epoch ``at_epoch`` (1-based) starts; its checkpoint."""
    calls = {"finetune": 0}
    original = fit_module.train_one_epoch

    def interrupted(*args, **kwargs):
        if kwargs.get("phase") == "finetune":
            calls["finetune"] += 1
            if calls["finetune"] == at_epoch:
                raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(fit_module, "train_one_epoch", interrupted)
    assert main(["compress", *RECIPE, "--out", str(out)]) == 130
    monkeypatch.setattr(fit_module, "train_one_epoch", original)
    return torch.load(out / "checkpoint.pt", weights_only=False)


def test_compress_anneals_the_fine_tune_alone_by_default(annealed_run):
    assert CompressSettings().finetune_lr_schedule == "cosine"
    report = json.loads((annealed_run / "report.json").read_text())
    history = report["history"]
    assert [len(history[p]) for p in ("warmstart", "student", "finetune")] == [2, 4, 2]
    assert [r["lr"] for r in history["finetune"]] == pytest.approx([1e-3, 5e-4])
    assert all("lr" not in r for p in ("warmstart", "student") for r in history[p])  # the other phases stay at lr
    assert report["config"]["finetune_lr_schedule"] == "cosine"


def test_a_fine_tune_resumed_mid_schedule_gives_the_same_student(tmp_path, monkeypatch, annealed_run):
    out = tmp_path / "run"
    checkpoint = interrupted_in_the_fine_tune(out, monkeypatch, at_epoch=2)  # the first fine-tune epoch is checkpointed
    assert checkpoint["phase"] == "finetune" and checkpoint["epoch"] == 1
    assert main(["compress", *RECIPE, "--out", str(out), "--resume"]) == 0
    resumed = torch.load(out / "student.pt", weights_only=True)
    uninterrupted = torch.load(annealed_run / "student.pt", weights_only=True)
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
    history = json.loads((out / "report.json").read_text())["history"]["finetune"]
    assert [r["lr"] for r in history] == pytest.approx([1e-3, 5e-4])


def test_a_bad_schedule_is_refused_at_every_entry_point(tmp_path, capsys):
    with pytest.raises(ConfigError, match="finetune_lr_schedule must be one of constant, cosine, got 'linear'"):
        CompressSettings(finetune_lr_schedule="linear")
    assert main(["compress", *RECIPE[:-1], "--finetune-lr-schedule", "step", "--quiet", "--out", str(tmp_path / "bad")]) == 2
    assert "finetune_lr_schedule must be one of constant, cosine, got 'step'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match="finetune_lr_schedule must be one of constant, cosine"):
        CompareConfig(methods=(MethodEntry("level", "level"),)).replace(finetune_lr_schedule="warm")


def _tiny_context(schedule: str, epochs: int) -> MethodContext:
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 8), torch.randint(0, 3, (64,)))
    batches = make_loader(data, 16, shuffle=True, seed=0)
    student = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    teacher = nn.Linear(8, 3).eval().requires_grad_(False)
    return MethodContext(
        teacher=teacher, starting_student=student, student_is_trained=False, train_batches=batches, test_batches=batches,
        num_train_samples=64, budget=TrainingBudget(epochs, 1e-2, 0.0, 1.0, len(batches), schedule), device=torch.device("cpu"),
        num_classes=3,
    )


def _rates_per_epoch(monkeypatch, module) -> list[float]:
    """The learning rate each epoch of ``module.fit`` trained at."""
    rates: list[float] = []
    original = module.fit

    def recording(model, optimizer, batches, step, **kwargs):
        def record(fit, _record):
            rates.append(fit.optimizer.param_groups[0]["lr"])

        kwargs["measure"] = [record, *kwargs.get("measure", ())]  # before the schedule sets the next rate
        return original(model, optimizer, batches, step, **kwargs)

    monkeypatch.setattr(module, "fit", recording)
    return rates


def test_gradual_magnitude_anneals_from_the_first_epoch_after_its_last_pruning_step(monkeypatch):
    rates = _rates_per_epoch(monkeypatch, gradual_module)
    entry = MethodEntry("gradual_magnitude", "GM", config_list=({"op_types": ["Linear"]},), options={"ramp_fraction": 0.5})
    outcome = GradualMagnitudeMethod().run(_tiny_context("cosine", 6), entry, 0.8)
    assert outcome.details["ramp_steps"] == 12  # 3 of the 6 epochs of 4 steps
    assert rates == pytest.approx([1e-2, 1e-2, 1e-2] + [scheduled_lr(1e-2, "cosine", e, 3) for e in range(3)])
    rates.clear()
    GradualMagnitudeMethod().run(_tiny_context("constant", 6), entry, 0.8)
    assert rates == [1e-2] * 6


def test_the_baselines_fine_tune_follows_the_budgets_schedule(monkeypatch):
    rates = _rates_per_epoch(monkeypatch, recipes)
    context = _tiny_context("cosine", 4)
    context.finetune(context.fresh_student())
    assert rates == pytest.approx([scheduled_lr(1e-2, "cosine", e, 4) for e in range(4)])


def test_torch_pruning_baselines_anneal_their_fine_tune():
    from vs_plugin.integrations.torch_pruning.baselines import run_tp_baseline
    from vs_plugin.losses.objective import ObjectiveConfig

    context = _tiny_context("cosine", 2)
    student = context.fresh_student()
    result = run_tp_baseline(
        "tp-magnitude", student, None, context.train_batches, torch.zeros(1, 8), target_macs_ratio=0.5, epochs=2, lr=1e-2,
        objective=ObjectiveConfig(kd_weight=0.0, kl_weight=0.0), device=torch.device("cpu"), finetune_lr_schedule="cosine",
    )
    assert [r["lr"] for r in result.history["finetune"]] == pytest.approx([1e-2, 5e-3])


STUDY = {
    "name": "s", "dataset": "digits", "teacher": "mlp:in-32-out", "student": "mlp:in-16-out", "epochs": 4,
    "finetune_lr_schedule": "cosine",
    "rows": [
        {"label": "VS", "method": "compress", "target": 0.9},
        {"label": "GM", "method": "gradual_magnitude", "config_list": [{"op_types": ["Linear"]}], "target": 0.9},
        {"label": "KD", "method": "kd"},
    ],
}


def test_a_study_gives_every_row_the_same_schedule_and_records_it(tmp_path):
    config = parse_study(STUDY, tmp_path)
    assert config.finetune_lr_schedule == "cosine"
    vs, gm, kd = config.rows
    assert config.compress_settings(vs, 0, 1.0).finetune_lr_schedule == "cosine"
    for row in (vs, gm, kd):
        assert row_inputs(config, row, 0, 1.0)["finetune_lr_schedule"] == "cosine"
    constant = parse_study({**STUDY, "finetune_lr_schedule": "constant"}, tmp_path)
    assert "finetune_lr_schedule" not in row_inputs(constant, constant.rows[1], 0, 1.0)  # older studies still match
    assert "finetune_lr_schedule" not in row_inputs(constant, constant.rows[0], 0, 1.0)["compress_settings"]
    compare = CompareConfig(methods=(MethodEntry("level", "level", config_list=({"op_types": ["Linear"]},)),),
                            finetune_lr_schedule="cosine")
    assert compare.to_study("c").finetune_lr_schedule == "cosine"


def test_a_study_refuses_the_schedule_as_one_rows_setting(tmp_path):
    with pytest.raises(ConfigError, match="row 'VS' settings sets finetune_lr_schedule; it is part of every row's budget"):
        parse_study({**STUDY, "rows": [{"label": "VS", "method": "compress", "target": 0.9,
                                        "settings": {"finetune_lr_schedule": "cosine"}}]}, tmp_path)
    with pytest.raises(ConfigError, match="^settings sets finetune_lr_schedule"):
        parse_study({**STUDY, "settings": {"finetune_lr_schedule": "cosine"}}, tmp_path)
    with pytest.raises(ConfigError, match="finetune_lr_schedule must be one of constant, cosine, got 'step'"):
        parse_study({**STUDY, "finetune_lr_schedule": "step"}, tmp_path)


def test_a_study_run_anneals_the_kd_row_over_its_whole_budget(tmp_path, monkeypatch):
    from vs_plugin.cli.main import main as cli

    rates = _rates_per_epoch(monkeypatch, recipes)
    study = {**STUDY, "teacher_epochs": 1, "dense_student_epochs": 1, "seeds": [0], "rows": [{"label": "KD", "method": "kd"}]}
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(study))
    assert cli(["experiment", "--config", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert rates == pytest.approx([1e-3] + [scheduled_lr(1e-3, "cosine", e, 4) for e in range(4)])  # the teacher's epoch, then KD
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "annealed by a cosine schedule over the epochs after each row's last pruning step" in summary


def test_a_run_recorded_before_the_setting_existed_continues_and_repeats_at_a_constant_rate(tmp_path, monkeypatch):
    from vs_plugin.cli.settings_args import read_config_file

    out = tmp_path / "old"
    checkpoint = interrupted_in_the_fine_tune(out, monkeypatch, at_epoch=1)
    del checkpoint["settings"]["finetune_lr_schedule"]  # as an older vs-plugin wrote it
    torch.save(checkpoint, out / "checkpoint.pt")
    assert main(["compress", "--out", str(out), "--resume", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["finetune_lr_schedule"] == "constant"
    assert all("lr" not in r for r in report["history"]["finetune"])

    del report["config"]["finetune_lr_schedule"]
    (tmp_path / "old-report.json").write_text(json.dumps(report))
    assert read_config_file(tmp_path / "old-report.json")["finetune_lr_schedule"] == "constant"
