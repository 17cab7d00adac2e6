"""Any image folder laid out for torchvision's ``ImageFolder``: ``<root>/train/<class>/*`` and
``<root>/test/<class>/*`` (or ``val/``). Images are resized to ``image_size`` and read as RGB."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..models.registry import InputSpec
from .bundle import DataBundle
from .image_check import drop_unreadable_images

DEFAULT_FOLDER_IMAGE_SIZE = 32


def load_image_folder(root: Path, image_size: int | None) -> DataBundle:
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    size = image_size or DEFAULT_FOLDER_IMAGE_SIZE
    if not (root / "train").is_dir():
        raise DataError(f"image folder {root} needs a train/ subfolder with one folder per class")
    test_dir = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
    if test_dir is None:
        raise DataError(f"image folder {root} needs a test/ (or val/) subfolder with one folder per class")
    transform = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
    try:
        train = ImageFolder(str(root / "train"), transform=transform, loader=_rgb)
        test = ImageFolder(str(test_dir), transform=transform, loader=_rgb)
    except (FileNotFoundError, OSError) as error:
        raise DataError(f"could not read image folder {root}: {error}") from None
    drop_unreadable_images(train, "train")
    drop_unreadable_images(test, test_dir.name)
    if train.classes != test.classes:
        raise DataError(f"{root}: train classes {train.classes} differ from {test_dir.name} classes {test.classes}")
    return DataBundle(
        name=f"folder:{root}",
        train=train,
        test=test,
        spec=InputSpec(3, size, size, len(train.classes)),
        test_split=f"{test_dir}",
    )


def _rgb(path: str):
    from PIL import Image

    with open(path, "rb") as handle:
        return Image.open(handle).convert("RGB")
