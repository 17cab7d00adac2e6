"""A guard against the silent "optimizer built before ``variationalize``" trap.

``variationalize`` replaces the student's layers: their ``log sigma^2`` parameters (and channel
gates) are new tensors, so an optimizer created earlier never updates them and the student
trains nothing, with no error. :class:`UpdateCheck` fingerprints those parameters at the first
training call and again a few calls later; if none has changed, it raises.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..errors import ConfigError, TrainingStalled
from ..layers.base import VariationalLayer

Fingerprint = tuple[tuple[int, ...], tuple[tuple[float, float], ...]]


def _watched(model: nn.Module) -> list[torch.Tensor]:
    """The log sigma^2 tensor of every variational layer that is meant to train."""
    tensors = []
    for module in model.modules():
        if isinstance(module, VariationalLayer):
            log_sigma2 = module.variational_parameters()[1]
            if log_sigma2.requires_grad:
                tensors.append(log_sigma2)
    return tensors


def _fingerprint(tensors: list[torch.Tensor]) -> Fingerprint:
    with torch.no_grad():
        values = tuple((float(t.double().sum()), float(t.double().square().sum())) for t in tensors)
    return tuple(id(t) for t in tensors), values


class UpdateCheck:
    """Raise when a model's variational parameters stay unchanged over ``after`` training calls.

    Args:
        model: the variational student (referenced, not owned).
        after: number of training calls between the two fingerprints; 0 disables the check.
    """

    def __init__(self, model: nn.Module, after: int) -> None:
        if not (isinstance(after, int) and not isinstance(after, bool) and after >= 0):
            raise ConfigError(f"check_updates must be an integer >= 0, got {after!r}")
        self._model = model
        self.after = after
        self.done = after == 0
        self._calls = 0
        self._first: Optional[Fingerprint] = None

    def observe(self) -> None:
        """Call once per training call, before that call's optimizer step."""
        if self.done:
            return
        self._calls += 1
        if self._first is None:
            tensors = _watched(self._model)
            if not tensors:  # nothing variational to watch (a plain or frozen student)
                self.done = True
                return
            self._first = _fingerprint(tensors)
            return
        if self._calls <= self.after:
            return
        current = _fingerprint(_watched(self._model))
        if current[0] != self._first[0]:  # the layers were replaced (e.g. pruned): start again
            self._first, self._calls = current, 1
            return
        self.done = True
        if current[1] == self._first[1]:
            raise TrainingStalled(
                f"the student's variational parameters (log sigma^2 of {len(current[0])} layer(s)) did not change "
                f"in {self.after} training steps: the optimizer does not update them. vs_plugin.variationalize "
                "replaces the student's layers and their parameters, so create the optimizer after it "
                "(e.g. torch.optim.Adam(student.parameters())) and call optimizer.step() after backward(); "
                "check_updates=0 switches this check off"
            )
