"""Data handed in through the Python API, brought to what training expects or refused by name.

Training needs floating-point inputs (float32) and int64 class labels. What is converted:
float64/float16/bfloat16 inputs to float32; integer labels of any width, and floating-point
labels holding whole numbers, to int64. What is refused, with the dtype named: integer inputs
(uint8 images: scaling them is the user's choice, e.g. ``x.float() / 255``), labels that are not
whole numbers, and in-memory inputs holding NaN or infinite values.
"""

from __future__ import annotations

from typing import Any, Union

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..errors import DataError

#: Accepted input dtypes that are converted to float32 without loss of meaning.
FLOAT_INPUTS = (torch.float64, torch.float16, torch.bfloat16)


def conform_labels(labels: torch.Tensor, split: str) -> torch.Tensor:
    """``labels`` as int64; floating labels must hold whole numbers."""
    labels = torch.as_tensor(labels)
    if labels.dtype == torch.int64:
        return labels
    if labels.dtype == torch.bool or labels.is_complex():
        raise DataError(f"{split} labels have dtype {labels.dtype}; give integer class indices 0..C-1")
    if labels.is_floating_point():
        if not torch.isfinite(labels).all() or not torch.equal(labels, labels.round()):
            raise DataError(f"{split} labels have dtype {labels.dtype} and are not all whole numbers; give integer class indices 0..C-1")
    return labels.long()


def conform_inputs(inputs: torch.Tensor, split: str) -> torch.Tensor:
    """``inputs`` as float32; integer inputs are refused with their dtype named."""
    if not isinstance(inputs, torch.Tensor):
        raise DataError(f"{split} inputs must be tensors, got {type(inputs).__name__}")
    if inputs.dtype == torch.float32:
        return inputs
    if inputs.dtype in FLOAT_INPUTS:
        return inputs.float()
    raise DataError(
        f"{split} inputs have dtype {inputs.dtype}; vs-plugin trains on floating-point inputs: convert them "
        "(for 8-bit images, e.g. x.float() / 255, then normalise as the teacher was trained)"
    )


def check_finite(inputs: torch.Tensor, split: str) -> None:
    if inputs.is_floating_point():
        bad = ~torch.isfinite(inputs.reshape(len(inputs), -1)).all(dim=1)
        if bad.any():
            first = int(torch.nonzero(bad)[0])
            raise DataError(
                f"{split} inputs hold NaN or infinite values in {int(bad.sum())} sample(s) (first: index {first}); "
                "remove or replace them"
            )


class ConformingDataset(Dataset):
    """Wraps a dataset read sample by sample: inputs to float32, labels to int64 on the fly."""

    def __init__(self, dataset: Dataset, split: str) -> None:
        self.dataset = dataset
        self.split = split
        if hasattr(dataset, "targets"):
            self.targets = dataset.targets

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple:
        sample = self.dataset[index]
        inputs, label = sample[0], sample[1]
        return (conform_inputs(inputs, self.split), conform_labels(torch.as_tensor(label), self.split), *sample[2:])


def conform_data(data: Union[Dataset, DataLoader, Any], split: str) -> Union[Dataset, DataLoader]:
    """Training-ready ``data``: converted where that is safe, otherwise a :class:`DataError`.

    A :class:`TensorDataset` is converted at once (and checked for NaN/inf inputs); another
    Dataset is wrapped by :class:`ConformingDataset` after its first sample was checked; a
    DataLoader's first batch must already have float32 inputs and int64 labels.
    """
    if isinstance(data, TensorDataset):
        if len(data.tensors) < 2:
            raise DataError(f"the {split} TensorDataset needs (inputs, labels) tensors")
        inputs = conform_inputs(data.tensors[0], split)
        check_finite(inputs, split)
        labels = conform_labels(data.tensors[1], split)
        if inputs is data.tensors[0] and labels is data.tensors[1]:
            return data
        return TensorDataset(inputs, labels, *data.tensors[2:])
    if isinstance(data, DataLoader):
        try:
            batch = next(iter(data))
        except StopIteration:
            raise DataError(f"the {split} DataLoader yields no batches") from None
        inputs, labels = batch[0], batch[1]
        if not isinstance(inputs, torch.Tensor) or inputs.dtype != torch.float32 or torch.as_tensor(labels).dtype != torch.int64:
            raise DataError(
                f"the {split} DataLoader yields inputs of dtype {getattr(inputs, 'dtype', type(inputs).__name__)} and labels of "
                f"dtype {torch.as_tensor(labels).dtype}; a DataLoader must give float32 inputs and int64 labels "
                "(or pass the Dataset itself, which vs-plugin converts)"
            )
        return data
    if isinstance(data, Dataset):
        if len(data) == 0:  # type: ignore[arg-type]
            raise DataError(f"the {split} dataset is empty")
        wrapped = ConformingDataset(data, split)
        wrapped[0]  # noqa: B018 - raises now, naming the dtype, rather than mid-epoch
        return wrapped
    raise DataError(f"the {split} data must be a torch Dataset or DataLoader, got {type(data).__name__}")


__all__ = ["conform_data", "conform_inputs", "conform_labels", "check_finite", "ConformingDataset"]
