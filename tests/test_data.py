"""Datasets by name, the IDX reader, low-data subsets and loaders."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from vs_plugin.data import InMemoryLoader, load_dataset, make_loader, subset_fraction
from vs_plugin.data.files import DEBIAN_FASHION_MNIST
from vs_plugin.data.idx import read_idx
from vs_plugin.errors import ConfigError, DataError, UnknownNameError


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def fake_mnist_folder(folder: Path, train: int = 30, test: int = 10) -> None:
    rng = np.random.RandomState(0)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.randint(0, 255, (train, 28, 28)))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(train) % 10)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.randint(0, 255, (test, 28, 28)))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(test) % 10)


def test_digits_is_the_fixed_stratified_split():
    bundle = load_dataset("digits")
    assert len(bundle.train) == 1437 and len(bundle.test) == 360
    assert bundle.spec.channels == 1 and bundle.spec.height == 8 and bundle.spec.num_classes == 10
    again = load_dataset("digits")
    assert torch.equal(bundle.test.tensors[0], again.test.tensors[0])
    counts = torch.bincount(bundle.test.tensors[1])
    assert counts.min() >= 35 and counts.max() <= 37


def test_idx_reader_and_fashion_mnist_from_a_folder(tmp_path):
    fake_mnist_folder(tmp_path)
    assert read_idx(tmp_path / "train-images-idx3-ubyte.gz").shape == (30, 28, 28)
    bundle = load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    assert len(bundle.train) == 30 and len(bundle.test) == 10
    assert bundle.train.tensors[0].shape == (30, 1, 28, 28)
    assert abs(bundle.train.tensors[0].mean().item()) < 1e-4  # standardised with train statistics
    assert load_dataset("mnist", data_dir=tmp_path, download=False).spec.num_classes == 10


def test_torchvision_layout_is_found(tmp_path):
    fake_mnist_folder(tmp_path / "FashionMNIST" / "raw")
    assert len(load_dataset("fashion-mnist", data_dir=tmp_path, download=False).train) == 30


def test_corrupt_idx_is_a_clear_error(tmp_path):
    fake_mnist_folder(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    with gzip.open(path, "wb") as handle:
        handle.write(data[:-100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)


def test_missing_files_say_how_to_install(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    with pytest.raises(DataError, match="MNIST files not found"):
        load_dataset("mnist", data_dir=tmp_path, download=False)
    with pytest.raises(DataError, match="CIFAR-10 files not found"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_the_debian_package():
    bundle = load_dataset("fashion-mnist")
    assert len(bundle.train) == 60_000 and len(bundle.test) == 10_000
    assert torch.bincount(bundle.test.tensors[1]).tolist() == [1000] * 10


def test_image_folder(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for label in ("cat", "dog"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((10, 12, 3), 40 * i, dtype=np.uint8)).save(tmp_path / split / label / f"{i}.png")
    bundle = load_dataset(f"folder:{tmp_path}", image_size=16)
    assert bundle.spec.num_classes == 2 and bundle.spec.height == 16
    image, label = bundle.train[0]
    assert image.shape == (3, 16, 16) and label in (0, 1)
    with pytest.raises(DataError, match="test/"):
        (tmp_path / "test").rename(tmp_path / "other")
        load_dataset(f"folder:{tmp_path}")


def test_unknown_dataset_lists_known_names():
    with pytest.raises(UnknownNameError, match="fashion-mnist") as error:
        load_dataset("imagenet")
    assert "digits" in str(error.value)


def test_resize_in_memory():
    bundle = load_dataset("digits", image_size=16)
    assert bundle.train.tensors[0].shape[-2:] == (16, 16) and bundle.spec.height == 16


def test_subset_fraction_is_stratified_and_seeded():
    labels = torch.arange(1000) % 10
    data = TensorDataset(torch.randn(1000, 2), labels)
    subset = subset_fraction(data, 0.05, seed=3)
    assert len(subset) == 50
    assert torch.bincount(subset.tensors[1]).tolist() == [5] * 10
    assert torch.equal(subset.tensors[0], subset_fraction(data, 0.05, seed=3).tensors[0])
    assert not torch.equal(subset.tensors[0], subset_fraction(data, 0.05, seed=4).tensors[0])
    assert subset_fraction(data, 1.0, seed=0) is data
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ConfigError, match=r"\(0, 1\]"):
            subset_fraction(data, bad, seed=0)


def test_in_memory_loader_epochs_and_shards():
    data = TensorDataset(torch.arange(10).float(), torch.arange(10))
    loader = InMemoryLoader(data, batch_size=4, shuffle=True, seed=1)
    first = torch.cat([b[1] for b in loader])
    assert sorted(first.tolist()) == list(range(10)) and len(loader) == 3
    loader.set_epoch(1)
    second = torch.cat([b[1] for b in loader])
    assert not torch.equal(first, second)
    loader.set_epoch(0)
    assert torch.equal(torch.cat([b[1] for b in loader]), first)
    shards = [torch.cat([b[1] for b in InMemoryLoader(data, 2, shuffle=True, seed=1, rank=r, world_size=3)]) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    assert set(torch.cat(shards).tolist()) == set(range(10))


def test_make_loader_rejects_non_datasets():
    with pytest.raises(DataError, match="Dataset or DataLoader"):
        make_loader([1, 2, 3], 2, shuffle=False, seed=0)
