"""The variational (KL) term of the Variational Student loss and its warm-up schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import ConfigError
from ..layers.base import VariationalLayer
from ..layers.compiled import compile_mode_set_to


def variational_kl(model: nn.Module, compiled: Optional[bool] = None) -> Tensor:
    """Sum over the model's variational layers of KL(q(W) || p(W)) (each layer's own approximation).

    Within a training step each layer's KL comes from the pass its forward already ran
    (:meth:`~vs_plugin.layers.base.VariationalLayer.variance_and_kl`); otherwise it is computed.

    Args:
        model: any module; its variational layers contribute.
        compiled: for a KL computed here, True compiles the pass with ``torch.compile``, False
            runs it eagerly (the same numbers), None follows the process-wide mode of
            :mod:`vs_plugin.layers.compiled`.

    Returns a 0-dim tensor (zero when the model has no variational layer).
    """
    layers = [m for m in model.modules() if isinstance(m, VariationalLayer)]
    with compile_mode_set_to(None if compiled is None else ("on" if compiled else "off")):
        terms = [m.kl() for m in layers]
    if not terms:
        parameter = next(model.parameters(), None)
        return torch.zeros((), device=None if parameter is None else parameter.device)
    return torch.stack([t.float() for t in terms]).sum()


@dataclass(frozen=True)
class KLWarmup:
    """beta(step): 0 until ``start_step``, then linear to 1 at ``end_step``, then 1.

    Sparse VD trained with beta = 0 for 5 epochs, then linearly to 1 by epoch 20 (Molchanov et
    al. 2017); the default here is a linear ramp from step 0.

    ``step`` is a global optimizer step that never restarts with an epoch (``enumerate(loader)``
    does, and would keep beta below 1 for ever). Passing the schedule to
    ``VariationalStudentObjective(..., warmup=...)`` lets the objective count the steps itself.
    """

    end_step: int
    start_step: int = 0

    def __post_init__(self) -> None:
        if self.start_step < 0 or self.end_step < self.start_step:
            raise ConfigError(f"KL warm-up needs 0 <= start ({self.start_step}) <= end ({self.end_step})")

    @classmethod
    def from_epochs(cls, warmup_epochs: float, steps_per_epoch: int, hold_epochs: float = 0.0) -> "KLWarmup":
        """beta = 0 for ``hold_epochs``, then linear to 1 over ``warmup_epochs``."""
        if warmup_epochs < 0 or hold_epochs < 0:
            raise ConfigError(f"KL warm-up epochs must be >= 0, got warmup={warmup_epochs}, hold={hold_epochs}")
        start = round(hold_epochs * steps_per_epoch)
        return cls(end_step=start + round(warmup_epochs * steps_per_epoch), start_step=start)

    def beta(self, step: int) -> float:
        if step < self.start_step:
            return 0.0
        if step >= self.end_step:
            return 1.0
        return (step - self.start_step) / (self.end_step - self.start_step)
