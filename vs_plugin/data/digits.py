"""scikit-learn's UCI handwritten digits: 1,797 8x8 grey images, shipped with scikit-learn (no download).

The embedded default dataset. It has no official test split; a fixed stratified 80/20 split
(seed 0, independent of the run's seed) stands in for one: 1,437 train and 360 test images.
"""

from __future__ import annotations

import torch

from ..models.registry import InputSpec
from .bundle import DataBundle, normalise, tensor_dataset, to_uint8

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


def load_digits_bundle() -> DataBundle:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(data.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(
        torch.arange(len(labels)).numpy(),
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=labels.numpy(),
    )
    train_x, test_x = normalise(images[train_idx], images[test_idx])
    return DataBundle(
        name="digits",
        train=tensor_dataset(train_x, labels[train_idx]),
        test=tensor_dataset(test_x, labels[test_idx]),
        spec=InputSpec(1, 8, 8, 10),
        test_split="fixed stratified 20% split (seed 0) of scikit-learn's digits",
        raw_images=(to_uint8(images[train_idx], 1.0), to_uint8(images[test_idx], 1.0)),
    )
