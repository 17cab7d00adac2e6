"""Checks done before a run writes anything: device, class counts, labels, model/data fit."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..errors import ConfigError, DataError, ModelError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device cuda was asked for but CUDA is not available (torch {torch.__version__}); use --device cpu")
    return torch.device(name)


def infer_num_classes(labels: Optional[torch.Tensor]) -> int:
    """The class count of training labels 0..C-1; every class must occur (a stray label such as
    999 would otherwise make a 1000-class head without a word)."""
    if labels is None:
        raise DataError(
            "cannot tell the number of classes: the training data exposes no labels (no .targets); "
            "pass num_classes= (or give a TensorDataset or a dataset with .targets)"
        )
    if len(labels) == 0:
        raise DataError("the training set is empty")
    if int(labels.min()) < 0:
        raise DataError(f"training labels must be class indices 0..C-1, got {int(labels.min())}")
    count = int(labels.max()) + 1
    present = torch.unique(labels)
    if len(present) < count:
        missing = sorted(set(range(count)) - set(present.tolist()))
        shown = ", ".join(map(str, missing[:5])) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        raise DataError(
            f"training labels range up to {count - 1} but {len(missing)} of the classes 0..{count - 1} never occur "
            f"(missing: {shown}); labels must be 0..C-1, or pass num_classes= when classes are really absent"
        )
    return count


def check_labels(labels: Optional[torch.Tensor], num_classes: int, split: str) -> None:
    if labels is not None and len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(f"{split} labels range over [{int(labels.min())}, {int(labels.max())}] but the models have {num_classes} classes")


def first_batch(loader) -> tuple:
    for batch in loader:
        return batch
    raise DataError("the training set is empty")


def check_models_fit_data(
    teacher: nn.Module, student: Optional[nn.Module], batch: tuple, num_classes: int, device: torch.device
) -> None:
    """One forward pass of each model on a real batch: outputs must be (B, num_classes)."""
    inputs = batch[0][:2].to(device)
    for role, model in (("teacher", teacher), ("student", student)):
        if model is None:
            continue
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                output = model(inputs)
        except Exception as error:  # noqa: BLE001 - any failure here is a shape problem with the data
            message = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise ModelError(f"the {role} cannot read inputs of shape {tuple(inputs.shape[1:])}: {message}") from None
        finally:
            model.train(was_training)
        if not isinstance(output, torch.Tensor) or output.dim() != 2:
            raise ModelError(f"the {role} must return (batch, classes) logits, got {getattr(output, 'shape', type(output))}")
        if output.shape[1] != num_classes:
            raise ModelError(f"class-count mismatch: the {role} outputs {output.shape[1]} classes but the data has {num_classes}")
