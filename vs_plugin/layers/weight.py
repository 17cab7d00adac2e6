"""Per-weight (unstructured) sparse variational dropout layers.

Molchanov, Ashukha, Vetrov (2017). Every weight w has q(w) = N(theta, sigma^2) with trainable
``weight`` (theta) and ``log_sigma2``. Training uses the local reparametrisation trick:

.. math::

    \\mu = f(x, \\theta) + b,\\qquad \\mathrm{var} = f(x \\odot x, \\sigma^2),\\qquad
    y = \\mu + \\sqrt{\\mathrm{var} + 10^{-8}}\\,\\varepsilon

where f is the layer's own linear map (same stride, padding, dilation, groups) and the bias
enters the mean only. Eval is deterministic: weights with log_alpha >= threshold are zero.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from . import functional as vf
from .base import ConvMap, LinearMap, VariationalLayer
from .fused_linear import linear_sample
from .init import initial_log_sigma2


class SparseVDLayer(VariationalLayer):
    """Per-weight variational layer: adds ``log_sigma2`` of the weight's shape."""

    granularity = "weight"

    def _init_variational_parameters(self, init_log_sigma2: float) -> None:
        start = initial_log_sigma2(self.weight, init_log_sigma2, getattr(self, "min_init_log_alpha", None))
        if "log_sigma2" in self._parameters:
            with torch.no_grad():
                self.log_sigma2.copy_(start)
        else:
            self.log_sigma2 = nn.Parameter(start)

    def variational_parameters(self) -> tuple[Tensor, Tensor]:
        return self.weight, self.log_sigma2

    def deterministic_weight_and_bias(self) -> tuple[Tensor, Optional[Tensor]]:
        return self.weight * self.keep_mask().to(self.weight.dtype), self.bias

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            weight, bias = self.deterministic_weight_and_bias()
            return self.linear_map(x, weight, bias)
        if isinstance(self, nn.Linear):  # one autograd node for the whole step (fused_linear.py)
            out = linear_sample(self, x, self.weight, self.log_sigma2, self.bias, self.log_alpha_clip, self.kl_name)
            if out is not None:
                return out
        sigma2, _ = self.variance_and_kl()  # the KL term of this step reuses the same pass
        mean = self.linear_map(x, self.weight, self.bias)
        var = self.linear_map(x * x, sigma2)
        return vf.local_reparametrisation_sample(mean, var)


class VariationalLinear(LinearMap, SparseVDLayer, nn.Linear):
    """``nn.Linear`` with per-weight sparse variational dropout."""

    plain_type = nn.Linear


class VariationalConv1d(ConvMap, SparseVDLayer, nn.Conv1d):
    """``nn.Conv1d`` with per-weight sparse variational dropout."""

    plain_type = nn.Conv1d


class VariationalConv2d(ConvMap, SparseVDLayer, nn.Conv2d):
    """``nn.Conv2d`` (grouped and depthwise too) with per-weight sparse variational dropout."""

    plain_type = nn.Conv2d
