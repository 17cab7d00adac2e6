"""Built-in architectures of the source papers: the MLPs, LeNet-5 and the VGG-like CNN."""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn


class MLP(nn.Sequential):
    """Fully connected ReLU network; the input is flattened first.

    ``MLP([784, 1200, 1200, 10])`` is the Variational Student paper's teacher and
    ``MLP([784, 500, 50, 10])`` its student; ``[784, 300, 100, 10]`` is LeNet-300-100.
    """

    def __init__(self, sizes: Sequence[int]) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        for index, (width_in, width_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(width_in, width_out))
            if index < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)
        self.sizes = tuple(sizes)


class LeNet5(nn.Module):
    """LeNet-5-Caffe, the CNN of Sparse VD's MNIST results (conv 20 -> conv 50 -> fc 500 -> classes).

    Convolutions are 5x5 without padding for inputs of at least 16 px; smaller inputs (the 8x8
    digits) get padding 2 so the two 2x2 poolings still fit.
    """

    def __init__(self, in_chans: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        padding = 0 if min(image_size) >= 16 else 2
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 20, 5, padding=padding),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5, padding=padding),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        height, width = image_size
        for _ in range(2):
            height, width = (height + 2 * padding - 4) // 2, (width + 2 * padding - 4) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(50 * height * width, 500), nn.ReLU(), nn.Linear(500, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


#: VGG-16 channel plan of the CIFAR "VGG-like" net used by Sparse VD (Zagoruyko's cifar.torch);
#: "M" is a 2x2 max-pool.
VGG_LIKE_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGGLike(nn.Module):
    """VGG-like CNN (conv3x3-BN-ReLU blocks, FC-BN-ReLU-FC head) with channels scaled by ``width``.

    Sparse VD trained it at width factors 0.25 to 1.5. A pooling is skipped once the feature map
    is 1 px, so small inputs (8x8, 28x28) work; a global average pool precedes the head.
    """

    def __init__(self, in_chans: int, num_classes: int, image_size: tuple[int, int], width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_chans, min(image_size)
        for item in VGG_LIKE_PLAN:
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            out = max(1, round(item * width))
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(channels, channels), nn.BatchNorm1d(channels), nn.ReLU(inplace=True), nn.Linear(channels, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))
