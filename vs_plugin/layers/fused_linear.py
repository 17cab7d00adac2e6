"""The training forward of a per-weight variational ``nn.Linear`` as one autograd node.

Built from plain ops, a training step of :class:`~vs_plugin.layers.weight.VariationalLinear`
is eight autograd nodes (the per-weight pass, the two products, x*x, +eps, sqrt, the noise's
product and sum), and theta receives two gradients, one from the mean path and one from the KL,
that autograd adds in a third pass over the weights. This node computes the same numbers:

.. math::

    \\mu = x\\theta^\\top + b,\\quad v = (x \\odot x)\\,(\\sigma^2)^\\top,\\quad
    s = \\sqrt{v + 10^{-8}},\\quad y = \\mu + s \\odot \\varepsilon
    \\quad\\text{(local reparametrisation, Kingma et al. 2015)}

and its backward pass, with g = dL/dy, g_v = g \\odot \\varepsilon / (2 s) and g_KL = dL/dKL,

.. math::

    \\frac{\\partial L}{\\partial \\theta} = g^\\top x + g_{KL} \\frac{\\partial KL}{\\partial \\theta},\\quad
    \\frac{\\partial L}{\\partial \\log\\sigma^2} = \\sigma^2 \\odot (g_v^\\top (x \\odot x))
        + g_{KL} \\frac{\\partial KL}{\\partial \\log\\sigma^2},\\quad
    \\frac{\\partial L}{\\partial x} = g\\,\\theta + 2 x \\odot (g_v\\, \\sigma^2),\\quad
    \\frac{\\partial L}{\\partial b} = \\textstyle\\sum_{batch} g

writes theta's gradient once (the KL part is the ``beta`` term of the matrix product's addmm)
and log sigma^2's in one loop after its product; theta's is accumulated in place into the
buffer of dKL/dtheta that the forward pass wrote (no copy, no new allocation). The per-weight pass (sigma^2, the KL and its
derivatives) is :func:`vs_plugin.layers.fused_kl.variational_pass`, shared with the objective's
KL term as before (:func:`vs_plugin.layers.fused_kl.shared_variance_and_kl`).

It is used for float32/float64 parameters and inputs outside autocast; any other case (bf16
autocast, half-precision parameters, a KL without a closed form, a second call in the same
step) takes the plain-op path, which computes the same numbers. ``tests/test_fused_linear.py``
checks values and gradients against that path, including a float64 gradcheck.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import functional as vf
from .compiled import compiled_or_eager
from .fused_kl import _PASS, FUSED_KINDS, _BackwardToken, share, shared_result

#: Parameter and input dtypes this node computes in (half precision goes the plain-op path).
DTYPES = (torch.float32, torch.float64)


def variance_gradient(product: Tensor, sigma2: Tensor, grad_kl: Tensor, d_log_sigma2: Tensor) -> Tensor:
    """grad log sigma^2 = sigma^2 (g_v^T (x x)) + g_KL dKL/dlog sigma^2, one loop."""
    return product * sigma2 + grad_kl * d_log_sigma2


_VARIANCE_GRADIENT = compiled_or_eager(variance_gradient)


class _LinearSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, theta: Tensor, log_sigma2: Tensor, bias: Optional[Tensor], clip: float, sparse_vd: bool, token: _BackwardToken):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        ctx.token = token
        sigma2, d_theta, d_log_sigma2, kl = _PASS(theta.reshape(-1), log_sigma2.reshape(-1), clip, sparse_vd)
        sigma2 = sigma2.view(theta.shape)
        x2 = x.reshape(-1, x.shape[-1])
        squared = x2 * x2
        mean = F.linear(x2, theta, bias)
        std = F.linear(squared, sigma2).add_(vf.VARIANCE_EPS).sqrt_()
        noise = torch.randn_like(mean)
        out = torch.addcmul(mean, std, noise)
        ratio = noise.div_(std.mul_(2.0))  # d std / d var times the noise: g_v = g * ratio
        ctx.save_for_backward(x2, squared, theta, log_sigma2, sigma2, d_log_sigma2, ratio)
        # Held outside save_for_backward: the first backward pass adds the weight gradient into
        # it in place and hands it over as theta's gradient (a second one recomputes it).
        ctx.d_theta = d_theta
        ctx.clip, ctx.sparse_vd = clip, sparse_vd
        ctx.x_shape = x.shape
        return out.view(*x.shape[:-1], theta.shape[0]), sigma2, kl

    @staticmethod
    def backward(ctx, grad_out: Optional[Tensor], grad_sigma2: Optional[Tensor], grad_kl: Optional[Tensor]):  # type: ignore[override]
        ctx.token.done = True
        x2, squared, theta, log_sigma2, sigma2, d_log_sigma2, ratio = ctx.saved_tensors
        d_theta, ctx.d_theta = ctx.d_theta, None
        if d_theta is None:  # a second backward through this graph (retain_graph): recompute
            d_theta = _PASS(theta.detach().reshape(-1), log_sigma2.detach().reshape(-1), ctx.clip, ctx.sparse_vd)[1]
        needs_x, needs_theta, needs_log_sigma2, needs_bias = ctx.needs_input_grad[:4]
        grad_x = grad_theta = grad_log_sigma2 = grad_bias = None
        g = g_var = None
        if grad_out is not None:
            g = grad_out.reshape(-1, grad_out.shape[-1])
            g_var = g * ratio
            if needs_x:
                grad_x = torch.addcmul(g @ theta, x2, g_var @ sigma2, value=2.0).view(ctx.x_shape)
            if needs_bias:
                grad_bias = g.sum(0)
        if needs_theta:
            kl_part = None if grad_kl is None else d_theta.view(theta.shape)
            if g is None:
                grad_theta = None if kl_part is None else kl_part * grad_kl
            elif kl_part is None:
                grad_theta = g.t() @ x2
            elif grad_kl.device.type == "cpu":  # in place, beta as a number: no copy, no extra pass
                grad_theta = kl_part.addmm_(g.t(), x2, beta=float(grad_kl))
            else:  # no device sync for the number
                grad_theta = kl_part.mul_(grad_kl).addmm_(g.t(), x2)
        if needs_log_sigma2:
            product = None if g_var is None else g_var.t() @ squared
            if grad_sigma2 is not None:
                product = grad_sigma2 if product is None else product + grad_sigma2
            if product is None:
                grad_log_sigma2 = None if grad_kl is None else (grad_kl * d_log_sigma2).view(theta.shape)
            else:
                kl_grad = torch.zeros((), dtype=sigma2.dtype, device=sigma2.device) if grad_kl is None else grad_kl
                grad_log_sigma2 = _VARIANCE_GRADIENT(product.reshape(-1), sigma2.reshape(-1), kl_grad, d_log_sigma2).view(theta.shape)
        return grad_x, grad_theta, grad_log_sigma2, grad_bias, None, None, None


def applies(x: Tensor, theta: Tensor, log_sigma2: Tensor, bias: Optional[Tensor], kind: str) -> bool:
    """Whether :func:`linear_sample` computes this call (else the plain-op path does)."""
    if kind not in FUSED_KINDS or not torch.is_grad_enabled() or torch.is_autocast_enabled(x.device.type):
        return False
    if not (theta.requires_grad or log_sigma2.requires_grad):
        return False
    tensors = (x, theta, log_sigma2) if bias is None else (x, theta, log_sigma2, bias)
    return theta.dtype in DTYPES and all(t.dtype == theta.dtype and t.device == theta.device for t in tensors) and x.dim() >= 1


def linear_sample(owner: object, x: Tensor, theta: Tensor, log_sigma2: Tensor, bias: Optional[Tensor], clip: float, kind: str) -> Optional[Tensor]:
    """One local-reparametrisation sample of a per-weight variational Linear, or None.

    None when :func:`applies` says no, or when ``owner`` already ran its per-weight pass in this
    step (a second call: the caller reuses that pass through the plain-op path). The KL of the
    pass is shared with ``owner``'s later :meth:`~vs_plugin.layers.base.VariationalLayer.kl`.
    """
    if not applies(x, theta, log_sigma2, bias, kind) or shared_result(owner, theta, log_sigma2, clip, kind) is not None:
        return None
    token = _BackwardToken()
    out, sigma2, kl = _LinearSample.apply(x, theta, log_sigma2, bias, float(clip), kind == "sparse_vd", token)
    share(owner, theta, log_sigma2, clip, kind, token, (sigma2, kl))
    return out
