"""Shared pieces of the torch-pruning integration tests (tests/test_tp_*.py)."""

from __future__ import annotations

import torch
import torch.nn as nn

from vs_plugin.integrations.torch_pruning.importance import OUT_CHANNEL_FUNCTIONS, ranked_groups
from vs_plugin.layers.channel import ChannelGateLayer

#: Gate mean that puts a gate far above the threshold: log alpha = log sigma^2 - log mu^2 is about
#: 8 at the initial log sigma^2 of -10, while its training noise (sigma ~ 0.007) stays small.
DEAD_MU = 1e-4


class SmallResNet(nn.Module):
    """Conv-BN-ReLU stem, one residual block with a 1x1 projection, a depthwise conv, a head."""

    def __init__(self, channels: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU())
        self.conv1 = nn.Conv2d(channels, 2 * channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(2 * channels)
        self.conv2 = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, groups=2 * channels, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * channels)
        self.conv3 = nn.Conv2d(2 * channels, 2 * channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(2 * channels)
        self.shortcut = nn.Sequential(nn.Conv2d(channels, 2 * channels, 1, bias=False), nn.BatchNorm2d(2 * channels))
        self.head = nn.Linear(2 * channels, classes)

    def forward(self, x):
        x = self.stem(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        y = torch.relu(y + self.shortcut(x))
        return self.head(y.mean(dim=(2, 3)))


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine parameters (so shifts matter)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                    module.bias.copy_(torch.randn(n, generator=generator) * 0.5)


def kill_positions(pruner, fraction: float = 0.5) -> tuple[int, int]:
    """Put the gates of the first ``fraction`` of every ranked group's positions far above the
    threshold (gate mean :data:`DEAD_MU`), in every coupled gated layer (the same positions in every head / channel group).
    Returns (positions killed, positions of the groups touched)."""
    killed = total = 0
    for group in ranked_groups(pruner):
        channel_groups = pruner._get_channel_groups(group)
        size = len(group[0].idxs) // channel_groups
        count = int(size * fraction)
        if count == 0:
            continue
        touched = False
        with torch.no_grad():
            for index, (dep, idxs) in enumerate(group):
                layer = dep.target.module
                if isinstance(layer, ChannelGateLayer) and dep.handler in OUT_CHANNEL_FUNCTIONS:
                    for i, root in zip(idxs, group[index].root_idxs):
                        if root is not None and root % size < count:
                            layer.gate_mu[i] = DEAD_MU
                            touched = True
        if touched:
            killed += count
            total += size
    return killed, total
