"""timm's input pipeline for image data: the data config resolved from the teacher's
``pretrained_cfg`` (``timm.data.resolve_data_config``: input size, mean/std, interpolation, crop),
training transforms from ``timm.data.create_transform(is_training=True)`` (random resized crop,
flip, colour jitter, optional AutoAugment/RandAugment and random erasing) and the eval transform
(resize to ``size / crop_pct``, centre crop, normalise).

Used for ``folder:<path>`` and for the in-memory datasets (mnist, fashion-mnist, cifar10, digits)
when ``image_size`` resizes them for a timm or torchvision teacher. Images are read as RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.utils.data import Dataset

from ..errors import ConfigError

#: Input size when neither ``image_size`` nor the teacher says one (built-in models).
DEFAULT_IMAGE_SIZE = 32
AUGMENT_MODES = ("timm", "none")


@dataclass(frozen=True)
class AugmentSettings:
    """Training augmentation (timm's ``create_transform`` options).

    Attributes:
        mode: ``timm`` (timm's training transform) or ``none`` (the eval transform for training too).
        hflip: horizontal flip probability.
        color_jitter: colour jitter strength (0: off).
        crop_scale_min: smallest area fraction of the random resized crop (timm default 0.08).
        auto_augment: timm policy string (``rand-m9-mstd0.5``, ``original``...) or None.
        random_erasing: random erasing probability (0: off).
    """

    mode: str = "timm"
    hflip: float = 0.5
    color_jitter: float = 0.4
    crop_scale_min: float = 0.08
    auto_augment: Optional[str] = None
    random_erasing: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in AUGMENT_MODES:
            raise ConfigError(f"augment must be one of {', '.join(AUGMENT_MODES)}, got {self.mode!r}")
        for name in ("hflip", "random_erasing"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0 < self.crop_scale_min <= 1:
            raise ConfigError(f"crop_scale_min must lie in (0, 1], got {self.crop_scale_min}")
        if self.color_jitter < 0:
            raise ConfigError(f"color_jitter must be >= 0, got {self.color_jitter}")


@dataclass
class ImagePipeline:
    """The resolved data config and the two transforms built from it."""

    data_config: dict
    train: Callable
    eval: Callable
    augment: AugmentSettings
    source: str

    @property
    def augmented(self) -> bool:
        return self.augment.mode != "none"

    @property
    def size(self) -> tuple[int, int]:
        return int(self.data_config["input_size"][1]), int(self.data_config["input_size"][2])

    def describe(self) -> dict:
        """What the report says: the data config, where it came from, both transforms."""
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config.items()}
        return {
            "data_config": config,
            "data_config_source": self.source,
            "augmentation": "timm create_transform(is_training=True)" if self.augmented else "none (eval transform for training)",
            "train_transform": _lines(self.train),
            "eval_transform": _lines(self.eval),
        }


def _lines(transform) -> list[str]:
    return [line.strip() for line in repr(transform).splitlines() if line.strip() not in ("Compose(", ")")]


def resolve_image_config(pretrained_cfg: Optional[dict], image_size: Optional[int]) -> tuple[dict, str]:
    """timm's data config for a teacher with ``pretrained_cfg`` (None: not an ImageNet-style model);
    ``image_size`` overrides the input size. Returns (config, where it came from)."""
    from timm.data import resolve_data_config

    args: dict = {}
    if image_size is not None:
        if image_size < 1:
            raise ConfigError(f"image size must be a positive number of pixels, got {image_size}")
        args["input_size"] = (3, image_size, image_size)
    elif not pretrained_cfg:
        args["input_size"] = (3, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)
    if pretrained_cfg:
        source = "teacher pretrained_cfg" + (f", input size from --image-size {image_size}" if image_size else "")
    else:
        source = "timm defaults" + (f", input size from --image-size {image_size}" if image_size else f", input size {DEFAULT_IMAGE_SIZE} (default)")
    config = resolve_data_config(args, pretrained_cfg=pretrained_cfg or None)
    return dict(config), source


def build_pipeline(pretrained_cfg: Optional[dict], image_size: Optional[int], augment: Optional[AugmentSettings] = None) -> ImagePipeline:
    """The data config and timm's train / eval transforms (see the module docstring)."""
    from timm.data import create_transform

    augment = augment or AugmentSettings()
    config, source = resolve_image_config(pretrained_cfg, image_size)
    eval_transform = create_transform(**config, is_training=False)
    if augment.mode == "none":
        train_transform = eval_transform
    else:
        train_transform = create_transform(
            **config, is_training=True, hflip=augment.hflip, color_jitter=augment.color_jitter,
            scale=(augment.crop_scale_min, 1.0), auto_augment=augment.auto_augment, re_prob=augment.random_erasing,
        )
    return ImagePipeline(config, train_transform, eval_transform, augment, source)


class TransformedImages(Dataset):
    """In-memory uint8 images (N, C, H, W) passed through a PIL transform one sample at a time.

    ``targets`` exposes the labels (for class counts and stratified subsets without decoding).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        if images.dtype != torch.uint8:
            raise ConfigError("TransformedImages needs uint8 images")
        self.images = images
        self.targets = labels.long()
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        from PIL import Image

        array = self.images[index].permute(1, 2, 0).numpy()
        image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).convert("RGB")
        return self.transform(image), int(self.targets[index])
