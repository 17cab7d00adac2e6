"""NNI masks -> a physically smaller model (apply_masks), consistent across coupled layers."""

import copy

import pytest
import torch
import torch.nn as nn
from nni.compression.pruning import L1NormPruner

from tp_support import SmallResNet, randomise_batchnorm
from vs_plugin.errors import ConfigError
from vs_plugin.integrations.torch_pruning import apply_masks, count_macs_params, masks_from_zero_channels, zero_shifts

EXAMPLE = torch.zeros(1, 3, 8, 8)
INPUTS = torch.randn(4, 3, 8, 8)


def nni_masks(model: nn.Module, pruner_class, config_list: list) -> dict:
    """The masks an NNI 3.0 pruner computes, and the model unwrapped again (weights unmasked)."""
    pruner = pruner_class(model, config_list)
    _, masks = pruner.compress()
    pruner.unwrap_model()
    return {name: {k: v.detach().clone() for k, v in targets.items() if v is not None} for name, targets in masks.items()}


def masked_reference(model: nn.Module, masks: dict) -> nn.Module:
    reference = copy.deepcopy(model)
    with torch.no_grad():
        for name, targets in masks.items():
            module = reference.get_submodule(name)
            for target, mask in targets.items():
                getattr(module, target).mul_(mask)
    return reference.eval()


def test_l1_norm_masks_become_a_smaller_model_equal_to_the_masked_one():
    torch.manual_seed(0)
    model = SmallResNet().eval()
    randomise_batchnorm(model)
    # Dependency-aware: coupled layers share their masks, so whole coupled channels go.
    config = [{"op_names": ["conv3", "shortcut.0"], "sparse_ratio": 0.5, "dependency_group_id": 1},
              {"op_names": ["conv1", "conv2"], "sparse_ratio": 0.5, "dependency_group_id": 2}]
    masks = nni_masks(model, L1NormPruner, config)
    reference = masked_reference(model, masks)
    macs_before, params_before = count_macs_params(model, EXAMPLE)
    removal = apply_masks(model, masks, EXAMPLE)
    assert model.conv3.out_channels == 8 and model.shortcut[0].out_channels == 8 and model.head.in_features == 8
    assert model.conv1.out_channels == 8 and model.conv2.out_channels == 8
    macs_after, params_after = count_macs_params(model, EXAMPLE)
    assert macs_after < macs_before and params_after < params_before
    zero_shifts(reference, removal.removed)
    with torch.no_grad():
        assert torch.allclose(model(INPUTS), reference(INPUTS), atol=1e-5)


def test_channels_masked_in_only_one_coupled_layer_are_kept():
    model = SmallResNet().eval()
    conv3 = torch.ones_like(model.conv3.weight)
    conv3[:4] = 0
    removal = apply_masks(model, {"conv3": conv3}, EXAMPLE)
    assert removal.plan == [] and model.conv3.out_channels == 16  # the shortcut still writes them


def test_batchnorm_masks_as_slim_makes_them_remove_channels():
    torch.manual_seed(0)
    model = SmallResNet().eval()
    randomise_batchnorm(model)
    masks = {"bn1": {"weight": torch.tensor([0.0] * 4 + [1.0] * 12), "bias": torch.tensor([0.0] * 4 + [1.0] * 12)},
             "bn2": {"weight": torch.tensor([0.0] * 4 + [1.0] * 12), "bias": torch.tensor([0.0] * 4 + [1.0] * 12)}}
    reference = masked_reference(model, masks)
    removal = apply_masks(model, masks, EXAMPLE)
    assert model.conv1.out_channels == 12 and model.bn2.num_features == 12 and model.conv3.in_channels == 12
    zero_shifts(reference, removal.removed)
    with torch.no_grad():
        assert torch.allclose(model(INPUTS), reference(INPUTS), atol=1e-5)


def test_zero_channels_of_a_finalized_channel_student_are_removed():
    model = SmallResNet().eval()
    with torch.no_grad():
        model.stem[0].weight[:3] = 0
        model.stem[0].bias[:3] = 0
    masks = masks_from_zero_channels(model)
    assert list(masks) == ["stem.0"] and masks["stem.0"].tolist() == [False] * 3 + [True] * 5
    apply_masks(model, masks, EXAMPLE)
    assert model.stem[0].out_channels == 5


def test_bad_masks_are_clear_errors():
    model = SmallResNet()
    with pytest.raises(ConfigError, match="does not have"):
        apply_masks(model, {"nope": torch.ones(1)}, EXAMPLE)
    with pytest.raises(ConfigError, match="fits neither"):
        apply_masks(model, {"conv1": torch.ones(3, 3)}, EXAMPLE)
