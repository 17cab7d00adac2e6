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
from ..registry import Registry
from .bundle import DataBundle, tensor_dataset
from .digits import load_digits_bundle
from .files import load_cifar10, load_fashion_mnist, load_mnist
from .folder import load_image_folder, set_pipeline
from .transforms import ImagePipeline, TransformedImages

Loader = Callable[[Optional[str], Optional[Path], bool, Optional[int]], DataBundle]
DATASETS: Registry[Loader] = Registry("dataset")


def register_dataset(name: str, loader: Loader, usage: str) -> None:
    """Add a dataset name; raises if it is already registered."""
    DATASETS.register(name, loader, usage)


def dataset_names() -> dict[str, str]:
    return DATASETS.usages()


def load_dataset(
    name: str,
    data_dir: Optional[Path] = None,
    download: bool = True,
    image_size: Optional[int] = None,
    pipeline: Optional[ImagePipeline] = None,
) -> DataBundle:
    """Load dataset ``name``.

    ``pipeline`` (timm's input pipeline of the teacher, ``data/transforms.py``) applies to image
    folders, and to in-memory datasets when ``image_size`` is given (their pixels go through it as
    RGB images). Without a pipeline, ``image_size`` resizes in-memory images to a square
    (bilinear), as for the built-in models.
    """
    family, _, argument = name.partition(":")
    if family not in DATASETS:
        raise UnknownNameError("dataset", name, list(DATASETS.usages().values()))
    if image_size is not None and image_size < 1:
        raise ConfigError(f"image size must be a positive number of pixels, got {image_size}")
    loader = DATASETS.get(family)
    bundle = loader(argument or None, Path(data_dir) if data_dir else None, download, image_size)
    if pipeline is not None and bundle.pipeline is not None:
        return set_pipeline(bundle, pipeline)
    if pipeline is not None and image_size is not None and bundle.raw_images is not None:
        return _through_pipeline(bundle, pipeline)
    if image_size is not None and isinstance(bundle.train, TensorDataset) and (bundle.spec.height, bundle.spec.width) != (image_size, image_size):
        bundle = _resized(bundle, image_size)
    return bundle


def _resized(bundle: DataBundle, size: int) -> DataBundle:
    def resize(dataset: TensorDataset) -> TensorDataset:
        images, labels = dataset.tensors
        return tensor_dataset(F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False), labels)

    spec = InputSpec(bundle.spec.channels, size, size, bundle.spec.num_classes)
    return DataBundle(bundle.name, resize(bundle.train), resize(bundle.test), spec, bundle.test_split + f", resized to {size}x{size}")


def _through_pipeline(bundle: DataBundle, pipeline: ImagePipeline) -> DataBundle:
    """An in-memory dataset's pixels through timm's train / eval transforms (RGB)."""
    train_raw, test_raw = bundle.raw_images
    train = TransformedImages(train_raw, bundle.train.tensors[1], pipeline.train)
    test = TransformedImages(test_raw, bundle.test.tensors[1], pipeline.eval)
    height, width = pipeline.size
    spec = InputSpec(3, height, width, bundle.spec.num_classes)
    split = bundle.test_split + f", through timm's eval transform at {height}x{width}"
    return DataBundle(bundle.name, train, test, spec, split, raw_images=bundle.raw_images, pipeline=pipeline)


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
