"""What every variational layer offers, whatever its granularity or kind.

A variational layer is a subclass of the plain layer it replaces (``nn.Linear``, ``nn.Conv1d``,
``nn.Conv2d``), so code that checks ``isinstance(m, nn.Conv2d)`` or reads ``m.weight``,
``m.stride`` keeps working. Its ``weight`` is the posterior mean (theta) and ``bias`` the plain bias;
the extra parameters depend on the granularity (see ``weight.py`` and ``channel.py``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from . import functional as vf
from .fused_kl import shared_variance_and_kl
from .init import DEFAULT_MIN_INIT_LOG_ALPHA


class VariationalLayer(nn.Module):
    """Mixin for variational layers; concrete classes also inherit a plain layer class.

    Subclasses set ``granularity`` and implement :meth:`log_alpha`, :meth:`keep_mask` and
    :meth:`deterministic_weight_and_bias`. The plain-layer side provides :meth:`linear_map`.
    """

    granularity: str = ""
    #: The plain class this layer replaces and turns back into (set by the concrete class).
    plain_type: type[nn.Module] = nn.Module

    def __init__(
        self,
        *args,
        init_log_sigma2: float = -10.0,
        min_init_log_alpha: Optional[float] = DEFAULT_MIN_INIT_LOG_ALPHA,
        threshold: float = vf.DEFAULT_THRESHOLD,
        log_alpha_clip: float = vf.DEFAULT_LOG_ALPHA_CLIP,
        kl: str = "sparse_vd",
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if kl not in vf.KL_APPROXIMATIONS:
            raise ConfigError(f"unknown KL approximation {kl!r}; known: {', '.join(sorted(vf.KL_APPROXIMATIONS))}")
        if log_alpha_clip <= 0:
            raise ConfigError(f"log_alpha_clip must be > 0, got {log_alpha_clip}")
        self.threshold = float(threshold)
        self.log_alpha_clip = float(log_alpha_clip)
        self.kl_name = kl
        self.min_init_log_alpha = None if min_init_log_alpha is None else float(min_init_log_alpha)
        self._init_variational_parameters(float(init_log_sigma2))

    # -- to be provided by the granularity ------------------------------------------------
    def _init_variational_parameters(self, init_log_sigma2: float) -> None:
        """(Re)set log sigma^2 by :func:`~vs_plugin.layers.init.initial_log_sigma2` from the current means."""
        raise NotImplementedError

    def variational_parameters(self) -> tuple[Tensor, Tensor]:
        """(mean, log sigma^2) of the posterior of every variational unit (weight or channel gate)."""
        raise NotImplementedError

    def log_alpha(self) -> Tensor:
        """Clipped log alpha of every variational unit (weight or channel)."""
        return vf.log_alpha(*self.variational_parameters(), self.log_alpha_clip)

    def deterministic_weight_and_bias(self) -> tuple[Tensor, Optional[Tensor]]:
        """The eval-time weight and bias: pruned units set to zero."""
        raise NotImplementedError

    # -- to be provided by the layer kind -------------------------------------------------
    def linear_map(self, x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        """The layer's own linear map f(x, W) + b (F.linear or the convolution)."""
        raise NotImplementedError

    def plain_kwargs(self) -> dict:
        """Constructor arguments of the plain layer with the same shape and hyper-parameters."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------
    def keep_mask(self) -> Tensor:
        """Boolean mask of the units kept at eval time: log_alpha < threshold."""
        return self.log_alpha() < self.threshold

    def variance_and_kl(self) -> tuple[Tensor, Tensor]:
        """(sigma^2 = exp(log sigma^2) of every unit, sum of KL(q || prior) over the units).

        One pass over the layer's variational parameters
        (:func:`~vs_plugin.layers.fused_kl.shared_variance_and_kl`): within a training step the
        forward pass (sigma^2) and the KL term reuse it, and its backward writes each parameter's
        gradient once.
        """
        return shared_variance_and_kl(self, *self.variational_parameters(), self.log_alpha_clip, self.kl_name)

    def kl(self) -> Tensor:
        """Sum over the layer's units of KL(q || prior), with the configured approximation.

        Computed in closed form together with sigma^2 (:meth:`variance_and_kl`); the autograd
        reference is :func:`~vs_plugin.layers.functional.kl_sum`.
        """
        return self.variance_and_kl()[1]

    @classmethod
    def from_plain(cls, module: nn.Module, **variational_kwargs) -> "VariationalLayer":
        """A variational copy of a plain layer; theta starts at the layer's trained weights."""
        weight = module.weight
        layer = _construct_uninitialised(cls, weight, **_plain_kwargs_of(module), **variational_kwargs)
        init_log_sigma2 = variational_kwargs.get("init_log_sigma2", -10.0)
        layer.min_init_log_alpha = variational_kwargs.get("min_init_log_alpha", DEFAULT_MIN_INIT_LOG_ALPHA)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if module.bias is not None:
                layer.bias.copy_(module.bias)
            layer._init_variational_parameters(float(init_log_sigma2))
        layer.train(module.training)
        return layer

    def to_plain(self) -> nn.Module:
        """A plain layer of the original type holding the eval-time (pruned) weights."""
        weight, bias = self.deterministic_weight_and_bias()
        plain = _construct_uninitialised(self.plain_type, self.weight, **self.plain_kwargs())
        with torch.no_grad():
            plain.weight.copy_(weight)
            if bias is not None:
                plain.bias.copy_(bias)
        plain.train(self.training)
        return plain

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, granularity={self.granularity}, threshold={self.threshold}, kl={self.kl_name}"


def _construct_uninitialised(cls: type[nn.Module], like: Tensor, **kwargs) -> nn.Module:
    """Build ``cls(**kwargs)`` on the meta device, then allocate (uninitialised) where ``like`` lives.

    Skips the random initialisation that the caller overwrites anyway.
    """
    return cls(**kwargs, device="meta", dtype=like.dtype).to_empty(device=like.device)


def _plain_kwargs_of(module: nn.Module) -> dict:
    if isinstance(module, nn.Linear):
        return dict(in_features=module.in_features, out_features=module.out_features, bias=module.bias is not None)
    if isinstance(module, nn.modules.conv._ConvNd):
        return dict(
            in_channels=module.in_channels,
            out_channels=module.out_channels,
            kernel_size=module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
        )
    raise TypeError(f"no plain constructor arguments for {type(module).__name__}")


class LinearMap:
    """Layer-kind side of a variational ``nn.Linear``."""

    def linear_map(self, x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        return F.linear(x, weight, bias)

    def plain_kwargs(self) -> dict:
        return _plain_kwargs_of(self)

    #: Axis of the output channels in the layer's output.
    def channel_axis(self, output: Tensor) -> int:
        return output.dim() - 1


class ConvMap:
    """Layer-kind side of a variational ``nn.Conv1d`` / ``nn.Conv2d`` (grouped and depthwise too)."""

    def linear_map(self, x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        return self._conv_forward(x, weight, bias)

    def plain_kwargs(self) -> dict:
        return _plain_kwargs_of(self)

    def channel_axis(self, output: Tensor) -> int:
        # Batched (N, C, ...) or unbatched (C, ...) input.
        return 1 if output.dim() == self.weight.dim() else 0
