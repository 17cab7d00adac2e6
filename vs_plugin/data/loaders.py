"""Batches for training and evaluation, low-data subsets, and labels of any dataset."""

from __future__ import annotations

import math
from typing import Iterator, Optional, Union

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from ..errors import ConfigError, DataError


def dataset_labels(dataset: Dataset) -> Optional[torch.Tensor]:
    """Labels without reading images where the dataset exposes them, else None."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[1]
    if isinstance(dataset, Subset):
        parent = dataset_labels(dataset.dataset)
        return None if parent is None else parent[torch.as_tensor(dataset.indices)]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets)
    return None


def subset_fraction(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """A fixed random subset holding ``fraction`` of ``dataset`` (low-data regime).

    Stratified by class when labels are available (each class keeps round(fraction * n_c)
    samples, at least one); the subset depends only on ``seed``.
    """
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ConfigError(f"train fraction must lie in (0, 1], got {fraction!r}")
    if fraction == 1:
        return dataset
    generator = torch.Generator().manual_seed(seed)
    labels = dataset_labels(dataset)
    if labels is None:
        count = max(1, round(fraction * len(dataset)))
        indices = torch.randperm(len(dataset), generator=generator)[:count]
    else:
        chosen = []
        for label in torch.unique(labels):
            members = torch.nonzero(labels == label).flatten()
            count = max(1, round(fraction * len(members)))
            chosen.append(members[torch.randperm(len(members), generator=generator)[:count]])
        indices = torch.cat(chosen).sort().values
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(t[indices] for t in dataset.tensors))
    return Subset(dataset, indices.tolist())


class InMemoryLoader:
    """Fast batches of a :class:`TensorDataset` by index slicing (no per-sample collation).

    Shuffling depends only on ``seed`` and the epoch (:meth:`set_epoch`), so a resumed run
    sees the same batches. ``rank`` / ``world_size`` shard every epoch's permutation like
    ``DistributedSampler``: with ``pad=True`` (training) each rank gets ``ceil(N / world_size)``
    samples, padded by wrapping, so every rank takes the same number of steps; with ``pad=False``
    (evaluation) the shards are disjoint and together hold every sample exactly once.
    """

    def __init__(
        self,
        dataset: TensorDataset,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            if self.pad:
                per_rank = math.ceil(n / self.world_size)
                order = torch.cat([order, order[: per_rank * self.world_size - n]])
            order = order[self.rank :: self.world_size]
        return order

    @property
    def num_samples(self) -> int:
        n = len(self.dataset)
        if self.world_size == 1:
            return n
        if self.pad:
            return math.ceil(n / self.world_size)
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self._indices()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = order[start : start + self.batch_size]
            yield tuple(t[batch] for t in self.dataset.tensors)


BatchSource = Union[Dataset, DataLoader, InMemoryLoader]


def make_loader(
    data: BatchSource,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pad: bool = True,
    pin_memory: bool = False,
):
    """A batch iterable for ``data``: given loaders are used as they are.

    ``rank`` / ``world_size`` shard the data for distributed runs (``pad``: see :class:`InMemoryLoader`).
    Datasets read sample by sample (image files, transforms) go through a DataLoader with
    ``num_workers`` worker processes (kept alive across epochs) and ``pin_memory`` (for the GPU).
    """
    if isinstance(data, (DataLoader, InMemoryLoader)):
        return data
    if not isinstance(data, Dataset):
        raise DataError(f"expected a torch Dataset or DataLoader, got {type(data).__name__}")
    if isinstance(data, TensorDataset) and num_workers == 0:
        return InMemoryLoader(data, batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, pad=pad)
    sampler = None
    if world_size > 1:
        if pad:
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
        else:
            sampler = list(range(rank, len(data), world_size))
    return EpochSeededDataLoader(
        data, seed=seed, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler, num_workers=num_workers,
        pin_memory=pin_memory, persistent_workers=num_workers > 0,
    )


class EpochSeededDataLoader(DataLoader):
    """A DataLoader whose shuffle order depends only on ``seed`` and the epoch (see :meth:`set_epoch`)."""

    def __init__(self, dataset: Dataset, seed: int, **kwargs) -> None:
        super().__init__(dataset, generator=torch.Generator().manual_seed(seed), **kwargs)
        self.seed = seed

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed * 100_003 + epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


def set_loader_epoch(loader, epoch: int) -> None:
    """Tell a loader (or its distributed sampler) which epoch starts, for reproducible shuffles."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    elif hasattr(getattr(loader, "sampler", None), "set_epoch"):
        loader.sampler.set_epoch(epoch)


def dataset_size(data: BatchSource) -> int:
    """Number of samples behind a dataset or loader."""
    if isinstance(data, (DataLoader, InMemoryLoader)):
        return len(data.dataset)
    return len(data)
