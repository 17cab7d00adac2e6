"""Datasets by name: ``digits`` (default, shipped), ``fashion-mnist``, ``mnist``, ``cifar10``,
``folder:<path>``; registered once, loudly on collisions."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from ..errors import ConfigError, UnknownNameError
from ..models.registry import InputSpec
from .bundle import DataBundle, tensor_dataset
from .digits import load_digits_bundle
from .files import load_cifar10, load_fashion_mnist, load_mnist
from .folder import load_image_folder

Loader = Callable[[Optional[str], Optional[Path], bool, Optional[int]], DataBundle]
_DATASETS: dict[str, tuple[Loader, str]] = {}


def register_dataset(name: str, loader: Loader, usage: str) -> None:
    """Add a dataset name; raises if it is already registered."""
    if name in _DATASETS:
        raise ValueError(f"dataset {name!r} is already registered")
    _DATASETS[name] = (loader, usage)


def dataset_names() -> dict[str, str]:
    return {name: usage for name, (_, usage) in _DATASETS.items()}


def load_dataset(
    name: str, data_dir: Optional[Path] = None, download: bool = True, image_size: Optional[int] = None
) -> DataBundle:
    """Load dataset ``name``; ``image_size`` resizes in-memory images to a square (bilinear)."""
    family, _, argument = name.partition(":")
    if family not in _DATASETS:
        raise UnknownNameError("dataset", name, [usage for _, usage in _DATASETS.values()])
    if image_size is not None and image_size < 1:
        raise ConfigError(f"image size must be a positive number of pixels, got {image_size}")
    loader, _ = _DATASETS[family]
    bundle = loader(argument or None, Path(data_dir) if data_dir else None, download, image_size)
    if image_size is not None and isinstance(bundle.train, TensorDataset) and (bundle.spec.height, bundle.spec.width) != (image_size, image_size):
        bundle = _resized(bundle, image_size)
    return bundle


def _resized(bundle: DataBundle, size: int) -> DataBundle:
    def resize(dataset: TensorDataset) -> TensorDataset:
        images, labels = dataset.tensors
        return tensor_dataset(F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False), labels)

    spec = InputSpec(bundle.spec.channels, size, size, bundle.spec.num_classes)
    return DataBundle(bundle.name, resize(bundle.train), resize(bundle.test), spec, bundle.test_split + f", resized to {size}x{size}")


def _no_argument(name: str, loader: Callable[..., DataBundle]) -> Loader:
    def load(argument, data_dir, download, image_size):
        if argument:
            raise ConfigError(f"dataset {name} takes no ':' argument, got {name}:{argument}")
        return loader(data_dir, download)

    return load


def _folder(argument, data_dir, download, image_size):
    if not argument:
        raise ConfigError("folder needs a path: folder:/path/to/images (with train/ and test/ inside)")
    return load_image_folder(Path(argument), image_size)


register_dataset("digits", lambda argument, data_dir, download, image_size: load_digits_bundle(), "digits")
register_dataset("fashion-mnist", _no_argument("fashion-mnist", load_fashion_mnist), "fashion-mnist")
register_dataset("mnist", _no_argument("mnist", load_mnist), "mnist")
register_dataset("cifar10", _no_argument("cifar10", load_cifar10), "cifar10")
register_dataset("folder", _folder, "folder:<path with train/ and test/>")
