"""Layers torch-pruning cannot handle are skipped with a warning, not a crash."""

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vs_plugin import ObjectiveConfig
from vs_plugin.integrations.torch_pruning import PruneConfig, VariationalStudentPruner, opaque_layers


class BilinearNet(nn.Module):
    """Two conv branches mixed by an nn.Bilinear (torch-pruning crashes on it), then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(3, 8, 3, padding=1)
        self.right = nn.Conv2d(3, 8, 3, padding=1)
        self.mix = nn.Bilinear(8, 8, 6)
        self.hidden = nn.Linear(6, 12)
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        a = self.left(x).mean(dim=(2, 3))
        b = self.right(x).mean(dim=(2, 3))
        return self.head(torch.relu(self.hidden(self.mix(a, b))))


class KernelConv(nn.Module):
    """A convolution written by hand: its 4-D weight is not a layer torch-pruning knows."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(channels, channels, 3, 3) * 0.1)

    def forward(self, x):
        return F.conv2d(x, self.weight, padding=1)


class CustomNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(3, 8, 3, padding=1)
        self.custom = KernelConv(8)
        self.last = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.custom(torch.relu(self.first(x))))
        return self.head(torch.relu(self.last(x)).mean(dim=(2, 3)))


def width(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


@pytest.mark.parametrize("net, opaque, pruned, kept", [
    (BilinearNet, "mix", ("hidden", 12), ("left", "right")),
    (CustomNet, "custom", ("last", 8), ("first",)),
])
def test_layers_the_graph_cannot_handle_are_skipped_with_a_warning(net, opaque, pruned, kept):
    torch.manual_seed(0)
    model = net()
    assert [name for name, _ in opaque_layers(model)] == [opaque]
    inputs = torch.randn(2, 3, 8, 8)
    with pytest.warns(UserWarning, match=f"cannot prune through {opaque}"):
        pruner = VariationalStudentPruner(model, inputs[:1], num_train_samples=10, objective=ObjectiveConfig(kd_weight=0.0),
                                          prune=PruneConfig(by="ratio", pruning_ratio=0.5, global_pruning=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner.step()
    name, before = pruned
    assert width(model.get_submodule(name)) == before // 2  # the rest of the model is pruned
    for name in kept:  # the channels read by the opaque layer are not
        assert width(model.get_submodule(name)) == 8
    model.eval()
    assert model(inputs).shape == (2, 4)
    model.train()
    model(inputs).sum().backward()
