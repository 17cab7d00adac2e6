"""The KL sum with a hand-written backward pass: the same value as
:func:`vs_plugin.layers.functional.kl_sum`, in about half the element-wise kernels.

Autograd differentiates the KL through every intermediate (theta^2, the log, the clip, the
sigmoid, the softplus, ...), one kernel and one saved tensor each. The derivative has a closed
form, so this function saves only log alpha and the clip mask and computes it in one pass:

.. math::

    \\log\\alpha = \\mathrm{clip}(\\log\\sigma^2 - \\log(\\theta^2 + \\epsilon), -c, c)

    \\frac{\\partial KL}{\\partial \\log\\alpha} =
        -k_1 k_3\\, s (1 - s) - \\tfrac12 \\sigma(-\\log\\alpha),\\quad s = \\sigma(k_2 + k_3 \\log\\alpha)
        \\quad\\text{(Sparse VD, Molchanov et al. 2017, eq. 14)}

    \\frac{\\partial KL}{\\partial \\log\\alpha} = -\\tfrac12 \\sigma(-\\log\\alpha)
        \\quad\\text{(VBD, Liu et al. 2019)}

    \\frac{\\partial \\log\\alpha}{\\partial \\log\\sigma^2} = m,\\quad
    \\frac{\\partial \\log\\alpha}{\\partial \\theta} = -\\frac{2\\theta}{\\theta^2 + \\epsilon}\\, m

with m = 1 where the clip is inactive (-c <= raw log alpha <= c, as torch.clamp's gradient) and 0
elsewhere. ``tests/test_fused_kl.py`` checks value and gradients against autograd. Costs are in
docs/performance.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import functional as vf


class _KLSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mean: Tensor, log_sigma2: Tensor, clip: float, kind: str) -> Tensor:  # type: ignore[override]
        denominator = mean * mean
        denominator.add_(vf.THETA_EPS)
        raw = torch.log(denominator).neg_().add_(log_sigma2)
        inside = (raw >= -clip) & (raw <= clip)
        log_alpha = raw.clamp_(-clip, clip)
        if kind == "sparse_vd":
            kl = torch.sigmoid(vf.KL_K3 * log_alpha + vf.KL_K2).mul_(-vf.KL_K1).add_(vf.KL_K1)
            kl.add_(F.softplus(-log_alpha), alpha=0.5)
        else:
            kl = F.softplus(-log_alpha).mul_(0.5)
        ctx.kind = kind
        ctx.save_for_backward(mean, denominator, log_alpha, inside)
        return kl.sum()

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        mean, denominator, log_alpha, inside = ctx.saved_tensors
        grad = torch.sigmoid(-log_alpha).mul_(-0.5)  # d/dla of 0.5 softplus(-la)
        if ctx.kind == "sparse_vd":
            s = torch.sigmoid(vf.KL_K3 * log_alpha + vf.KL_K2)
            grad.sub_(s.mul_(1.0 - s).mul_(vf.KL_K1 * vf.KL_K3))
        grad.mul_(inside).mul_(grad_output)
        grad_log_sigma2 = grad if ctx.needs_input_grad[1] else None
        grad_mean = None
        if ctx.needs_input_grad[0]:
            grad_mean = mean * -2.0
            grad_mean.div_(denominator).mul_(grad)
        return grad_mean, grad_log_sigma2, None, None


def fused_kl_sum(mean: Tensor, log_sigma2: Tensor, clip: float = vf.DEFAULT_LOG_ALPHA_CLIP, kind: str = "sparse_vd") -> Tensor:
    """Sum of the per-unit KL of ``kind`` (``sparse_vd`` or ``vbd``), as :func:`~vs_plugin.layers.functional.kl_sum`.

    Uses the closed-form backward above (first derivatives only: a KL approximation added to
    :data:`~vs_plugin.layers.functional.KL_APPROXIMATIONS` without one here uses the autograd
    reference).
    """
    if kind not in vf.KL_APPROXIMATIONS:
        raise ValueError(f"unknown KL approximation {kind!r}; accepted: {', '.join(vf.KL_APPROXIMATIONS)}")
    if kind not in ("sparse_vd", "vbd"):
        return vf.kl_sum(mean, log_sigma2, clip, kind)
    return _KLSum.apply(mean, log_sigma2, float(clip), kind)
