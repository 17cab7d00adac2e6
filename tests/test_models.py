"""Models by name: built-ins, timm, torchvision, and local weights."""

import pytest
import torch
import torch.nn as nn

from vs_plugin.errors import CheckpointError, UnknownNameError, VSPluginError
from vs_plugin.models import InputSpec, build_model, load_weights
from vs_plugin.models.builtin import MLP

DIGITS = InputSpec(1, 8, 8, 10)
FASHION = InputSpec(1, 28, 28, 10)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_paper_mlps():
    teacher = build_model("mlp:784-1200-1200-10", FASHION)
    student = build_model("mlp:784-500-50-10", FASHION)
    assert [m.out_features for m in teacher if isinstance(m, nn.Linear)] == [1200, 1200, 10]
    assert n_params(teacher) == 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10
    assert n_params(student) == 784 * 500 + 500 + 500 * 50 + 50 + 50 * 10 + 10
    assert build_model("mlp:in-500-50-out", DIGITS)(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert isinstance(build_model("lenet-300-100", FASHION), MLP)


@pytest.mark.parametrize("name", ["lenet5", "vgg-like:0.25", "vgg-like"])
@pytest.mark.parametrize("spec", [DIGITS, FASHION, InputSpec(3, 32, 32, 7)], ids=["digits", "fashion", "cifar"])
def test_builtin_cnns_follow_the_data(name, spec):
    model = build_model(name, spec).eval()
    assert model(torch.randn(2, spec.channels, spec.height, spec.width)).shape == (2, spec.num_classes)


def test_lenet5_is_the_caffe_variant_on_28px():
    model = build_model("lenet5", FASHION)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [20, 50]
    assert model.classifier[1].in_features == 800  # 50 x 4 x 4, as in LeNet-5-Caffe


@pytest.mark.parametrize("name", ["timm:resnet18", "timm:vit_tiny_patch16_224", "torchvision:resnet18", "torchvision:mobilenet_v2"])
def test_timm_and_torchvision_follow_channels_and_classes(name):
    spec = InputSpec(1, 32, 32, 4)
    model = build_model(name, spec).eval()
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)


@pytest.mark.parametrize(
    "name, message",
    [
        ("resnet9000", "unknown model"),
        ("timm:resnet9000", "did you mean"),
        ("torchvision:resnet9000", "unknown torchvision model"),
        ("mlp:784-100-10", "reads 784 inputs but the data has 64"),
        ("mlp:in-100-5", "5 outputs but the data has 10 classes"),
        ("mlp:in-x-out", "not a positive width"),
        ("vgg-like:wide", "width factor must be a number"),
    ],
)
def test_bad_model_names(name, message):
    with pytest.raises(VSPluginError, match=message):
        build_model(name, DIGITS)


def test_unknown_family_lists_known_ones():
    with pytest.raises(UnknownNameError) as error:
        build_model("resnet9000", DIGITS)
    assert "timm:<name>" in str(error.value) and "mlp:<widths>" in str(error.value)


def test_local_weights_round_trip_and_errors(tmp_path):
    model = build_model("mlp:in-16-out", DIGITS)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    other = build_model("mlp:in-16-out", DIGITS)
    load_weights(other, path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_weights(build_model("mlp:in-17-out", DIGITS), path)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="could not read"):
        load_weights(other, corrupt)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(other, tmp_path / "missing.pt")


def test_safetensors_weights(tmp_path):
    from safetensors.torch import save_file

    model = build_model("mlp:in-8-out", DIGITS)
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    other = load_weights(build_model("mlp:in-8-out", DIGITS), tmp_path / "w.safetensors")
    assert torch.equal(other[1].weight, model[1].weight)
