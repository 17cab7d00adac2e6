"""Any image folder laid out for torchvision's ``ImageFolder``: ``<root>/train/<class>/*`` and
``<root>/test/<class>/*`` (or ``val/``). Images are read as RGB and go through timm's input
pipeline (``data/transforms.py``): training transforms on ``train/``, the eval transform on
``test/``. The pipeline is the teacher's when the run knows its teacher (:func:`set_pipeline`),
else timm's defaults at ``image_size`` (32 px when not given)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import DataError
from ..models.registry import InputSpec
from .bundle import DataBundle
from .image_check import drop_unreadable_images
from .transforms import DEFAULT_IMAGE_SIZE, ImagePipeline, build_pipeline

#: The input size when neither ``image_size`` nor the teacher sets one (the old name).
DEFAULT_FOLDER_IMAGE_SIZE = DEFAULT_IMAGE_SIZE


def load_image_folder(root: Path, image_size: Optional[int], pipeline: Optional[ImagePipeline] = None) -> DataBundle:
    """The ``train/`` and ``test/`` (or ``val/``) splits of ``root`` through ``pipeline``."""
    from torchvision.datasets import ImageFolder

    if not (root / "train").is_dir():
        raise DataError(f"image folder {root} needs a train/ subfolder with one folder per class")
    test_dir = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
    if test_dir is None:
        raise DataError(f"image folder {root} needs a test/ (or val/) subfolder with one folder per class")
    try:
        train = ImageFolder(str(root / "train"), loader=_rgb)
        test = ImageFolder(str(test_dir), loader=_rgb)
    except (FileNotFoundError, OSError) as error:
        raise DataError(f"could not read image folder {root}: {error}") from None
    drop_unreadable_images(train, "train")
    drop_unreadable_images(test, test_dir.name)
    if train.classes != test.classes:
        raise DataError(f"{root}: train classes {train.classes} differ from {test_dir.name} classes {test.classes}")
    bundle = DataBundle(name=f"folder:{root}", train=train, test=test, spec=InputSpec(3, 1, 1, len(train.classes)), test_split=f"{test_dir}")
    return set_pipeline(bundle, pipeline or build_pipeline(None, image_size))


def set_pipeline(bundle: DataBundle, pipeline: ImagePipeline) -> DataBundle:
    """``bundle`` (an image folder) with ``pipeline``'s transforms and input size."""
    bundle.train.transform = pipeline.train
    bundle.test.transform = pipeline.eval
    height, width = pipeline.size
    bundle.spec = InputSpec(3, height, width, bundle.spec.num_classes)
    bundle.pipeline = pipeline
    return bundle


def _rgb(path: str):
    from PIL import Image

    with open(path, "rb") as handle:
        return Image.open(handle).convert("RGB")
