"""A dataset's train and test splits plus what models need to know about them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import torch
from torch.utils.data import Dataset, TensorDataset

from ..models.registry import InputSpec

if TYPE_CHECKING:
    from .transforms import ImagePipeline


@dataclass
class DataBundle:
    """Train and test splits of one dataset.

    Attributes:
        name: the dataset's registry name.
        train / test: torch datasets yielding (image, label).
        spec: input shape and class count the models must fit.
        test_split: where the test split comes from (reported).
        raw_images: (train, test) uint8 images (N, C, H, W) of an in-memory dataset, so that
            timm's pipeline can start from the pixels (see ``data/transforms.py``).
        pipeline: the timm input pipeline the images go through, when one does.
    """

    name: str
    train: Dataset
    test: Dataset
    spec: InputSpec
    test_split: str
    raw_images: Optional[tuple[torch.Tensor, torch.Tensor]] = None
    pipeline: Optional["ImagePipeline"] = None


def tensor_dataset(images: torch.Tensor, labels: torch.Tensor) -> TensorDataset:
    """An in-memory dataset of float32 images (N, C, H, W) and int64 labels (N,)."""
    return TensorDataset(images.float().contiguous(), labels.long().contiguous())


def normalise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardise per channel with the training split's mean and std."""
    dims = [0, 2, 3]
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def to_uint8(images: torch.Tensor, top: float) -> torch.Tensor:
    """Pixel values in [0, ``top``] as uint8 in [0, 255]."""
    return (images.float() * (255.0 / top)).round().clamp(0, 255).to(torch.uint8)
