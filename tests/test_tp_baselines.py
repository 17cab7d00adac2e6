"""torch-pruning baselines at a matched MAC budget, and their registration as `vs-plugin compare`
methods (entry-point group vs_plugin.methods)."""

import copy
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from tp_support import SmallResNet, randomise_batchnorm
from vs_plugin import ObjectiveConfig
from vs_plugin.compare import ENTRY_POINT_GROUP, MethodContext, MethodEntry, TrainingBudget, get_method, method_names
from vs_plugin.data import make_loader
from vs_plugin.errors import ConfigError, UnknownNameError
from vs_plugin.integrations.torch_pruning import TP_BASELINES, count_macs_params, run_tp_baseline
from vs_plugin.integrations.torch_pruning.compare_methods import TP_GROUP_NORM, TP_MAGNITUDE, TP_TAYLOR, VS_STRUCTURED
from vs_plugin.integrations.torch_pruning.embedding import expand_to_original

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = torch.zeros(1, 3, 8, 8)
DEVICE = torch.device("cpu")


def data(n: int = 32):
    generator = torch.Generator().manual_seed(0)
    dataset = TensorDataset(torch.randn(n, 3, 8, 8, generator=generator), torch.randint(0, 4, (n,), generator=generator))
    return make_loader(dataset, 16, shuffle=True, seed=0), make_loader(dataset, 64, shuffle=False, seed=0)


def teacher_and_student():
    torch.manual_seed(0)
    teacher = SmallResNet().eval()
    randomise_batchnorm(teacher)
    return teacher, copy.deepcopy(teacher)


@pytest.mark.parametrize("method", sorted(TP_BASELINES))
def test_each_baseline_meets_the_mac_budget_and_trains_for_the_budget(method):
    teacher, student = teacher_and_student()
    train, test = data()
    dense, _ = count_macs_params(student, EXAMPLE)
    result = run_tp_baseline(method, student, teacher, train, EXAMPLE, target_macs_ratio=0.5, epochs=2, lr=1e-3,
                             objective=ObjectiveConfig(), device=DEVICE, test_loader=test, taylor_batches=2)
    macs, _ = count_macs_params(student, EXAMPLE)
    assert result.macs_before == dense and result.macs_after == macs
    assert 0.45 * dense <= macs <= 0.5 * dense
    assert sum(len(records) for records in result.history.values()) == 2  # the whole budget, no more
    assert 0.0 <= result.pruned_accuracy <= 1.0
    assert student(torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_unknown_baselines_are_errors():
    teacher, student = teacher_and_student()
    with pytest.raises(UnknownNameError, match="tp-magnitude"):
        run_tp_baseline("tp-random", student, teacher, data()[0], EXAMPLE, target_macs_ratio=0.5, epochs=1, lr=1e-3,
                        objective=ObjectiveConfig(), device=DEVICE)


def test_expanded_model_has_the_original_shapes_and_computes_the_same():
    teacher, student = teacher_and_student()
    original = copy.deepcopy(student)
    result = run_tp_baseline("tp-magnitude", student, teacher, data()[0], EXAMPLE, target_macs_ratio=0.5, epochs=0, lr=1e-3,
                             objective=ObjectiveConfig(), device=DEVICE)
    expanded = expand_to_original(original, student.eval(), result.plan, EXAMPLE).eval()
    assert {k: v.shape for k, v in expanded.state_dict().items()} == {k: v.shape for k, v in original.state_dict().items()}
    zero_rows = (expanded.conv1.weight.flatten(1).abs().sum(1) == 0).sum()
    assert zero_rows == 16 - student.conv1.out_channels
    inputs = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(expanded(inputs), student(inputs), atol=1e-5)


def context(epochs: int = 1) -> MethodContext:
    teacher, student = teacher_and_student()
    train, test = data()
    budget = TrainingBudget(epochs=epochs, lr=1e-3, kd_weight=1.0, temperature=4.0, steps_per_epoch=len(train))
    return MethodContext(teacher=teacher, starting_student=student, student_is_trained=True, train_batches=train,
                         test_batches=test, num_train_samples=32, budget=budget, device=DEVICE)


COMPARE_METHODS = {"tp-magnitude": TP_MAGNITUDE, "tp-taylor": TP_TAYLOR, "tp-group-norm": TP_GROUP_NORM, "vs-structured": VS_STRUCTURED}


def test_declared_in_the_compare_entry_point_group():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][ENTRY_POINT_GROUP]
    for name, method in COMPARE_METHODS.items():
        assert EntryPoint(name, declared[name], ENTRY_POINT_GROUP).load() is method
    assert TP_GROUP_NORM.plan(MethodEntry("tp-group-norm", "gn"), (0.5,)) == (0.5,)
    with pytest.raises(ConfigError, match="config_list"):
        TP_GROUP_NORM.plan(MethodEntry("tp-group-norm", "gn", config_list=({"op_types": ["Conv2d"]},)), (0.5,))
    with pytest.raises(ConfigError, match="unknown option"):
        TP_GROUP_NORM.plan(MethodEntry("tp-group-norm", "gn", options={"taylor_batches": 3}), (0.5,))


def test_found_by_name_when_installed():
    if "tp-magnitude" not in method_names():
        pytest.skip("vs-plugin's entry points are not installed in this environment (pip install -e .)")
    for name, method in COMPARE_METHODS.items():
        assert get_method(name) is method


@pytest.mark.parametrize("name", ["tp-taylor", "vs-structured"])
def test_compare_methods_return_the_pruned_model_in_the_original_shapes(name):
    ctx = context()
    method = COMPARE_METHODS[name]
    entry = MethodEntry(name, name, options={"taylor_batches": 1} if name == "tp-taylor" else {})
    outcome = method.run(ctx, entry, 0.5)
    assert outcome.target == 0.5
    assert {k: v.shape for k, v in outcome.model.state_dict().items()} == {k: v.shape for k, v in ctx.starting_student.state_dict().items()}
    details = outcome.details
    assert details["macs_after"] <= 0.5 * details["macs_before"] and details["params_after"] < details["params_before"]
    weights = outcome.model.conv1.weight.flatten(1).abs().sum(1)
    assert (weights == 0).any() or (outcome.model.stem[0].weight.flatten(1).abs().sum(1) == 0).any()
