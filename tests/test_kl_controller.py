"""The KL-weight controller: its schedule and updates, the objective's scaled KL, and a compress run
that tracks the target through the variational phase and resumes with the controller's state."""

import json
import math

import pytest
import torch
import torch.nn as nn

import vs_plugin.training.fit as fit_module
from vs_plugin import VariationalConfig, variationalize
from vs_plugin.cli.main import main
from vs_plugin.errors import ConfigError
from vs_plugin.losses.kl_controller import KLController, threshold_sparsity
from vs_plugin.losses.objective import ObjectiveConfig, VariationalStudentObjective
from vs_plugin.pruning import keep_count


def _student_at_sparsity(share: float) -> nn.Module:
    """A variational Linear(10, 10) with ``share`` of its weights at log alpha 8, the rest at -8."""
    student = variationalize(nn.Sequential(nn.Linear(10, 10)), VariationalConfig())
    layer = student[0]
    theta, log_sigma2 = layer.variational_parameters()
    with torch.no_grad():
        theta.fill_(1.0)
        log_sigma2.fill_(-8.0)
        log_sigma2.view(-1)[: round(share * theta.numel())] = 8.0
    return student


def test_the_schedule_is_a_cubic_ramp_to_the_target_then_the_target():
    controller = KLController(target=0.9, total_steps=300, ramp=2 / 3)
    assert controller.scheduled_sparsity(0) == 0.0
    assert controller.scheduled_sparsity(100) == pytest.approx(0.9 * (1 - 0.5**3))
    assert controller.scheduled_sparsity(200) == pytest.approx(0.9)
    assert controller.scheduled_sparsity(300) == pytest.approx(0.9)
    assert controller.interval == 1  # 300 // 200
    assert KLController(target=0.9, total_steps=4000).interval == 20


def test_threshold_sparsity_counts_units_above_the_threshold():
    assert threshold_sparsity(_student_at_sparsity(0.3), 3.0) == pytest.approx(0.3)


def test_keeping_more_than_the_schedule_raises_the_kl_weight_by_at_most_exp_gain():
    controller = KLController(target=0.99, total_steps=10, ramp=0.1, gain=0.05)  # the target from step 1
    controller.observe(_student_at_sparsity(0.0))
    assert controller.scale == pytest.approx(math.exp(0.05))  # error clipped to 1
    controller.observe(_student_at_sparsity(0.98))
    assert controller.scale == pytest.approx(math.exp(0.05 + 0.05 * math.log(0.02 / 0.01)))


def test_keeping_less_than_the_schedule_lowers_it_at_once_below_the_users_weight():
    controller = KLController(target=0.5, total_steps=10, ramp=0.1, gain=0.05, log_scale=math.log(50.0))
    controller.observe(_student_at_sparsity(0.8))  # kept 20% where 50% is asked
    assert controller.scale < 1.0
    assert controller.scale == pytest.approx(math.exp(0.05 * math.log(0.2 / 0.5)))


def test_the_scale_stays_within_its_bounds_and_its_state_round_trips():
    controller = KLController(target=0.99, total_steps=10, ramp=0.1, gain=5.0, max_scale=100.0)
    student = _student_at_sparsity(0.0)
    for _ in range(5):
        controller.observe(student)
    assert controller.scale == pytest.approx(100.0)
    copy = KLController(target=0.99, total_steps=10)
    copy.load_state_dict(controller.state_dict())
    assert (copy.scale, copy.step) == (pytest.approx(100.0), 5)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(target=1.0), "target sparsity"),
        (dict(total_steps=0), "total_steps"),
        (dict(gain=0.0), "gain"),
        (dict(ramp=0.0), "ramp"),
        (dict(min_scale=2.0), "min_scale"),
    ],
)
def test_bad_controller_settings_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        KLController(**{"target": 0.9, "total_steps": 10, **changes})


def test_the_objective_scales_its_kl_weight_by_the_controller():
    student = variationalize(nn.Sequential(nn.Linear(4, 3)), VariationalConfig())
    config = ObjectiveConfig(kd_weight=0.0, kl_weight=2.0)
    controller = KLController(target=0.9, total_steps=100, log_scale=math.log(3.0))
    plain = VariationalStudentObjective(student, None, config, num_train_samples=10)
    scaled = VariationalStudentObjective(student, None, config, num_train_samples=10, kl_controller=controller)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    with torch.no_grad():
        logits = student(x)
        a, b = plain(logits, None, y, beta=1.0), scaled(logits, None, y, beta=1.0)
        penalties = float(scaled.penalty()), float(plain.penalty())
    assert float(b["loss"] - b["ce"]) == pytest.approx(3.0 * float(a["loss"] - a["ce"]), rel=1e-5)
    assert scaled.kl_weight == pytest.approx(6.0)
    assert penalties[0] == pytest.approx(3.0 * penalties[1], rel=1e-5)
    assert controller.step == 0  # evaluation calls (no gradients) are not training steps


RUN = [
    "--teacher", "mlp:in-64-out", "--student", "mlp:in-32-out", "--dataset", "digits", "--teacher-epochs", "2",
    "--epochs", "4", "--recipe", "three-phase", "--target-sparsity", "0.9", "--kl-controller", "--quiet",
]


@pytest.fixture(scope="module")
def controlled_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("controlled") / "run"
    assert main(["compress", *RUN, "--out", str(out)]) == 0
    return out


def test_a_run_with_a_target_adapts_the_kl_weight_and_lands_on_the_target(controlled_run):
    report = json.loads((controlled_run / "report.json").read_text())
    scales = [epoch["kl_scale"] for epoch in report["history"]["student"]]
    assert len(scales) == 2 and all(s != 1.0 for s in scales)
    assert report["student"]["nnz"] == keep_count(64 * 32 + 32 * 10, 0.9)
    assert report["config"]["kl_controller"] is True


def test_resume_in_the_variational_phase_restores_the_controller(tmp_path, monkeypatch, controlled_run):
    original = fit_module.train_one_epoch

    def interrupted(*args, **kwargs):
        if kwargs.get("phase") == "student" and kwargs.get("epoch") == 1:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(fit_module, "train_one_epoch", interrupted)
    assert main(["compress", *RUN, "--out", str(out)]) == 130
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["phase"] == "student" and checkpoint["kl_controller"]["step"] > 0
    monkeypatch.setattr(fit_module, "train_one_epoch", original)
    assert main(["compress", *RUN, "--out", str(out), "--resume"]) == 0
    resumed = torch.load(out / "student.pt", weights_only=True)
    uninterrupted = torch.load(controlled_run / "student.pt", weights_only=True)
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
