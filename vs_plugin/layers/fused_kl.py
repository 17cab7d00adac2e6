"""The per-weight work of a variational layer in one pass: sigma^2 for the variance path, the KL
sum and the KL's gradient, with a hand-written backward pass.

Autograd would differentiate the KL through every intermediate (theta^2, the log, the clip, the
sigmoid, the softplus, ...), one kernel and one saved tensor each, and compute exp(log sigma^2)
for the local reparametrisation in passes of its own. The derivative has a closed form, so one
pass over (theta, log sigma^2) gives everything a training step needs:

.. math::

    \\sigma^2 = e^{\\log\\sigma^2},\\qquad
    \\log\\alpha = \\mathrm{clip}(\\log\\sigma^2 - \\log(\\theta^2 + \\epsilon), -c, c)

    KL = k_1 - k_1 s + \\tfrac12 \\log(1 + e^{-\\log\\alpha}),\\quad s = \\sigma(k_2 + k_3 \\log\\alpha)
        \\quad\\text{(Sparse VD, Molchanov et al. 2017, eq. 14)}

    \\frac{\\partial KL}{\\partial \\log\\alpha} =
        -k_1 k_3\\, s (1 - s) - \\tfrac12 \\sigma(-\\log\\alpha)
        \\quad\\text{(VBD, Liu et al. 2019: only the second term)}

    \\frac{\\partial \\log\\alpha}{\\partial \\log\\sigma^2} = m,\\quad
    \\frac{\\partial \\log\\alpha}{\\partial \\theta} = -\\frac{2\\theta}{\\theta^2 + \\epsilon}\\, m

with m = 1 where the clip is inactive (-c <= raw log alpha <= c, as torch.clamp's gradient) and 0
elsewhere. Where the clip is inactive, e^{log alpha} = sigma^2 / (theta^2 + eps), which turns the
softplus and the second sigmoid into a log and a division of numbers the pass already has:

.. math::

    \\log(1 + e^{-\\log\\alpha}) = \\log(\\theta^2 + \\epsilon + \\sigma^2) - \\log\\sigma^2,\\qquad
    \\sigma(-\\log\\alpha) = \\frac{\\theta^2 + \\epsilon}{\\theta^2 + \\epsilon + \\sigma^2}

(where the clip is active the gradient is 0 and the softplus is a constant of c). So the pass
costs three exponentials/logarithms per weight for sigma^2 and the gradient, and one more log
for the KL's value. The backward pass is one multiply-add per weight:
grad theta = g_KL dKL/dtheta, grad log sigma^2 = g_sigma2 sigma^2 + g_KL dKL/dlog sigma^2.

On CPU the pass and the backward run as one loop each when ``torch.compile`` is available (see
:mod:`vs_plugin.layers.compiled`), else as eager PyTorch ops (the same numbers). Parameters in
bf16/fp16 are computed in fp32. ``tests/test_fused_kl.py`` checks value and gradients against the
autograd reference :func:`vs_plugin.layers.functional.kl_sum`; costs are in docs/performance.md.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from typing import Optional

import torch
from torch import Tensor

from . import functional as vf
from .compiled import compiled_or_eager

#: KL approximations with a closed-form pass here; any other one uses the autograd reference.
FUSED_KINDS = ("sparse_vd", "vbd")


def _softplus(value: float) -> float:
    return math.log1p(math.exp(-abs(value))) + max(value, 0.0)


def variational_pass(theta: Tensor, log_sigma2: Tensor, clip: float, sparse_vd: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One pass over a layer's parameters (flat, same shape).

    Returns (sigma^2, dKL/dtheta, dKL/dlog sigma^2, KL sum), all in the compute dtype (fp32 for
    half-precision parameters) except sigma^2, which has the parameters' dtype.
    """
    th = theta.float() if theta.dtype in (torch.bfloat16, torch.float16) else theta
    ls = log_sigma2.to(th.dtype)
    t2 = th * th + vf.THETA_EPS
    sigma2 = torch.exp(ls)
    raw = ls - torch.log(t2)
    inside = (raw >= -clip) & (raw <= clip)
    u = raw.clamp(-clip, clip)
    denominator = t2 + sigma2
    neg_sigmoid = t2 / denominator  # sigma(-log alpha) where the clip is inactive
    softplus_neg = torch.where(  # log(1 + e^{-log alpha})
        inside, torch.log(denominator) - ls, torch.where(raw > clip, _softplus(-clip), _softplus(clip))
    )
    if sparse_vd:
        s = torch.sigmoid(vf.KL_K3 * u + vf.KL_K2)
        d_u = -vf.KL_K1 * vf.KL_K3 * s * (1.0 - s) - 0.5 * neg_sigmoid
        kl = vf.KL_K1 - vf.KL_K1 * s + 0.5 * softplus_neg
    else:
        d_u = -0.5 * neg_sigmoid
        kl = 0.5 * softplus_neg
    d_log_sigma2 = torch.where(inside, d_u, 0.0)
    d_theta = d_log_sigma2 * (-2.0 * th / t2)
    return sigma2.to(theta.dtype), d_theta, d_log_sigma2, kl.sum()


def backward_pass(grad_sigma2: Tensor, sigma2: Tensor, grad_kl: Tensor, d_theta: Tensor, d_log_sigma2: Tensor) -> tuple[Tensor, Tensor]:
    """(grad theta, grad log sigma^2) = (g_KL dKL/dtheta, g_sigma2 sigma^2 + g_KL dKL/dlog sigma^2), one loop."""
    return grad_kl * d_theta, grad_sigma2 * sigma2 + grad_kl * d_log_sigma2


_PASS = compiled_or_eager(variational_pass)
_BACKWARD = compiled_or_eager(backward_pass)


class _BackwardToken:
    """Set to ``done`` when the backward pass of one :class:`_VarianceAndKL` node has run."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


class _VarianceAndKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta: Tensor, log_sigma2: Tensor, clip: float, kind: str, token: Optional[_BackwardToken]) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        ctx.set_materialize_grads(False)
        ctx.token = token
        autocast = torch.is_autocast_enabled(theta.device.type)
        with torch.autocast(device_type=theta.device.type, enabled=False) if autocast else contextlib.nullcontext():
            sigma2, d_theta, d_log_sigma2, kl = _PASS(theta.reshape(-1), log_sigma2.reshape(-1), clip, kind == "sparse_vd")
        ctx.shape = theta.shape
        ctx.dtypes = (theta.dtype, log_sigma2.dtype)
        ctx.save_for_backward(sigma2, d_theta, d_log_sigma2)
        return sigma2.view(theta.shape), kl

    @staticmethod
    def backward(ctx, grad_sigma2: Optional[Tensor], grad_kl: Optional[Tensor]):  # type: ignore[override]
        if ctx.token is not None:
            ctx.token.done = True
        sigma2, d_theta, d_log_sigma2 = ctx.saved_tensors
        grad_theta = grad_log_sigma2 = None
        if grad_kl is None:  # the KL was not used: only the variance path's gradient
            if ctx.needs_input_grad[1] and grad_sigma2 is not None:
                grad_log_sigma2 = (grad_sigma2.reshape(-1) * sigma2).to(ctx.dtypes[1]).view(ctx.shape)
            return None, grad_log_sigma2, None, None, None
        grad_kl = grad_kl.to(d_theta.dtype)
        if grad_sigma2 is None:
            grad_sigma2 = torch.zeros((), dtype=sigma2.dtype, device=sigma2.device)
        grad_theta, grad_log_sigma2 = _BACKWARD(grad_sigma2.reshape(-1), sigma2, grad_kl, d_theta, d_log_sigma2)
        grad_theta = grad_theta.to(ctx.dtypes[0]).view(ctx.shape) if ctx.needs_input_grad[0] else None
        grad_log_sigma2 = grad_log_sigma2.to(ctx.dtypes[1]).view(ctx.shape) if ctx.needs_input_grad[1] else None
        return grad_theta, grad_log_sigma2, None, None, None


def _fused(mean: Tensor, log_sigma2: Tensor, kind: str) -> bool:
    """Whether ``kind`` has the closed-form pass; refuses unknown kinds and mismatched shapes."""
    if kind not in vf.KL_APPROXIMATIONS:
        raise ValueError(f"unknown KL approximation {kind!r}; accepted: {', '.join(vf.KL_APPROXIMATIONS)}")
    if mean.shape != log_sigma2.shape:
        raise ValueError(f"mean and log_sigma2 must have the same shape, got {tuple(mean.shape)} and {tuple(log_sigma2.shape)}")
    return kind in FUSED_KINDS


def variance_and_kl(
    mean: Tensor, log_sigma2: Tensor, clip: float = vf.DEFAULT_LOG_ALPHA_CLIP, kind: str = "sparse_vd"
) -> tuple[Tensor, Tensor]:
    """(sigma^2 = exp(log sigma^2), sum of the per-unit KL of ``kind``) from one pass.

    Both outputs belong to one autograd node: the backward pass gets the variance path's gradient
    and the KL's together and writes each parameter's gradient once. A KL approximation added to
    :data:`~vs_plugin.layers.functional.KL_APPROXIMATIONS` without a closed form here uses the
    autograd reference.
    """
    if not _fused(mean, log_sigma2, kind):
        return torch.exp(log_sigma2), vf.kl_sum(mean, log_sigma2, clip, kind)
    return _VarianceAndKL.apply(mean, log_sigma2, float(clip), kind, None)


class _Shared:
    """One layer's pass of the current step: valid while its parameters are unchanged and the
    backward pass has not consumed it."""

    __slots__ = ("mean", "log_sigma2", "versions", "settings", "token", "result")

    def __init__(self, mean: Tensor, log_sigma2: Tensor, settings: tuple, token: _BackwardToken, result: tuple[Tensor, Tensor]) -> None:
        self.mean, self.log_sigma2, self.settings, self.token, self.result = mean, log_sigma2, settings, token, result
        self.versions = (mean._version, log_sigma2._version)

    def valid_for(self, mean: Tensor, log_sigma2: Tensor, settings: tuple) -> bool:
        return (
            not self.token.done
            and self.mean is mean
            and self.log_sigma2 is log_sigma2
            and self.versions == (mean._version, log_sigma2._version)
            and self.settings == settings
        )


#: Per layer (weakly held, so never copied with the module or kept alive by this table).
_SHARED: "weakref.WeakKeyDictionary[object, _Shared]" = weakref.WeakKeyDictionary()


def shared_result(owner: object, mean: Tensor, log_sigma2: Tensor, clip: float, kind: str) -> Optional[tuple[Tensor, Tensor]]:
    """The (sigma^2, KL) of ``owner``'s pass of the current step, or None when there is no valid one."""
    entry = _SHARED.get(owner)
    if entry is not None and entry.valid_for(mean, log_sigma2, (float(clip), kind)):
        return entry.result
    return None


def share(owner: object, mean: Tensor, log_sigma2: Tensor, clip: float, kind: str, token: _BackwardToken, result: tuple[Tensor, Tensor]) -> None:
    """Record ``result`` (sigma^2, KL of one autograd node whose backward sets ``token.done``) as ``owner``'s pass of this step."""
    _SHARED[owner] = _Shared(mean, log_sigma2, (float(clip), kind), token, result)


def shared_variance_and_kl(owner: object, mean: Tensor, log_sigma2: Tensor, clip: float, kind: str) -> tuple[Tensor, Tensor]:
    """:func:`variance_and_kl` computed once per training step for ``owner`` (a layer).

    A training step calls it twice with the same parameters: the layer's forward needs sigma^2,
    the objective the KL. The second call returns the first call's outputs, so the pass runs once
    and its backward receives both gradients at once. The shared result is dropped when the
    parameters change (an optimizer step or any in-place write bumps their version counter, a
    new tensor replaces them) or when its backward pass has run (gradient accumulation: the next
    micro-batch computes a fresh graph). Without autograd (no_grad, frozen parameters) nothing
    is shared.
    """
    if not (torch.is_grad_enabled() and (mean.requires_grad or log_sigma2.requires_grad)):
        return variance_and_kl(mean, log_sigma2, clip, kind)
    shared = shared_result(owner, mean, log_sigma2, clip, kind)
    if shared is not None:
        return shared
    if not _fused(mean, log_sigma2, kind):
        return variance_and_kl(mean, log_sigma2, clip, kind)
    token = _BackwardToken()
    result = _VarianceAndKL.apply(mean, log_sigma2, float(clip), kind, token)
    share(owner, mean, log_sigma2, clip, kind, token, result)
    return result


def fused_kl_sum(mean: Tensor, log_sigma2: Tensor, clip: float = vf.DEFAULT_LOG_ALPHA_CLIP, kind: str = "sparse_vd") -> Tensor:
    """Sum of the per-unit KL of ``kind`` (``sparse_vd`` or ``vbd``), as :func:`~vs_plugin.layers.functional.kl_sum`.

    The KL output of :func:`variance_and_kl` (first derivatives only).
    """
    return variance_and_kl(mean, log_sigma2, clip, kind)[1]
