"""MNIST, Fashion-MNIST and CIFAR-10 from local files; downloads only when asked and online.

Fashion-MNIST is looked up in ``--data-dir`` when given (IDX files directly or torchvision's
``FashionMNIST/raw`` layout), else in the Debian package's folder
``/usr/share/datasets/fashion-mnist``. MNIST likewise (``MNIST/raw``). CIFAR-10 uses
torchvision's layout (``cifar-10-batches-py``). When the files are missing and downloads are
allowed, torchvision fetches them into the data folder (this needs the internet).
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import torch

from ..errors import DataError
from ..models.registry import InputSpec
from .bundle import DataBundle, normalise, tensor_dataset, to_uint8
from .idx import read_idx

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DOWNLOAD_TIMEOUT_S = 30


def default_data_root() -> Path:
    """Where downloads go when no ``--data-dir`` is given (``$VS_PLUGIN_DATA`` or ~/.cache/vs-plugin/data)."""
    return Path(os.environ.get("VS_PLUGIN_DATA", Path.home() / ".cache" / "vs-plugin" / "data"))


def _find_idx_files(folders: list[Path]) -> Optional[dict[str, Path]]:
    for folder in folders:
        found = {}
        for key, stem in IDX_FILES.items():
            for candidate in (folder / f"{stem}.gz", folder / stem):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(IDX_FILES):
            return found
    return None


@contextmanager
def _download_timeout() -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download(dataset_cls, root: Path, what: str, install_hint: str) -> None:
    try:
        with _download_timeout():
            dataset_cls(root=str(root), train=True, download=True)
            dataset_cls(root=str(root), train=False, download=True)
    except Exception as error:  # noqa: BLE001 - any download failure gets the same advice
        raise DataError(f"{what} files are missing and the download into {root} failed ({type(error).__name__}); {install_hint}") from None


def _idx_bundle(name: str, files: dict[str, Path], source: str, mean_std_from_train: bool = True) -> DataBundle:
    train_images = read_idx(files["train_images"]).unsqueeze(1) / 255.0
    test_images = read_idx(files["test_images"]).unsqueeze(1) / 255.0
    train_labels = read_idx(files["train_labels"]).long()
    test_labels = read_idx(files["test_labels"]).long()
    for images, labels, split in ((train_images, train_labels, "train"), (test_images, test_labels, "test")):
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"{name} {split} files disagree: {images.shape[0]} images but {labels.shape[0]} labels ({source})")
    raw = (to_uint8(train_images, 1.0), to_uint8(test_images, 1.0))
    train_images, test_images = normalise(train_images, test_images)
    _, _, height, width = train_images.shape
    return DataBundle(
        name=name,
        train=tensor_dataset(train_images, train_labels),
        test=tensor_dataset(test_images, test_labels),
        spec=InputSpec(1, height, width, 10),
        test_split=f"official test split ({source})",
        raw_images=raw,
    )


def load_fashion_mnist(data_dir: Optional[Path], download: bool) -> DataBundle:
    hint = (
        "install them with `sudo apt-get install dataset-fashion-mnist` (files go to "
        f"{DEBIAN_FASHION_MNIST}) or pass --data-dir DIR holding train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
    )
    folders = [data_dir, data_dir / "FashionMNIST" / "raw"] if data_dir else [DEBIAN_FASHION_MNIST]
    files = _find_idx_files(folders)
    if files is None and download:
        import torchvision

        root = data_dir or default_data_root()
        _download(torchvision.datasets.FashionMNIST, root, "Fashion-MNIST", hint)
        files = _find_idx_files([root / "FashionMNIST" / "raw"])
    if files is None:
        searched = ", ".join(str(f) for f in folders)
        raise DataError(f"Fashion-MNIST files not found in {searched}; {hint}")
    return _idx_bundle("fashion-mnist", files, str(files["train_images"].parent))


def load_mnist(data_dir: Optional[Path], download: bool) -> DataBundle:
    root = data_dir or default_data_root()
    hint = (
        f"put the four MNIST IDX files (train-images-idx3-ubyte.gz, ...) in {root} or {root / 'MNIST' / 'raw'}, "
        "or run once with internet access so torchvision can download them"
    )
    folders = [root, root / "MNIST" / "raw"]
    files = _find_idx_files(folders)
    if files is None and download:
        import torchvision

        _download(torchvision.datasets.MNIST, root, "MNIST", hint)
        files = _find_idx_files(folders)
    if files is None:
        raise DataError(f"MNIST files not found in {', '.join(str(f) for f in folders)}; {hint}")
    return _idx_bundle("mnist", files, str(files["train_images"].parent))


def load_cifar10(data_dir: Optional[Path], download: bool) -> DataBundle:
    import torchvision

    root = data_dir or default_data_root()
    hint = (
        f"put torchvision's cifar-10-batches-py folder (from cifar-10-python.tar.gz) in {root}, "
        "or run once with internet access so torchvision can download it"
    )
    if not (root / "cifar-10-batches-py").is_dir():
        if not download:
            raise DataError(f"CIFAR-10 files not found in {root / 'cifar-10-batches-py'}; {hint}")
        _download(torchvision.datasets.CIFAR10, root, "CIFAR-10", hint)
    try:
        train = torchvision.datasets.CIFAR10(root=str(root), train=True, download=False)
        test = torchvision.datasets.CIFAR10(root=str(root), train=False, download=False)
    except Exception as error:  # noqa: BLE001
        raise DataError(f"could not read CIFAR-10 from {root}: {error}; {hint}") from None

    def to_tensors(split) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(split.data).permute(0, 3, 1, 2).float() / 255.0
        return images, torch.tensor(split.targets, dtype=torch.long)

    (train_x, train_y), (test_x, test_y) = to_tensors(train), to_tensors(test)
    raw = (to_uint8(train_x, 1.0), to_uint8(test_x, 1.0))
    train_x, test_x = normalise(train_x, test_x)
    return DataBundle(
        name="cifar10",
        train=tensor_dataset(train_x, train_y),
        test=tensor_dataset(test_x, test_y),
        spec=InputSpec(3, 32, 32, 10),
        test_split=f"official test split ({root})",
        raw_images=raw,
    )
