"""The gradual schedule: a variational student masked by log alpha on the cubic schedule while it trains."""

import json

import pytest
import torch
import torch.nn as nn

import vs_plugin.training.fit as fit_module  # the one loop calls train_one_epoch
from vs_plugin import VariationalConfig, variationalize
from vs_plugin.cli.main import main
from vs_plugin.errors import ConfigError
from vs_plugin.pipeline.settings import CompressSettings
from vs_plugin.pruning import GradualLogAlphaPruning, global_keep_masks, keep_count
from vs_plugin.pruning.gradual import masked_log_sigma2
from vs_plugin.study.keys import ADDED_SETTINGS
from vs_plugin.variationalize import variational_layers

GRADUAL = [
    "--teacher", "mlp:in-64-out", "--student", "mlp:in-32-out", "--dataset", "digits", "--teacher-epochs", "2",
    "--epochs", "8", "--kl-warmup-epochs", "2", "--target-sparsity", "0.9", "--prune-schedule", "gradual", "--quiet",
]
UNITS = 64 * 32 + 32 * 10


def _student(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return variationalize(nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5)), VariationalConfig(init_log_sigma2=-10.0))


def _train(student: nn.Module, pruning: GradualLogAlphaPruning, steps: int, on_schedule: bool = False) -> None:
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    pruning.attach(optimizer)
    step = pruning.wrap(lambda batch, global_step: None) if on_schedule else (lambda batch, global_step: None)
    x, y = torch.randn(64, 20), torch.randint(0, 5, (64,))
    for global_step in range(steps):
        step(None, global_step)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(student(x), y) + sum(layer.kl().sum() for _, layer in variational_layers(student)) * 1e-3
        loss.backward()
        optimizer.step()


def test_the_schedule_is_cubic_and_ends_on_the_target():
    pruning = GradualLogAlphaPruning(_student(), target=0.9, ramp_steps=100)
    assert pruning.sparsity_at(0) == 0.0
    assert pruning.sparsity_at(50) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    assert pruning.sparsity_at(100) == pruning.sparsity_at(1000) == pytest.approx(0.9)
    assert [s for s in range(1, 120) if pruning.due(s)] == list(range(10, 101, 10))


def test_masked_units_stay_masked_and_the_count_is_exact():
    student = _student()
    pruning = GradualLogAlphaPruning(student, target=0.8, ramp_steps=40, update_every=5)
    before = {name: p.detach().clone() for name, p in student.named_parameters()}
    seen = None
    for steps_done in (10, 20, 40):  # updates on the schedule, with training in between
        pruning.update(steps_done)
        _train(student, pruning, 5)
        pruning.detach()
        masks = {n: m.clone() for n, m in pruning.masks.items()}
        if seen is not None:
            assert all(not (masks[n] & ~seen[n]).any() for n in masks), "a masked unit came back"
        seen = masks
    kept = sum(int(m.sum()) for m in pruning.masks.values())
    assert kept == keep_count(20 * 30 + 30 * 5, 0.8)
    _train(student, pruning, 3)  # optimizer steps after the last update keep them masked
    for name, layer in variational_layers(student):
        keep = pruning.masks[name]
        theta, log_sigma2 = layer.variational_parameters()
        assert torch.all(theta[~keep] == 0)
        assert torch.all(log_sigma2[~keep] == masked_log_sigma2(layer.threshold, layer.log_alpha_clip))
        assert torch.all(layer.log_alpha()[~keep] > layer.threshold), "a masked unit would count as kept"
        assert int(layer.keep_mask().sum()) <= int(keep.sum())
    moved = [n for n, p in student.named_parameters() if not torch.equal(p, before[n])]
    assert {n for n in moved if "log_sigma2" in n} and {n for n in moved if n.endswith("weight")}, "weights and log sigma^2 must train"


def test_the_final_cut_never_keeps_a_masked_unit():
    student = _student(1)
    pruning = GradualLogAlphaPruning(student, target=0.7, ramp_steps=10, update_every=5)
    _train(student, pruning, 10, on_schedule=True)
    assert pruning.sparsity == pytest.approx(0.7)
    scores = pruning.scores()
    assert all(torch.all(scores[n][~m] == -float("inf")) for n, m in pruning.masks.items())
    final = global_keep_masks(scores, 0.7)
    assert all(torch.equal(final[n], pruning.masks[n]) for n in final)


def test_checkpointed_masks_restore():
    student = _student(2)
    pruning = GradualLogAlphaPruning(student, target=0.5, ramp_steps=5, update_every=5)
    _train(student, pruning, 5, on_schedule=True)
    other = GradualLogAlphaPruning(student, target=0.5, ramp_steps=5)
    other.load_state_dict(pruning.state_dict())
    assert all(torch.equal(other.masks[n], pruning.masks[n]) for n in pruning.masks)
    assert other.sparsity == pruning.sparsity > 0
    before = {n: m.clone() for n, m in other.masks.items()}
    other.update(1)  # an earlier point of the schedule never unmasks
    assert all(torch.equal(other.masks[n], before[n]) for n in before)


@pytest.fixture(scope="module")
def gradual_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gradual") / "run"
    assert main(["compress", *GRADUAL, "--out", str(out)]) == 0
    return out


def test_compress_reaches_the_target_inside_the_variational_phase(gradual_run):
    report = json.loads((gradual_run / "report.json").read_text())
    assert report["config"]["prune_schedule"] == "gradual"
    phases = report["phases"]
    assert phases["variational"]["nnz"] <= keep_count(UNITS, 0.9)  # masked before the cut
    assert phases["pruned"]["nnz"] == phases["finetune"]["nnz"] == report["student"]["nnz"] == keep_count(UNITS, 0.9)
    assert all("kl_scale" not in record for record in report["history"]["student"]), "no KL controller with the gradual schedule"
    sparsity = [record["sparsity"] for record in report["history"]["student"]]
    assert sparsity == sorted(sparsity) and sparsity[0] > 0.0  # rises during the phase


def test_resume_in_the_variational_phase_gives_the_same_student(tmp_path, monkeypatch, gradual_run):
    calls = {"student": 0}
    original = fit_module.train_one_epoch

    def interrupted(*args, **kwargs):
        if kwargs.get("phase") == "student":
            calls["student"] += 1
            if calls["student"] == 3:  # after two of the four variational epochs, masks half-way
                raise KeyboardInterrupt
        return original(*args, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(fit_module, "train_one_epoch", interrupted)
    assert main(["compress", *GRADUAL, "--out", str(out)]) == 130
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["phase"] == "student" and checkpoint["gradual_pruning"]["masks"] is not None
    monkeypatch.setattr(fit_module, "train_one_epoch", original)
    assert main(["compress", *GRADUAL, "--out", str(out), "--resume"]) == 0
    resumed = torch.load(out / "student.pt", weights_only=True)
    uninterrupted = torch.load(gradual_run / "student.pt", weights_only=True)
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


@pytest.mark.parametrize(
    "changes, message",
    [(dict(prune_schedule="cubic"), "prune_schedule must be one of gradual, end"), (dict(prune_ramp=0.0), "prune_ramp"), (dict(prune_ramp=1.5), "prune_ramp")],
)
def test_bad_schedule_settings_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        CompressSettings(**changes)


def test_bad_schedule_on_the_command_line_exits_2(tmp_path, capsys):
    assert main(["compress", *GRADUAL, "--prune-schedule", "sometimes", "--out", str(tmp_path / "x")]) == 2
    assert "prune_schedule" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_study_rows_record_the_schedule_only_when_it_is_not_the_old_one():
    assert CompressSettings().prune_schedule == ADDED_SETTINGS["prune_schedule"]
    assert CompressSettings().prune_ramp == ADDED_SETTINGS["prune_ramp"]


def test_python_api_with_the_users_modules_reaches_the_target_gradually():
    import vs_plugin
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    x = torch.randn(256, 16)
    y = x[:, :4].argmax(1)  # learnable: the teacher is not at chance
    teacher = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    student = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 4))
    start = {n: p.detach().clone() for n, p in student.named_parameters()}
    model, report = vs_plugin.compress(
        teacher, student, TensorDataset(x, y), TensorDataset(x[:64], y[:64]), train_teacher=True, teacher_epochs=1,
        epochs=8, batch_size=32, kl_warmup_epochs=2, target_sparsity=0.75, prune_schedule="gradual",
    )
    assert report["config"]["prune_schedule"] == "gradual"
    assert report["student"]["nnz"] == keep_count(16 * 24 + 24 * 4, 0.75)
    assert report["phases"]["variational"]["sparsity"] > 0.5  # masked during the phase, not only at the cut
    assert any(not torch.equal(p, start[n]) for n, p in model.named_parameters() if n in start)
