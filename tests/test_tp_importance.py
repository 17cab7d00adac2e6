"""Group scores of the torch-pruning integration: from gates (VariationalImportance), from keep
masks (MaskImportance), frozen (FrozenImportance)."""

import copy

import pytest
import torch

from tp_support import SmallResNet
from vs_plugin import VariationalConfig, variationalize
from vs_plugin.errors import ConfigError
from vs_plugin.integrations.torch_pruning import FrozenImportance, MaskImportance, VariationalImportance, build_pruner, snapshot_scores
from vs_plugin.integrations.torch_pruning.graph import module_names
from vs_plugin.integrations.torch_pruning.importance import OUT_CHANNEL_FUNCTIONS, group_key, ranked_groups, unclipped_log_alpha

EXAMPLE = torch.zeros(1, 3, 8, 8)


def gated_model():
    torch.manual_seed(0)
    model = variationalize(SmallResNet(), VariationalConfig(granularity="channel"))
    with torch.no_grad():
        for layer in (model.stem[0], model.conv1, model.conv2, model.conv3, model.shortcut[0]):
            layer.gate_log_sigma2.copy_(torch.linspace(-8, 4, layer.gate_mu.numel()) + torch.randn(layer.gate_mu.numel()))
    return model


def group_with(pruner, name):
    """The ranked group in which the layer called ``name`` loses output channels (root or not)."""
    module = pruner.model.get_submodule(name)
    return next(g for g in ranked_groups(pruner) if any(dep.target.module is module and dep.handler in OUT_CHANNEL_FUNCTIONS for dep, _ in g))


def test_scores_combine_coupled_layers_through_root_indices():
    model = gated_model()
    pruner = build_pruner(model, EXAMPLE, VariationalImportance())
    # The residual group couples conv3's and the shortcut's outputs: the conservative score of a
    # channel is the larger -log alpha, i.e. -min over the coupled layers.
    residual = group_with(pruner, "conv3")
    expected = -torch.minimum(unclipped_log_alpha(model.conv3), unclipped_log_alpha(model.shortcut[0])).detach()
    assert torch.allclose(VariationalImportance()(residual), expected)
    mean = -(unclipped_log_alpha(model.conv3) + unclipped_log_alpha(model.shortcut[0])).detach() / 2
    assert torch.allclose(VariationalImportance("mean")(residual), mean)
    # conv1 and the depthwise conv2 are coupled too.
    inner = group_with(pruner, "conv1")
    expected = -torch.minimum(unclipped_log_alpha(model.conv1), unclipped_log_alpha(model.conv2)).detach()
    assert torch.allclose(VariationalImportance()(inner), expected)


def test_ranking_is_unclipped_so_clipped_gates_do_not_tie():
    # min_init_log_alpha=None: the constant start, so clipped gates can be built on purpose.
    model = variationalize(SmallResNet(), VariationalConfig(granularity="channel", init_log_sigma2=-15.0, min_init_log_alpha=None))
    with torch.no_grad():
        model.stem[0].gate_mu.copy_(torch.linspace(0.5, 2.0, model.stem[0].gate_mu.numel()))
    assert torch.all(model.stem[0].log_alpha() == -8.0)  # the core's clip makes them all equal
    pruner = build_pruner(model, EXAMPLE, VariationalImportance())
    scores = VariationalImportance()(group_with(pruner, "stem.0"))
    assert len(set(scores.tolist())) == scores.numel()


def test_a_model_without_gates_is_refused_not_silently_kept():
    # Issue 12: scoring a plain model used to give every group None, so a pruner pruned nothing.
    pruner = build_pruner(SmallResNet(), EXAMPLE, VariationalImportance())
    with pytest.raises(ConfigError, match="has none"):
        VariationalImportance()(next(iter(ranked_groups(pruner))))


def test_unknown_reduction_is_an_error():
    with pytest.raises(ConfigError, match="reduction"):
        VariationalImportance("median")


def test_mask_importance_needs_every_producer_masked():
    model = SmallResNet()
    conv3 = torch.ones(16, dtype=torch.bool)
    conv3[:6] = False
    shortcut = torch.ones(16, dtype=torch.bool)
    shortcut[3:9] = False
    pruner = build_pruner(model, EXAMPLE, MaskImportance({model.conv3: conv3, model.shortcut[0]: shortcut}))
    residual = group_with(pruner, "conv3")
    alive = pruner.importance(residual)
    assert alive.tolist() == [1.0] * 3 + [0.0] * 3 + [1.0] * 10  # dead only where both are masked
    # A producer without a mask keeps its channels alive.
    pruner = build_pruner(model, EXAMPLE, MaskImportance({model.conv3: conv3}))
    residual = group_with(pruner, "conv3")
    assert torch.all(pruner.importance(residual) == 1)


def test_masked_batchnorm_kills_the_channel_of_its_producer():
    model = SmallResNet()
    bn = torch.ones(16, dtype=torch.bool)
    bn[:4] = False
    pruner = build_pruner(model, EXAMPLE, MaskImportance({model.bn1: bn}))
    # conv1 feeds bn1 but the depthwise conv2 (also a producer, unmasked) keeps them alive ...
    assert torch.all(pruner.importance(group_with(pruner, "conv1")) == 1)
    # ... unless bn2 is masked as well.
    pruner = build_pruner(model, EXAMPLE, MaskImportance({model.bn1: bn, model.bn2: bn}))
    assert pruner.importance(group_with(pruner, "conv1")).tolist() == [0.0] * 4 + [1.0] * 12


def test_frozen_scores_follow_layer_names_to_a_copy():
    model = gated_model()
    pruner = build_pruner(model, EXAMPLE, VariationalImportance())
    scores = snapshot_scores(pruner)
    copied = copy.deepcopy(model)
    other = build_pruner(copied, EXAMPLE, FrozenImportance(scores, module_names(copied)))
    names = module_names(copied)
    for group in ranked_groups(other):
        assert torch.equal(other.importance(group), scores[group_key(group, names)])
