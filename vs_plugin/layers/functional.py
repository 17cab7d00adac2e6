"""The math of sparse variational dropout, as pure functions.

Source: D. Molchanov, A. Ashukha, D. Vetrov, "Variational Dropout Sparsifies Deep Neural
Networks", ICML 2017 (Sparse VD); the VBD variant is from Y. Liu et al., "Variational Bayesian
Dropout with a Hierarchical Prior", CVPR 2019. Layers in this package call these functions; they
hold no state.

Each weight has the posterior q(w) = N(theta, sigma^2) (additive reparametrisation) and the
dropout rate alpha = sigma^2 / theta^2, so

.. math::  \\log\\alpha = \\log\\sigma^2 - \\log(\\theta^2 + \\epsilon),

clipped to [-clip, clip].
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# Constants of the KL approximation, fitted by Molchanov et al. (2017), eq. 14.
KL_K1 = 0.63576
KL_K2 = 1.87320
KL_K3 = 1.48695

#: Clip of log_alpha; Molchanov et al.'s reference code used 8 (and 10 in places).
DEFAULT_LOG_ALPHA_CLIP = 8.0
#: Eval-time pruning threshold on log_alpha, read off the bimodal log_alpha histogram by the
#: Sparse VD authors (alpha > e^3, i.e. dropout rate above ~0.95).
DEFAULT_THRESHOLD = 3.0
#: Keeps log(theta^2) finite when theta = 0.
THETA_EPS = 1e-8
#: Keeps sqrt(var) differentiable when the variance is 0 (local reparametrisation).
VARIANCE_EPS = 1e-8


def log_alpha(theta: Tensor, log_sigma2: Tensor, clip: float = DEFAULT_LOG_ALPHA_CLIP) -> Tensor:
    """log alpha = log sigma^2 - log(theta^2 + eps), clipped to [-clip, clip]."""
    return torch.clamp(log_sigma2 - torch.log(theta * theta + THETA_EPS), -clip, clip)


def kl_sparse_vd(log_alpha: Tensor) -> Tensor:
    """Per-weight KL(q || log-uniform prior), Molchanov et al. (2017) approximation.

    .. math::  -KL \\approx k_1 \\sigma(k_2 + k_3 \\log\\alpha) - \\tfrac12 \\log(1 + e^{-\\log\\alpha}) - k_1

    with k1 = 0.63576, k2 = 1.87320, k3 = 1.48695. Returns the KL (>= 0) element-wise.
    """
    negative_kl = KL_K1 * torch.sigmoid(KL_K2 + KL_K3 * log_alpha) - 0.5 * F.softplus(-log_alpha) - KL_K1
    return -negative_kl


def kl_vbd(log_alpha: Tensor) -> Tensor:
    """Per-weight KL of Variational Bayesian Dropout (hierarchical prior), Liu et al. (2019).

    .. math::  KL = \\tfrac12 \\log(1 + e^{-\\log\\alpha})
    """
    return 0.5 * F.softplus(-log_alpha)


#: KL approximations by name; the name is the ``kl`` setting of :class:`VariationalConfig`.
KL_APPROXIMATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "sparse_vd": kl_sparse_vd,
    "vbd": kl_vbd,
}


def kl_sum(mean: Tensor, log_sigma2: Tensor, clip: float = DEFAULT_LOG_ALPHA_CLIP, kind: str = "sparse_vd") -> Tensor:
    """Sum of the per-unit KL of ``kind`` at log alpha = log_alpha(mean, log_sigma2, clip)."""
    return KL_APPROXIMATIONS[kind](log_alpha(mean, log_sigma2, clip)).sum()


def local_reparametrisation_sample(mean: Tensor, var: Tensor) -> Tensor:
    """Sample pre-activations b ~ N(mean, var) (Kingma et al. 2015, local reparametrisation).

    .. math::  b = \\mu + \\sqrt{\\mathrm{var} + 10^{-8}} \\odot \\varepsilon,\\quad \\varepsilon \\sim N(0, 1)
    """
    return mean + torch.sqrt(var + VARIANCE_EPS) * torch.randn_like(mean)
