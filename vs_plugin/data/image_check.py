"""Unreadable files in an image folder: found before training, skipped with a warning and a count.

``torchvision``'s ``ImageFolder`` lists files by extension and opens them only when a batch needs
them, so one damaged or mislabelled file used to stop a run mid-epoch with
``PIL.UnidentifiedImageError``. :func:`drop_unreadable_images` opens every listed file once with
Pillow (``Image.open`` + ``verify``, which reads the header and, for PNG, checks every chunk) and
removes those that fail from the dataset; a split left with no image is an error.
"""

from __future__ import annotations

import warnings
from typing import Any

from ..errors import DataError

#: Files named in the warning (the count covers all).
SHOWN = 5


def unreadable_images(paths: list[str]) -> list[str]:
    """The paths among ``paths`` that Pillow cannot identify or verify."""
    from PIL import Image

    bad = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception:  # noqa: BLE001 - any decoder failure means this file cannot be used
            bad.append(path)
    return bad


def drop_unreadable_images(dataset: Any, split: str) -> int:
    """Remove unreadable files from an ``ImageFolder``-like dataset (``samples``, ``imgs``,
    ``targets``) with a warning naming them; returns how many were removed."""
    bad = set(unreadable_images([path for path, _ in dataset.samples]))
    if not bad:
        return 0
    kept = [(path, target) for path, target in dataset.samples if path not in bad]
    if not kept:
        raise DataError(f"no file of the {split} split can be read as an image (e.g. {sorted(bad)[0]})")
    dataset.samples = kept
    dataset.imgs = kept
    dataset.targets = [target for _, target in kept]
    names = sorted(bad)
    shown = ", ".join(names[:SHOWN]) + (f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else "")
    warnings.warn(f"skipped {len(names)} unreadable file(s) in the {split} split: {shown}", UserWarning, stacklevel=2)
    return len(names)


__all__ = ["unreadable_images", "drop_unreadable_images"]
