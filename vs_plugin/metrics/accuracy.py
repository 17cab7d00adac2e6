"""Top-1 accuracy of a classifier over a batch source."""

from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn as nn

from ..errors import DataError


@torch.no_grad()
def count_correct(model: nn.Module, batches: Iterable, device: Optional[torch.device] = None) -> tuple[int, int]:
    """(correct, total) top-1 counts over ``batches`` (model in eval mode; mode restored after).

    Counts rather than a ratio, so that shards of a distributed evaluation can be summed.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for inputs, targets in batches:
            logits = model(inputs.to(device))
            correct += int((logits.argmax(dim=-1) == targets.to(device)).sum())
            total += targets.shape[0]
    finally:
        model.train(was_training)
    return correct, total


def evaluate_accuracy(model: nn.Module, batches: Iterable, device: Optional[torch.device] = None) -> float:
    """Fraction of samples whose arg-max logit is the label."""
    correct, total = count_correct(model, batches, device)
    if total == 0:
        raise DataError("cannot measure accuracy on an empty test set")
    return correct / total
