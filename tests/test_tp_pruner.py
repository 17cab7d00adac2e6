"""VariationalStudentPruner: torch-pruning's regularising-pruner protocol, pruning by threshold,
ratio or MACs in one or several steps, the gates pruned with their weights."""

import copy

import pytest
import torch
import torch.nn as nn

from tp_support import SmallResNet, kill_positions, randomise_batchnorm
from vs_plugin import ObjectiveConfig, finalize, variationalize
from vs_plugin.errors import ConfigError
from vs_plugin.integrations.torch_pruning import PruneConfig, VariationalStudentPruner, count_macs_params, zero_shifts
from vs_plugin.layers.channel import ChannelGateLayer
from vs_plugin.losses import KLWarmup, variational_kl

EXAMPLE = torch.zeros(1, 3, 8, 8)
INPUTS = torch.randn(4, 3, 8, 8)


def make_pruner(prune: PruneConfig, **kwargs) -> VariationalStudentPruner:
    torch.manual_seed(0)
    teacher = SmallResNet().eval()
    randomise_batchnorm(teacher)
    student = copy.deepcopy(teacher)
    kwargs.setdefault("objective", ObjectiveConfig(kd_weight=0.0))
    return VariationalStudentPruner(student, EXAMPLE, num_train_samples=100, prune=prune, teacher=teacher, **kwargs)


def gates_match_weights(model: nn.Module) -> bool:
    return all(m.gate_mu.numel() == m.weight.shape[0] == m.gate_log_sigma2.numel() for m in model.modules() if isinstance(m, ChannelGateLayer))


def test_a_plain_model_is_made_channel_variational_and_the_head_stays_plain():
    pruner = make_pruner(PruneConfig())
    gated = [n for n, m in pruner.model.named_modules() if isinstance(m, ChannelGateLayer)]
    assert gated == ["stem.0", "conv1", "conv2", "conv3", "shortcut.0"]
    assert isinstance(pruner.model.head, nn.Linear) and not isinstance(pruner.model.head, ChannelGateLayer)


def test_regularize_adds_the_warmed_up_kl_gradient():
    pruner = make_pruner(PruneConfig(), objective=ObjectiveConfig(kd_weight=0.0, kl_weight=2.0), warmup=KLWarmup(end_step=4))
    model = pruner.model
    layer = model.conv1
    model.zero_grad()
    assert float(pruner.regularize()) == 0.0  # beta(0) = 0
    assert layer.gate_log_sigma2.grad is None or torch.all(layer.gate_log_sigma2.grad == 0)
    pruner.regularize()  # beta(1) = 0.25
    model.zero_grad()
    penalty = pruner.regularize()  # beta(2) = 0.5
    expected = torch.autograd.grad(2.0 * 0.5 * variational_kl(model) / 100, layer.gate_log_sigma2)[0]
    assert torch.allclose(layer.gate_log_sigma2.grad, expected)
    assert float(penalty) == pytest.approx(float(2.0 * 0.5 * variational_kl(model).detach() / 100))
    with pytest.raises(ConfigError, match="other than"):
        pruner.regularize(nn.Linear(2, 2))


def test_threshold_step_equals_the_masked_student_once_batchnorm_shifts_are_zeroed():
    pruner = make_pruner(PruneConfig(by="threshold"))
    model = pruner.model.eval()
    kill_positions(pruner, 0.5)
    masked = copy.deepcopy(model)
    macs_before, params_before = count_macs_params(model, EXAMPLE)
    pruner.step()
    step = pruner.steps[-1]
    assert model.conv1.out_channels == 8 and model.conv3.out_channels == 8 and model.stem[0].out_channels == 4
    assert gates_match_weights(model)
    with torch.no_grad():
        unshifted = masked(INPUTS)
        zero_shifts(masked, step.removed)
        assert torch.allclose(model(INPUTS), masked(INPUTS), atol=1e-5)
        assert not torch.allclose(model(INPUTS), unshifted, atol=1e-3)  # the shifts did matter
    macs_after, params_after = count_macs_params(model, EXAMPLE)
    assert macs_after < macs_before and params_after < params_before
    assert step.macs_before == macs_before and step.macs_after == macs_after
    assert pruner.pruning_history() == [item.to_json() for item in step.plan]


def test_ratio_global_and_per_layer():
    pruner = make_pruner(PruneConfig(by="ratio", pruning_ratio=0.5, global_pruning=False))
    pruner.step()
    model = pruner.model
    assert (model.stem[0].out_channels, model.conv1.out_channels, model.conv3.out_channels) == (4, 8, 8)
    pruner = make_pruner(PruneConfig(by="ratio", pruning_ratio=0.5))
    with torch.no_grad():  # gates of conv1/conv2 far worse than the rest: global ranking takes them first
        pruner.model.conv1.gate_log_sigma2.fill_(2.0)
        pruner.model.conv2.gate_log_sigma2.fill_(2.0)
    pruner.step()
    model = pruner.model
    total = 8 + 16 + 16  # positions of the three groups
    assert total - (model.stem[0].out_channels + model.conv1.out_channels + model.conv3.out_channels) == 20
    assert model.conv1.out_channels == 2  # 16 positions, at most 90% removed (max_layer_ratio)
    pruner = make_pruner(PruneConfig(by="ratio", pruning_ratio=0.5, layer_ratios={"conv1": 0.25}))
    pruner.step()
    assert pruner.model.conv1.out_channels == 12


def test_macs_target_is_met():
    pruner = make_pruner(PruneConfig(by="macs", target_macs_ratio=0.5))
    before = pruner.initial_macs
    pruner.step()
    after = count_macs_params(pruner.model, EXAMPLE)[0]
    assert 0.4 * before < after <= 0.5 * before
    assert pruner.steps[-1].macs_after == after


def test_several_steps_keep_training_with_the_pruned_gates():
    pruner = make_pruner(PruneConfig(by="ratio", pruning_ratio=0.5, iterative_steps=2, global_pruning=False))
    model = pruner.model.train()
    targets = torch.randint(0, 4, (4,))
    for _ in range(2):
        optimizer = torch.optim.Adam(pruner.parameter_groups(lr=1e-3, gate_lr=1e-2))
        assert optimizer.param_groups[1]["lr"] == 1e-2 and len(optimizer.param_groups[1]["params"]) == 10
        terms = pruner.objective(model(INPUTS), None, targets)
        optimizer.zero_grad()
        terms["loss"].backward()
        pruner.regularize()
        optimizer.step()
        pruner.step()
        assert gates_match_weights(model)
    assert model.conv1.out_channels == 8 and model.stem[0].out_channels == 4
    assert len(pruner.steps) == 2
    with pytest.warns(UserWarning, match="steps are done"):
        pruner.step()
    model(INPUTS).sum().backward()
    finalize(model)
    assert not any(isinstance(m, ChannelGateLayer) for m in model.modules())


def test_block_sparse_regulariser_follows_the_surviving_inputs():
    pruner = make_pruner(PruneConfig(by="ratio", pruning_ratio=0.5), objective=ObjectiveConfig(kd_weight=0.0, bsr_weight=0.1))
    before = float(pruner.bsr().detach())
    pruner.step()
    model = pruner.model
    for name, kept in pruner._kept_inputs.items():
        assert kept.numel() == model.get_submodule(name).weight.shape[1]
    assert 0 < float(pruner.bsr().detach()) < before
    model.zero_grad()
    pruner.regularize()
    assert model.conv3.weight.grad is not None


def test_invalid_uses_are_clear_errors():
    with pytest.raises(ConfigError, match="interactive"):
        make_pruner(PruneConfig()).step(interactive=True)
    with pytest.raises(ConfigError, match="granularity"):
        VariationalStudentPruner(variationalize(SmallResNet()), EXAMPLE, num_train_samples=10, objective=ObjectiveConfig(kd_weight=0.0))
    with pytest.raises(ConfigError, match="prune by"):
        PruneConfig(by="magic")
    with pytest.raises(ConfigError, match="layer_ratios"):
        PruneConfig(by="macs", layer_ratios={"conv1": 0.5})
    with pytest.raises(ConfigError, match="does not have"):
        make_pruner(PruneConfig(by="ratio", layer_ratios={"nope": 0.5})).step()
    with pytest.raises(ConfigError, match="cannot reach"):
        make_pruner(PruneConfig(by="macs", target_macs_ratio=0.01)).step()
