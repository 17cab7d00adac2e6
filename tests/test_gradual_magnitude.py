"""Gradual magnitude pruning with KD as a ``vs-plugin compare`` row: exact target, cubic schedule, same budget."""

import copy
import csv

import pytest
import yaml

from vs_plugin.cli.main import main
from vs_plugin.compare.config import MethodEntry
from vs_plugin.compare.gradual_magnitude import GradualMagnitudeMethod, selected_layers
from vs_plugin.compare.registry import method_names, register_method, unregister_method
from vs_plugin.errors import ConfigError
from vs_plugin.pruning import keep_count

CONFIG = {
    "dataset": "digits", "teacher": "mlp:in-64-out", "student": "mlp:in-32-out", "teacher_epochs": 2,
    "dense_student_epochs": 2, "epochs": 3, "batch_size": 64, "targets": [0.9], "device": "cpu",
    "methods": [{"name": "gradual_magnitude", "config_list": [{"op_types": ["Linear"]}], "options": {"prune_every_steps": 5}}],
}


@pytest.fixture
def registered():
    installed = "gradual_magnitude" in method_names()
    if not installed:  # an editable install made before the entry point existed
        register_method("gradual_magnitude", GradualMagnitudeMethod, "test")
    yield
    if not installed:
        unregister_method("gradual_magnitude")


def test_compare_row_lands_exactly_on_the_target_and_learns(tmp_path, registered):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    assert main(["compare", "--config", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    with open(tmp_path / "out" / "summary.csv", newline="") as handle:
        rows = {r["label"]: r for r in csv.DictReader(handle)}
    row = rows["gradual_magnitude @ 0.9"]
    assert int(row["nnz"]) == keep_count(64 * 32 + 32 * 10, 0.9)
    assert float(row["accuracy"]) > 0.5  # ten classes: far above chance
    assert row["near_chance"] == "False"


def test_selection_and_options_are_checked():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    entry = MethodEntry("gradual_magnitude", "gm", ({"op_types": ["Linear"], "exclude_op_names": ["2"]},), None, {})
    assert selected_layers(model, entry) == ("0",)
    method = GradualMagnitudeMethod()
    with pytest.raises(ConfigError, match="sparse_ratio"):
        selected_layers(model, MethodEntry("gradual_magnitude", "gm", ({"op_types": ["Linear"], "sparse_ratio": 0.5},), None, {}))
    for options, message in (({"ramp_fraction": 0}, "ramp_fraction"), ({"prune_every_steps": 0}, "prune_every_steps"),
                             ({"floor": 1}, "floor"), ({"lr": 1}, "unknown option")):
        with pytest.raises(ConfigError, match=message):
            method.plan(MethodEntry("gradual_magnitude", "gm", ({"op_types": ["Linear"]},), None, options), (0.5,))
    with pytest.raises(ConfigError, match="selects no layer"):
        method.check_student(MethodEntry("gradual_magnitude", "gm", ({"op_types": ["Conv2d"]},), None, {}), model)


def test_teacher_runs_once_per_sample_not_once_per_step():
    """The baselines' CE + KD training reads the teacher's logits from a cache computed once for
    all methods (a VGG-like teacher every step would cost the LeNet-5 study most of its time)."""
    import torch
    import torch.nn as nn
    from torch.utils.data import TensorDataset

    from vs_plugin.compare.method import MethodContext, TrainingBudget
    from vs_plugin.data.loaders import InMemoryLoader

    class CountingTeacher(nn.Linear):
        calls = 0

        def forward(self, inputs):
            CountingTeacher.calls += 1
            return super().forward(inputs)

    torch.manual_seed(0)
    inputs, labels = torch.randn(96, 8), torch.randint(0, 3, (96,))
    loader = InMemoryLoader(TensorDataset(inputs, labels), 16, shuffle=True, seed=0)
    teacher = CountingTeacher(8, 3).eval().requires_grad_(False)
    student = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    budget = TrainingBudget(epochs=2, lr=1e-2, kd_weight=1.0, temperature=4.0, steps_per_epoch=len(loader))
    context = MethodContext(teacher=teacher, starting_student=student, student_is_trained=True, train_batches=loader,
                            test_batches=loader, num_train_samples=96, budget=budget, device=torch.device("cpu"))
    entry = MethodEntry("gradual_magnitude", "gm", ({"op_types": ["Linear"]},), None, {})
    outcome = GradualMagnitudeMethod().run(context, entry, 0.5)
    weights = sum(m.weight.numel() for m in outcome.model if isinstance(m, nn.Linear))
    zeros = sum(int((m.weight == 0).sum()) for m in outcome.model if isinstance(m, nn.Linear))
    assert zeros == weights - keep_count(weights, 0.5)
    context.finetune(copy.deepcopy(student), epochs=1)
    assert CountingTeacher.calls == 1  # 96 samples in one cache batch; 2 + 1 epochs x 6 steps without it
