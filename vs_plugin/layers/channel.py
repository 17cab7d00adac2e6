"""Per-output-channel (structured) variational layers: one multiplicative gate per channel.

Our extension for structured pruning (docs/method.md, "Sparse variational layers"), after group
variational dropout in C. Louizos, K. Ullrich, M. Welling, "Bayesian Compression for Deep
Learning", NeurIPS 2017. Output channel c is multiplied by a gate

.. math::  z_c \\sim N(\\mu_c, \\sigma_c^2),\\qquad \\log\\alpha_c = \\log\\sigma_c^2 - \\log\\mu_c^2,

with the same log-uniform prior and KL approximation as per-weight Sparse VD. The gate multiplies
the whole channel output including its bias, so a removed channel outputs exactly zero. In training
a gate value is drawn per example and channel (local reparametrisation at the gate level); at eval
the gate is mu_c, or 0 when log_alpha_c >= threshold. The weights themselves are point estimates.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from .base import ConvMap, LinearMap, VariationalLayer
from .init import initial_log_sigma2


class ChannelGateLayer(VariationalLayer):
    """Variational layer with a Gaussian gate on each output channel (``gate_mu``, ``gate_log_sigma2``)."""

    granularity = "channel"

    def _init_variational_parameters(self, init_log_sigma2: float) -> None:
        channels = self.weight.shape[0]
        mean = torch.ones(channels, device=self.weight.device, dtype=self.weight.dtype)
        start = initial_log_sigma2(mean, init_log_sigma2, getattr(self, "min_init_log_alpha", None))
        if "gate_mu" in self._parameters:
            with torch.no_grad():
                self.gate_mu.fill_(1.0)
                self.gate_log_sigma2.copy_(start)
            return
        self.gate_mu = nn.Parameter(mean)
        self.gate_log_sigma2 = nn.Parameter(start)

    def variational_parameters(self) -> tuple[Tensor, Tensor]:
        return self.gate_mu, self.gate_log_sigma2

    def eval_gate(self) -> Tensor:
        """Deterministic gate: mu_c for kept channels, 0 for pruned ones."""
        return self.gate_mu * self.keep_mask().to(self.gate_mu.dtype)

    def deterministic_weight_and_bias(self) -> tuple[Tensor, Optional[Tensor]]:
        gate = self.eval_gate()
        weight = self.weight * gate.view(-1, *([1] * (self.weight.dim() - 1)))
        bias = None if self.bias is None else self.bias * gate
        return weight, bias

    def _broadcast(self, gate: Tensor, output: Tensor, axis: int) -> Tensor:
        shape = [1] * output.dim()
        shape[axis] = -1
        return gate.view(shape)

    def forward(self, x: Tensor) -> Tensor:
        h = self.linear_map(x, self.weight, self.bias)
        axis = self.channel_axis(h)
        if not self.training:
            return h * self._broadcast(self.eval_gate(), h, axis)
        # One gate sample per example and channel: noise of shape (N, 1.., C, 1..).
        noise_shape = [1] * h.dim()
        noise_shape[axis] = h.shape[axis]
        if axis != 0:
            noise_shape[0] = h.shape[0]
        eps = torch.randn(noise_shape, device=h.device, dtype=h.dtype)
        mu = self._broadcast(self.gate_mu, h, axis)
        sigma2, _ = self.variance_and_kl()  # the KL term of this step reuses the same pass
        sigma = self._broadcast(torch.sqrt(sigma2), h, axis)
        return h * (mu + sigma * eps)


class GatedLinear(LinearMap, ChannelGateLayer, nn.Linear):
    """``nn.Linear`` with a variational gate on each output feature."""

    plain_type = nn.Linear


def is_depthwise(module: nn.Module) -> bool:
    """A convolution with one group per output channel (torch-pruning's definition of depthwise)."""
    return isinstance(module, nn.modules.conv._ConvNd) and module.groups == module.out_channels and module.out_channels > 1


class _DepthwiseFromPlain:
    """``from_plain`` of a gated convolution returns its depthwise subclass for a depthwise layer.

    torch-pruning couples a depthwise convolution's input and output channels, and decides how to
    prune a layer by its exact class; a class of its own lets the gates' pruning function
    (``vs_plugin.integrations.torch_pruning.gates``) couple them too.
    """

    depthwise_type: Optional[type] = None

    @classmethod
    def from_plain(cls, module: nn.Module, **variational_kwargs):
        if cls.depthwise_type is not None and cls is not cls.depthwise_type and is_depthwise(module):
            return cls.depthwise_type.from_plain(module, **variational_kwargs)
        return super().from_plain(module, **variational_kwargs)


class GatedConv1d(_DepthwiseFromPlain, ConvMap, ChannelGateLayer, nn.Conv1d):
    """``nn.Conv1d`` (grouped too) with a variational gate on each output channel."""

    plain_type = nn.Conv1d


class GatedConv2d(_DepthwiseFromPlain, ConvMap, ChannelGateLayer, nn.Conv2d):
    """``nn.Conv2d`` (grouped too) with a variational gate on each output channel."""

    plain_type = nn.Conv2d


class GatedDepthwiseConv1d(GatedConv1d):
    """A depthwise ``nn.Conv1d`` (groups == out_channels) with a variational gate on each channel."""


class GatedDepthwiseConv2d(GatedConv2d):
    """A depthwise ``nn.Conv2d`` (groups == out_channels) with a variational gate on each channel."""


GatedConv1d.depthwise_type = GatedDepthwiseConv1d
GatedConv2d.depthwise_type = GatedDepthwiseConv2d
