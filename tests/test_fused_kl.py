"""The fused KL sum equals the autograd reference in value and gradient."""

import pytest
import torch

from vs_plugin.layers import functional as vf
from vs_plugin.layers.fused_kl import fused_kl_sum


def _parameters(dtype=torch.float32, n=2000, seed=0):
    generator = torch.Generator().manual_seed(seed)
    mean = torch.randn(n, generator=generator, dtype=dtype) * 0.5
    mean[:50] = 0.0  # theta = 0: log alpha at the upper clip
    log_sigma2 = torch.empty(n, dtype=dtype).uniform_(-14.0, 2.0, generator=generator)
    return mean.requires_grad_(), log_sigma2.requires_grad_()


@pytest.mark.parametrize("kind", ["sparse_vd", "vbd"])
@pytest.mark.parametrize("clip", [8.0, 4.0])
def test_value_and_gradients_match_autograd(kind, clip):
    mean, log_sigma2 = _parameters()
    reference = vf.kl_sum(mean, log_sigma2, clip, kind)
    reference_grads = torch.autograd.grad(reference * 1.7, (mean, log_sigma2))
    fused = fused_kl_sum(mean, log_sigma2, clip, kind)
    fused_grads = torch.autograd.grad(fused * 1.7, (mean, log_sigma2))
    assert fused.item() == pytest.approx(reference.item(), rel=1e-5)
    for got, expected in zip(fused_grads, reference_grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    clipped = (vf.log_alpha(mean, log_sigma2, 1e9).abs() > clip).sum()
    assert clipped > 0  # the clip's zero gradient was exercised


@pytest.mark.parametrize("kind", ["sparse_vd", "vbd"])
def test_gradcheck_in_double(kind):
    mean, log_sigma2 = _parameters(torch.float64, n=40, seed=1)
    assert torch.autograd.gradcheck(lambda m, s: fused_kl_sum(m, s, 8.0, kind), (mean, log_sigma2))


def test_only_the_needed_gradient_is_computed():
    mean, log_sigma2 = _parameters()
    mean.requires_grad_(False)
    (grad,) = torch.autograd.grad(fused_kl_sum(mean, log_sigma2), (log_sigma2,))
    assert grad.shape == log_sigma2.shape and torch.isfinite(grad).all()


def test_unknown_kind_is_refused():
    mean, log_sigma2 = _parameters(n=4)
    with pytest.raises(ValueError, match="accepted: sparse_vd, vbd"):
        fused_kl_sum(mean, log_sigma2, 8.0, "gaussian")
