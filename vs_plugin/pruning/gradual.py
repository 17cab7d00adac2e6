"""Reach a sparsity target during the variational phase: hard-mask by log alpha on the cubic schedule.

Gradual magnitude pruning (Zhu & Gupta 2017) removes weights while the network trains, so the
survivors adapt to each cut; the Variational Student's old recipe instead let the KL push log
alpha up for the whole phase (a controller scaling the KL weight to follow a ramp) and cut to the
target once, at the end. This module gives the variational phase the gradual schedule with the
variational ranking: every :data:`UPDATE_EVERY_STEPS` steps during the first ``ramp`` of the
phase, the units of highest log alpha are masked until the sparsity reaches

.. math::

    s_t = s_f\\left(1 - \\left(1 - \\frac{t}{n}\\right)^3\\right)

(:func:`vs_plugin.pruning.cubic_sparsity`, n = the ramp's steps, s_f = the target), one global
ranking with the per-layer floor of :func:`vs_plugin.pruning.global_keep_masks`; a masked unit
never comes back. The KL keeps its plain weight (the ELBO's 1/N, tempered on small data): it
ranks the units, the schedule decides how many go.

A masked unit has theta = 0 and log sigma^2 = log(eps) + min(clip, threshold + 1): its log alpha
lies above the threshold (so every count of kept units agrees with the masks) and its variance
(about 5e-7 at the default threshold 3) adds almost no noise. A :class:`vs_plugin.pruning.MaskKeeper`
holds them there through every optimizer step, as it holds pruned weights at zero in the fine-tune.

Measured (``docs/results.md`` section 12, 3 seeds): on the paper MLP at 98% and 99% sparsity it
lifts the Variational Student by 0.46 / 0.75 points to level with gradual magnitude pruning + KD;
on digits it changes little; with ``compress``'s defaults on digits (log sigma^2 starting at -15,
most log alpha tied at the -6 floor) it is worse, so ``prune_schedule="end"`` stays the default.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..layers.functional import THETA_EPS
from ..variationalize import variational_layers
from .masking import MaskKeeper
from .schedule import cubic_sparsity
from .target import DEFAULT_LAYER_FLOOR, global_keep_masks, log_alpha_scores

#: Steps between two mask updates: one update is a global top-k over every unit, and updating at
#: every step made a paper-MLP epoch on Fashion-MNIST about twice as slow during the ramp.
UPDATE_EVERY_STEPS = 10


def masked_log_sigma2(threshold: float, clip: float) -> float:
    """log sigma^2 of a masked unit (theta = 0): log alpha = min(clip, threshold + 1)."""
    return math.log(THETA_EPS) + min(clip, threshold + 1.0)


class GradualLogAlphaPruning:
    """Mask a variational model's units of highest log alpha on the cubic schedule while it trains.

    Args:
        model: the (plain, not DDP-wrapped) variational student.
        target: the sparsity reached at the end of the ramp, in [0, 1).
        ramp_steps: optimizer steps over which the sparsity rises from 0 to ``target``.
        floor: the per-layer floor of :func:`vs_plugin.pruning.global_keep_masks`.
        update_every: steps between two mask updates (and the ramp's last step).

    Use :meth:`wrap` on the step function, :meth:`attach` to the optimizer, and :meth:`scores`
    for the final cut (masked units score -inf, so it keeps none of them).
    """

    def __init__(
        self, model: nn.Module, target: float, ramp_steps: int, floor: float = DEFAULT_LAYER_FLOOR,
        update_every: int = UPDATE_EVERY_STEPS,
    ) -> None:
        self.layers = dict(variational_layers(model))
        self.model = model
        self.target = target
        self.ramp_steps = max(1, int(ramp_steps))
        self.floor = floor
        self.update_every = max(1, int(update_every))
        self.masks: Optional[dict[str, Tensor]] = None
        self.sparsity = 0.0  # of the masks in force
        self._keeper = MaskKeeper()
        self._optimizer: Optional[torch.optim.Optimizer] = None

    # -- the schedule -------------------------------------------------------------------------
    def sparsity_at(self, steps_done: int) -> float:
        return cubic_sparsity(steps_done, self.ramp_steps, self.target)

    def due(self, steps_done: int) -> bool:
        return steps_done <= self.ramp_steps and (steps_done % self.update_every == 0 or steps_done == self.ramp_steps)

    def scores(self) -> dict[str, Tensor]:
        """-log alpha of every unit, -inf where masked (a masked unit is never chosen again)."""
        scores = log_alpha_scores(self.model)
        if self.masks is None:
            return scores
        return {name: score.masked_fill(~self.masks[name].to(score.device), -math.inf) for name, score in scores.items()}

    def update(self, steps_done: int) -> None:
        """Mask down to the schedule's sparsity after ``steps_done`` optimizer steps (never back up)."""
        sparsity = self.sparsity_at(steps_done)
        if self.masks is not None and sparsity <= self.sparsity:
            return
        self.sparsity = sparsity
        masks = global_keep_masks(self.scores(), sparsity, self.floor)
        self._set_masks({name: mask.to(self._device(name)) for name, mask in masks.items()})
        self.enforce()

    def wrap(self, step):
        """The step function with the masks updated before the steps the schedule names."""

        def pruned_step(batch: tuple, global_step: int) -> dict:
            if self.due(global_step + 1):
                self.update(global_step + 1)
            return step(batch, global_step)

        return pruned_step

    # -- keeping masked units masked -------------------------------------------------------------
    def enforce(self) -> None:
        """theta = 0 and log sigma^2 at :func:`masked_log_sigma2` for every masked unit."""
        self._keeper.apply()

    def attach(self, optimizer: torch.optim.Optimizer) -> "GradualLogAlphaPruning":
        """Hold the masked units through every step of ``optimizer`` (a :class:`MaskKeeper` per mask update)."""
        self._optimizer = optimizer
        self._keeper.attach(optimizer)
        return self

    def detach(self) -> None:
        self._keeper.detach()
        self._optimizer = None

    def _set_masks(self, masks: Optional[dict[str, Tensor]]) -> None:
        self.masks = masks
        self._keeper.detach()
        self._keeper = MaskKeeper()
        for name, keep in (masks or {}).items():
            layer = self.layers[name]
            mean, log_sigma2 = layer.variational_parameters()
            self._keeper.add(mean, keep)
            self._keeper.add(log_sigma2, keep, fill=masked_log_sigma2(layer.threshold, layer.log_alpha_clip))
        if self._optimizer is not None:
            self._keeper.attach(self._optimizer)

    def _device(self, name: str) -> torch.device:
        return self.layers[name].variational_parameters()[0].device

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        masks = None if self.masks is None else {name: mask.cpu() for name, mask in self.masks.items()}
        return {"masks": masks, "sparsity": self.sparsity}

    def load_state_dict(self, state: dict) -> None:
        masks = state.get("masks")
        self.sparsity = float(state.get("sparsity", 0.0))
        self._set_masks(None if masks is None else {name: mask.to(self._device(name)).bool() for name, mask in masks.items()})


__all__ = ["GradualLogAlphaPruning", "UPDATE_EVERY_STEPS", "masked_log_sigma2"]
