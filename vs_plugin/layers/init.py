"""The one initialisation rule for every variational unit (weights and channel gates).

Sparse VD starts log sigma^2 at a constant (-10 from scratch, -15 for trained weights, Molchanov
et al. 2017). For a unit with a large mean that puts log alpha = log sigma^2 - log theta^2 below
the clip (-8): there the clipped log alpha is constant, so the KL term sends it no gradient and the
unit never trains (a gate with mean 1 at -10 sits at log alpha -10; trained weights at -15 land
below -8 whenever |theta| > e^{-3.5} ~ 0.03). Our rule (vs-plugin's, not the papers'):

.. math::  \\log\\sigma^2_0 = \\max\\big(\\text{init\\_log\\_sigma2},\\; \\log(\\theta^2 + \\epsilon) + \\text{min\\_init\\_log\\_alpha}\\big)

so every unit starts with log alpha >= ``min_init_log_alpha`` (default -6, inside the clip);
units the constant already puts above it keep the constant. Every entry point (CLI, Python API,
NNI and torch-pruning pruners) builds its layers through this function.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .functional import THETA_EPS

#: Lowest log alpha any variational unit starts at (ours): 2 above the default clip of 8, so the
#: KL term has a gradient from the first step.
DEFAULT_MIN_INIT_LOG_ALPHA = -6.0


@torch.no_grad()
def initial_log_sigma2(mean: Tensor, init_log_sigma2: float, min_init_log_alpha: Optional[float]) -> Tensor:
    """log sigma^2 at initialisation for units of mean ``mean`` (same shape), by the rule above.

    Args:
        mean: the units' posterior means (weights theta, or gate means).
        init_log_sigma2: the constant start (-10 / -15 / user's choice).
        min_init_log_alpha: the lowest starting log alpha; None keeps the constant everywhere.
    """
    constant = torch.full_like(mean, float(init_log_sigma2))
    if min_init_log_alpha is None:
        return constant
    floor = torch.log(mean.detach() * mean.detach() + THETA_EPS) + float(min_init_log_alpha)
    return torch.maximum(constant, floor)


__all__ = ["DEFAULT_MIN_INIT_LOG_ALPHA", "initial_log_sigma2"]
