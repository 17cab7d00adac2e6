"""variationalize / finalize on plain, timm and torchvision models: round trips and selection."""

import pytest
import timm
import torch
import torch.nn as nn
import torchvision

from vs_plugin import VariationalConfig, finalize, variational_layers, variationalize
from vs_plugin.errors import ConfigError
from vs_plugin.layers import ChannelGateLayer, SparseVDLayer, VariationalLayer
from vs_plugin.variationalize import head_name, select_layers, stem_name


def timm_resnet():
    return timm.create_model("resnet18", pretrained=False, num_classes=5, in_chans=1)


def timm_vit():
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, in_chans=1, img_size=32, patch_size=8)


def torchvision_resnet():
    return torchvision.models.resnet18(weights=None, num_classes=5)


def torchvision_mobilenet():
    return torchvision.models.mobilenet_v2(weights=None, num_classes=5)


ARCHITECTURES = {
    "timm:resnet18": (timm_resnet, (2, 1, 32, 32)),
    "timm:vit_tiny": (timm_vit, (2, 1, 32, 32)),
    "torchvision:resnet18": (torchvision_resnet, (2, 3, 32, 32)),
    "torchvision:mobilenet_v2": (torchvision_mobilenet, (2, 3, 32, 32)),
}


@pytest.mark.parametrize("granularity", ["weight", "channel"])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_round_trip_loads_into_original_architecture(name, granularity):
    factory, shape = ARCHITECTURES[name]
    torch.manual_seed(0)
    model = factory().eval()
    x = torch.randn(*shape)
    variationalize(model, VariationalConfig(granularity=granularity, init_log_sigma2=-6.0))
    layers = dict(variational_layers(model))
    assert layers, "some layers must be converted"
    expected_type = SparseVDLayer if granularity == "weight" else ChannelGateLayer
    assert all(isinstance(layer, expected_type) for layer in layers.values())
    # Prune something so the round trip carries real zeros.
    with torch.no_grad():
        for layer in layers.values():
            params = layer.log_sigma2 if granularity == "weight" else layer.gate_log_sigma2
            params.view(-1)[::3] = 6.0
    model.train()
    out = model(x)
    out.sum().backward()
    assert all(
        (layer.log_sigma2.grad if granularity == "weight" else layer.gate_log_sigma2.grad) is not None
        for layer in layers.values()
    )
    model.eval()
    with torch.no_grad():
        variational_out = model(x)
    finalize(model)
    assert not any(isinstance(m, VariationalLayer) for m in model.modules())
    fresh = factory().eval()
    fresh.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(fresh(x), variational_out, atol=1e-4, rtol=1e-4)
    zeros = sum(int((fresh.get_submodule(n).weight == 0).sum()) for n in layers)
    assert zeros > 0


def test_subclasses_with_another_forward_are_left_plain():
    mha = nn.MultiheadAttention(8, 2)
    model = nn.Sequential(nn.Linear(8, 8))
    model.add_module("attn", mha)
    with pytest.warns(UserWarning, match="out_proj"):
        names = select_layers(model, VariationalConfig())
    assert names == ["0"]


def test_include_exclude_head_and_stem():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(16, 8), nn.Linear(8, 3))
    assert stem_name(model) == "0" and head_name(model) == "5"
    assert select_layers(model, VariationalConfig()) == ["0", "2", "4", "5"]
    assert select_layers(model, VariationalConfig(head=False, stem=False)) == ["2", "4"]
    assert select_layers(model, VariationalConfig(include=("2", "4"))) == ["2", "4"]
    assert select_layers(model, VariationalConfig(exclude=("[02]",))) == ["4", "5"]
    assert select_layers(model, VariationalConfig(layer_types=("Linear",))) == ["4", "5"]
    # Channel mode never gates the head: its outputs are the class logits.
    assert select_layers(model, VariationalConfig(granularity="channel")) == ["0", "2", "4"]


def test_timm_head_comes_from_get_classifier():
    model = timm_resnet()
    assert head_name(model) == "fc"
    assert stem_name(model) == "conv1"
    assert head_name(timm_vit()) == "head"


@pytest.mark.parametrize(
    "config, message",
    [
        (dict(granularity="block"), "granularity"),
        (dict(kl="laplace"), "sparse_vd"),
        (dict(threshold=9.0), "threshold"),
        (dict(layer_types=("Conv3d",)), "Conv1d"),
    ],
)
def test_bad_configs_are_clear_errors(config, message):
    with pytest.raises(ConfigError, match=message):
        VariationalConfig(**config)


def test_pattern_matching_nothing_and_nothing_selected_are_errors():
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="matches no module"):
        variationalize(model, VariationalConfig(include=("encoder.*",)))
    with pytest.raises(ConfigError, match="no layer"):
        variationalize(nn.Sequential(nn.ReLU()))


def test_variationalize_is_idempotent_and_keeps_device_dtype():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).double()
    variationalize(model)
    first = [id(m) for _, m in variational_layers(model)]
    variationalize(model)
    assert [id(m) for _, m in variational_layers(model)] == first
    assert all(layer.log_sigma2.dtype == torch.float64 for _, layer in variational_layers(model))
