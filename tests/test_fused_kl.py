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


# -- the whole per-weight pass: sigma^2 for the variance path and the KL, one node ------------
from vs_plugin.layers.compiled import compile_mode_set_to  # noqa: E402
from vs_plugin.layers.fused_kl import variance_and_kl  # noqa: E402
from vs_plugin.layers.weight import VariationalLinear  # noqa: E402


def _reference_variance_and_kl(mean, log_sigma2, clip, kind):
    return torch.exp(log_sigma2), vf.kl_sum(mean, log_sigma2, clip, kind)


@pytest.mark.parametrize("mode", ["off", "on"])
@pytest.mark.parametrize("kind", ["sparse_vd", "vbd"])
@pytest.mark.parametrize("clip", [8.0, 4.0])
def test_variance_and_kl_match_autograd(kind, clip, mode):
    mean, log_sigma2 = _parameters()
    weights = torch.randn(mean.shape, generator=torch.Generator().manual_seed(3))
    results = []
    for function in (_reference_variance_and_kl, variance_and_kl):
        with compile_mode_set_to(mode):
            sigma2, kl = function(mean, log_sigma2, clip, kind)
            loss = (sigma2 * weights).sum() + 0.3 * kl
            results.append((sigma2.detach(), kl.item(), torch.autograd.grad(loss, (mean, log_sigma2))))
    (ref_sigma2, ref_kl, ref_grads), (sigma2, kl, grads) = results
    torch.testing.assert_close(sigma2, ref_sigma2, rtol=1e-6, atol=0)
    assert kl == pytest.approx(ref_kl, rel=1e-5)
    for got, expected in zip(grads, ref_grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["sparse_vd", "vbd"])
def test_variance_and_kl_gradcheck_in_double(kind):
    mean, log_sigma2 = _parameters(torch.float64, n=40, seed=2)
    weights = torch.randn(40, dtype=torch.float64)

    def both(m, s):
        sigma2, kl = variance_and_kl(m, s, 8.0, kind)
        return (sigma2 * weights).sum(), kl

    assert torch.autograd.gradcheck(both, (mean, log_sigma2))


def test_only_one_output_used():
    mean, log_sigma2 = _parameters()
    sigma2, _ = variance_and_kl(mean, log_sigma2)
    (grad,) = torch.autograd.grad(sigma2.sum(), (log_sigma2,))
    torch.testing.assert_close(grad, torch.exp(log_sigma2.detach()))
    _, kl = variance_and_kl(mean, log_sigma2)
    grads = torch.autograd.grad(kl, (mean, log_sigma2))
    expected = torch.autograd.grad(vf.kl_sum(mean, log_sigma2), (mean, log_sigma2))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_half_precision_parameters_are_computed_in_float32():
    mean, log_sigma2 = _parameters(n=64)
    sigma2, kl = variance_and_kl(mean.detach().bfloat16(), log_sigma2.detach().bfloat16())
    assert sigma2.dtype == torch.bfloat16 and kl.dtype == torch.float32
    reference = vf.kl_sum(mean.detach().bfloat16().float(), log_sigma2.detach().bfloat16().float())
    assert kl.item() == pytest.approx(reference.item(), rel=1e-5)


def test_bf16_autocast_keeps_the_pass_in_float32():
    mean, log_sigma2 = _parameters(n=64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sigma2, kl = variance_and_kl(mean, log_sigma2)
    assert sigma2.dtype == torch.float32 and kl.dtype == torch.float32
    assert kl.item() == pytest.approx(vf.kl_sum(mean, log_sigma2).item(), rel=1e-5)


def _layer() -> VariationalLinear:
    torch.manual_seed(0)
    layer = VariationalLinear(6, 4, init_log_sigma2=-4.0)
    with torch.no_grad():
        layer.log_sigma2.add_(torch.randn_like(layer.log_sigma2))
    return layer.train()


def test_forward_and_kl_share_one_pass_per_step():
    layer = _layer()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.randn(3, 6)
    out = layer(x)
    kl = layer.kl()
    assert layer.kl() is kl  # the KL term reuses the forward's pass
    assert layer.variance_and_kl()[1] is kl
    (out.sum() + kl).backward()
    assert layer.kl() is not kl  # consumed by backward: a new graph
    optimizer.step()
    layer(x)
    after_step = layer.kl()
    assert after_step.item() != pytest.approx(kl.item())  # parameters changed: recomputed
    with torch.no_grad():
        layer.weight.mul_(0.5)  # any in-place write invalidates it
    assert layer.kl() is not after_step
    with torch.no_grad():
        first = layer.kl()
    assert layer.kl() is not first  # nothing shared without autograd


def test_shared_pass_gradients_equal_the_reference_layer():
    """Forward + KL through the shared pass give the gradients of exp() + autograd KL."""
    layer = _layer()
    x = torch.randn(5, 6)
    torch.manual_seed(7)
    (layer(x).square().sum() + 0.5 * layer.kl()).backward()
    grads = [p.grad.clone() for p in (layer.weight, layer.bias, layer.log_sigma2)]
    layer.zero_grad()
    torch.manual_seed(7)
    mean = torch.nn.functional.linear(x, layer.weight, layer.bias)
    var = torch.nn.functional.linear(x * x, torch.exp(layer.log_sigma2))
    reference = vf.local_reparametrisation_sample(mean, var)
    (reference.square().sum() + 0.5 * vf.kl_sum(layer.weight, layer.log_sigma2)).backward()
    for got, p in zip(grads, (layer.weight, layer.bias, layer.log_sigma2)):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)


def test_gradient_accumulation_over_two_micro_batches():
    layer = _layer()
    x = torch.randn(4, 6)
    for _ in range(2):  # no step between: the second forward must not reuse a consumed graph
        (layer(x).sum() + layer.kl()).backward()
    assert torch.isfinite(layer.log_sigma2.grad).all()
