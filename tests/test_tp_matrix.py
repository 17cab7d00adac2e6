"""Architecture matrix of the structured path (issue 12, item 6): timm and torchvision families at
small inputs through variationalize (channel gates) -> a few training steps (the gates' log alpha
must move) -> prune to 50% of the MACs -> forward/backward -> save/load. Families the path does
not support must be refused within 30 s with a ModelError that says so.

A fast subset runs by default; the rest is marked slow (``pytest -m slow tests/test_tp_matrix.py``).
The verified and refused lists are mirrored in docs/torch-pruning.md.
"""

import os
import time

import pytest
import timm
import torch
import torchvision

from vs_plugin import ObjectiveConfig, finalize
from vs_plugin.errors import ConfigError, ModelError
from vs_plugin.integrations.torch_pruning import PruneConfig, VariationalStudentPruner, load_pruned, save_pruned
from vs_plugin.layers.channel import ChannelGateLayer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CLASSES = 10
VIT = dict(img_size=32, patch_size=8)
#: name -> (constructor kwargs, input side). Verified: the whole path works.
VERIFIED = {
    "timm:resnet10t": ({}, 32),
    "timm:regnety_002": ({}, 32),
    "torchvision:squeezenet1_1": ({}, 64),
    "timm:vit_tiny_patch16_224": (VIT, 32),
    "timm:efficientnet_lite0": ({}, 32),
    "timm:ghostnet_050": ({}, 32),
    "timm:fastvit_t8": ({}, 32),
    "timm:mobilenetv3_small_050": ({}, 32),
    "timm:convnext_atto": ({}, 32),
    "timm:deit_tiny_patch16_224": (VIT, 32),
    "timm:resnet18": ({}, 32),
    "timm:efficientnet_b0": ({}, 32),
    "timm:mobilenetv2_050": ({}, 32),
    "timm:regnetx_002": ({}, 32),
    "timm:mnasnet_small": ({}, 32),
    "timm:tinynet_e": ({}, 32),
    "timm:dla34": ({}, 32),
    "torchvision:mobilenet_v3_small": ({}, 32),
    "torchvision:resnet18": ({}, 32),
    "torchvision:mobilenet_v2": ({}, 32),
    "torchvision:regnet_x_400mf": ({}, 32),
    "torchvision:efficientnet_b0": ({}, 32),
    "torchvision:mnasnet0_5": ({}, 32),
    "timm:repvit_m0_9": ({}, 32),
}
#: name -> (constructor kwargs, input side, why). Refused: a ModelError within 30 s.
REFUSED = {
    "timm:levit_128s": ({}, 224, "group search of torch-pruning does not finish (attention with fixed-size biases)"),
    "torchvision:shufflenet_v2_x0_5": ({}, 32, "channel shuffle: torch-pruning's reshape index mapping divides by zero"),
    "timm:mobilevitv2_050": ({}, 64, "group search of torch-pruning does not finish"),
    "timm:rexnet_100": ({}, 32, "group search of torch-pruning does not finish (plain torch-pruning: over 590 s)"),
    "timm:lcnet_050": ({}, 32, "50% of the MACs unreachable with every layer capped at 90% (57.5% at best): refused at step()"),
}
FAST = {"timm:resnet10t", "torchvision:shufflenet_v2_x0_5"}


def build(name: str, kwargs: dict) -> torch.nn.Module:
    library, _, model = name.partition(":")
    if library == "timm":
        return timm.create_model(model, pretrained=False, num_classes=CLASSES, **kwargs)
    return torchvision.models.get_model(model, weights=None, num_classes=CLASSES, **kwargs)


def marked(names):
    return [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in names]


def gate_log_alphas(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([m.log_alpha().detach().flatten() for m in model.modules() if isinstance(m, ChannelGateLayer)])


@pytest.mark.parametrize("name", marked(VERIFIED))
@pytest.mark.filterwarnings("ignore:left plain", "ignore:torch-pruning cannot prune through")
def test_verified_family_trains_prunes_to_half_the_macs_and_round_trips(name, tmp_path):
    torch.manual_seed(0)
    kwargs, side = VERIFIED[name]
    model = build(name, kwargs)
    inputs = torch.randn(2, 3, side, side)
    pruner = VariationalStudentPruner(
        model, inputs[:1], num_train_samples=100, objective=ObjectiveConfig(kd_weight=0.0),
        prune=PruneConfig(by="macs", target_macs_ratio=0.5),
    )
    before = gate_log_alphas(model)
    assert before.min() > -8.0  # the init rule: no gate starts at the clip
    optimizer = torch.optim.Adam(pruner.parameter_groups(lr=1e-3, gate_lr=1e-2))
    targets = torch.arange(2) % CLASSES
    model.train()
    for _ in range(3):
        loss = pruner.objective(model(inputs), None, targets)["loss"]
        optimizer.zero_grad()
        loss.backward()
        pruner.regularize()
        optimizer.step()
    assert (gate_log_alphas(model) - before).abs().max() > 1e-3  # the gates train
    model.eval()
    pruner.step()
    step = pruner.steps[-1]
    assert step.macs_after <= 0.5 * step.macs_before * 1.001
    model.train()
    model.zero_grad()
    model(inputs).sum().backward()
    model.eval()
    finalize(model)
    with torch.no_grad():
        expected = model(inputs)
    save_pruned(model, tmp_path / "pruned.json", pruner.pruning_history(), input_shape=(3, side, side), num_classes=CLASSES)
    loaded = load_pruned(tmp_path / "pruned.json", build(name, kwargs))
    with torch.no_grad():
        assert torch.allclose(loaded(inputs), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", marked(REFUSED))
def test_unsupported_family_is_refused_fast_with_a_clear_message(name):
    kwargs, side, _ = REFUSED[name]
    model = build(name, kwargs)
    inputs = torch.randn(1, 3, side, side)
    start = time.monotonic()
    with pytest.raises((ModelError, ConfigError), match="does not support|cannot reach"):
        pruner = VariationalStudentPruner(
            model, inputs, num_train_samples=100, objective=ObjectiveConfig(kd_weight=0.0),
            prune=PruneConfig(by="macs", target_macs_ratio=0.5),
        )
        pruner.step()  # an unreachable MAC target is found by the search, at the first step
    assert time.monotonic() - start < 30
