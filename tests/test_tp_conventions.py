"""torch-pruning users' idioms (issue 12, items 2-4): gates kept consistent by tp's own pruners,
MACs seen through gates, loud VariationalImportance misuse, NNI's None masks, tp's constructor
arguments, modules in ignored_layers and tp's pruning_history() in save_pruned."""

import copy

import pytest
import torch
import torch_pruning as tp

from tp_support import SmallResNet
from vs_plugin import ObjectiveConfig, VariationalConfig, finalize, variationalize
from vs_plugin.errors import ConfigError
from vs_plugin.integrations.torch_pruning import (
    PruneConfig, VariationalImportance, VariationalStudentPruner, apply_masks, gate_pruners, load_pruned, save_pruned,
)
from vs_plugin.layers import ChannelGateLayer

EXAMPLE = torch.zeros(1, 3, 8, 8)


def gated() -> SmallResNet:
    torch.manual_seed(0)
    return variationalize(SmallResNet(), VariationalConfig(granularity="channel"))


def test_count_ops_and_params_sees_through_gates():
    plain = SmallResNet()
    model = variationalize(copy.deepcopy(plain), VariationalConfig(granularity="channel"))
    macs, params = tp.utils.count_ops_and_params(model, EXAMPLE)
    plain_macs, plain_params = tp.utils.count_ops_and_params(plain, EXAMPLE)
    gate_params = sum(m.gate_mu.numel() * 2 for m in model.modules() if isinstance(m, ChannelGateLayer))
    assert (macs, params) == (plain_macs, plain_params + gate_params)


def test_tps_own_meta_pruner_keeps_gates_consistent():
    model = gated()
    pruner = tp.pruner.MetaPruner(model, EXAMPLE, importance=VariationalImportance(), pruning_ratio=0.5,
                                  ignored_layers=[model.head], customized_pruners=gate_pruners())
    pruner.step()
    assert model.conv1.out_channels == 8
    for m in model.modules():
        if isinstance(m, ChannelGateLayer):
            assert m.gate_mu.numel() == m.gate_log_sigma2.numel() == m.weight.shape[0]
    model.train()
    model(torch.randn(2, 3, 8, 8)).sum().backward()


def test_variational_importance_refuses_unregistered_gates_and_gateless_models():
    model = gated()
    with pytest.raises(ConfigError, match="customized_pruners=gate_pruners"):
        tp.pruner.MetaPruner(model, EXAMPLE, importance=VariationalImportance(), pruning_ratio=0.5, ignored_layers=[model.head]).step()
    plain = SmallResNet()
    with pytest.raises(ConfigError, match="has none"):
        tp.pruner.MetaPruner(plain, EXAMPLE, importance=VariationalImportance(), pruning_ratio=0.5, ignored_layers=[plain.head]).step()


def test_apply_masks_accepts_nnis_none_for_a_missing_bias():
    model = SmallResNet().eval()
    mask = torch.ones_like(model.stem[0].weight)
    mask[:4] = 0
    removal = apply_masks(model, {"stem.0": {"weight": mask, "bias": None}}, EXAMPLE)
    assert model.stem[0].out_channels == 4 and removal.removed["stem.0"] == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="tensor or None"):
        apply_masks(SmallResNet(), {"conv1": {"weight": "x"}}, EXAMPLE)


def test_tp_constructor_arguments_and_modules_in_ignored_layers():
    model = gated()
    pruner = VariationalStudentPruner(model, EXAMPLE, num_train_samples=10, objective=ObjectiveConfig(kd_weight=0.0),
                                      pruning_ratio=0.5, iterative_steps=2, round_to=4, max_pruning_ratio=0.8,
                                      global_pruning=False, ignored_layers=[model.shortcut[0]])
    config = pruner.prune_config
    assert (config.by, config.pruning_ratio, config.iterative_steps, config.round_to, config.max_layer_ratio, config.global_pruning) == (
        "ratio", 0.5, 2, 4, 0.8, False)
    assert "shortcut.0" in pruner.ignored_layer_names
    pruner.step()
    assert all(m.out_channels % 4 == 0 for m in (model.conv1, model.stem[0]))
    with pytest.raises(ConfigError, match="not a module of this model"):
        VariationalStudentPruner(gated(), EXAMPLE, num_train_samples=10, objective=ObjectiveConfig(kd_weight=0.0),
                                 ignored_layers=[torch.nn.Linear(2, 2)])
    with pytest.raises(ConfigError, match="contradict"):
        VariationalStudentPruner(gated(), EXAMPLE, num_train_samples=10, objective=ObjectiveConfig(kd_weight=0.0),
                                 prune=PruneConfig(by="ratio", pruning_ratio=0.3), pruning_ratio=0.5)
    with pytest.raises(ConfigError, match="prune_num_heads"):
        VariationalStudentPruner(gated(), EXAMPLE, num_train_samples=10, objective=ObjectiveConfig(kd_weight=0.0), prune_num_heads=True)


def test_save_pruned_takes_tps_pruning_history(tmp_path):
    model = gated()
    pruner = tp.pruner.MetaPruner(model, EXAMPLE, importance=VariationalImportance(), pruning_ratio=0.5,
                                  ignored_layers=[model.head], customized_pruners=gate_pruners())
    pruner.step()
    model.eval()
    finalize(model)
    inputs = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(inputs)
    save_pruned(model, tmp_path / "p.json", pruner.pruning_history(), input_shape=(3, 8, 8), num_classes=4)
    loaded = load_pruned(tmp_path / "p.json", SmallResNet())
    with torch.no_grad():
        assert torch.allclose(loaded(inputs), expected, atol=1e-5)


def test_compare_config_errors_name_the_method():
    from vs_plugin.compare.config import MethodEntry
    from vs_plugin.integrations.nni.methods.variational import VariationalStudentMethod

    entry = MethodEntry("variational_student", "my-vs", ({"op_names": ["no_such_layer"]},), None, {})
    with pytest.raises(ConfigError, match="method 'my-vs' \\(variational_student\\)"):
        VariationalStudentMethod().check_student(entry, SmallResNet())


def test_list_layers_names_the_head_for_config_lists(capsys):
    from vs_plugin.cli.main import main
    from vs_plugin.variationalize import layer_names

    rows = layer_names(SmallResNet())
    assert ("head", "Linear", "head") in rows and ("stem.0", "Conv2d", "stem") in rows
    assert main(["list", "layers", "--model", "timm:resnet10t"]) == 0
    assert "fc\tLinear\thead" in capsys.readouterr().out
    assert main(["list", "layers"]) == 2
