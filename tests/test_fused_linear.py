"""The one-node training forward of a per-weight variational Linear gives the plain-op path's values
and gradients (layers/fused_linear.py)."""

import pytest
import torch
import torch.nn.functional as F

from vs_plugin.layers import functional as vf
from vs_plugin.layers import fused_linear
from vs_plugin.layers.compiled import compile_mode_set_to
from vs_plugin.layers.weight import VariationalLinear


def _layer(dtype=torch.float32, bias=True, kl="sparse_vd", in_features=6, out_features=4) -> VariationalLinear:
    torch.manual_seed(0)
    layer = VariationalLinear(in_features, out_features, bias=bias, init_log_sigma2=-4.0, kl=kl).to(dtype)
    with torch.no_grad():
        layer.log_sigma2.add_(2.0 * torch.randn_like(layer.log_sigma2))
        layer.weight[0, :2] = 0.0  # theta = 0: log alpha at the upper clip, zero KL gradient
    return layer.train()


def _reference(layer: VariationalLinear, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The autograd reference: plain ops, exp(log sigma^2) and the autograd KL."""
    torch.manual_seed(seed)
    mean = F.linear(x, layer.weight, layer.bias)
    var = F.linear(x * x, torch.exp(layer.log_sigma2))
    return vf.local_reparametrisation_sample(mean, var), vf.kl_sum(layer.weight, layer.log_sigma2, layer.log_alpha_clip, layer.kl_name)


def _fused(layer: VariationalLinear, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    out = layer(x)
    return out, layer.kl()


def _values_and_grads(function, layer, x, seed=7, kl_weight=0.37):
    layer.zero_grad()
    inputs = x.detach().clone().requires_grad_(x.requires_grad)
    out, kl = function(layer, inputs, seed)
    weights = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).view(out.shape)
    ((out * weights).sum() + kl_weight * kl).backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    if inputs.requires_grad:
        grads.append(inputs.grad.clone())
    return out.detach(), kl.item(), grads


@pytest.mark.parametrize("mode", ["off", "on"])
@pytest.mark.parametrize("kl", ["sparse_vd", "vbd"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("input_grad", [True, False])
def test_values_and_gradients_equal_the_plain_path(mode, kl, bias, input_grad):
    layer = _layer(bias=bias, kl=kl)
    x = torch.randn(5, 6).requires_grad_(input_grad)
    with compile_mode_set_to(mode):
        assert fused_linear.applies(x, layer.weight, layer.log_sigma2, layer.bias, kl)
        out, kl_value, grads = _values_and_grads(_fused, layer, x)
    ref_out, ref_kl, ref_grads = _values_and_grads(_reference, layer, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    assert kl_value == pytest.approx(ref_kl, rel=1e-5)
    assert len(grads) == len(ref_grads) == len(list(layer.parameters())) + input_grad
    for got, expected in zip(grads, ref_grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_inputs_with_more_dimensions():
    layer = _layer()
    x = torch.randn(2, 3, 6, requires_grad=True)
    out, _, grads = _values_and_grads(_fused, layer, x)
    ref_out, _, ref_grads = _values_and_grads(_reference, layer, x)
    assert out.shape == (2, 3, 4)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    for got, expected in zip(grads, ref_grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_gradcheck_in_double():
    layer = _layer(torch.float64)
    theta, log_sigma2, bias = (p.detach().clone().requires_grad_() for p in (layer.weight, layer.log_sigma2, layer.bias))
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)

    def run(x, theta, log_sigma2, bias):
        torch.manual_seed(3)  # the same noise for every evaluation
        token = fused_linear._BackwardToken()
        out, sigma2, kl = fused_linear._LinearSample.apply(x, theta, log_sigma2, bias, 8.0, True, token)
        return out, kl

    assert torch.autograd.gradcheck(run, (x, theta, log_sigma2, bias))


def test_bf16_autocast_takes_the_plain_path_with_the_same_numbers():
    layer = _layer()
    x = torch.randn(5, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused_linear.applies(x, layer.weight, layer.log_sigma2, layer.bias, "sparse_vd")
        out, kl_value, grads = _values_and_grads(_fused, layer, x)
        ref_out, ref_kl, ref_grads = _values_and_grads(_reference, layer, x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref_out)
    assert kl_value == pytest.approx(ref_kl, rel=1e-5)
    for got, expected in zip(grads, ref_grads):
        torch.testing.assert_close(got, expected, rtol=1e-2, atol=1e-4)


def test_half_precision_parameters_take_the_plain_path():
    layer = _layer(torch.bfloat16)
    assert not fused_linear.applies(torch.randn(2, 6, dtype=torch.bfloat16), layer.weight, layer.log_sigma2, layer.bias, "sparse_vd")


def test_kl_shares_the_layer_node_and_a_second_call_reuses_its_pass():
    layer = _layer()
    x = torch.randn(3, 6)
    torch.manual_seed(5)
    out = layer(x)
    assert type(out.grad_fn).__name__ == "_LinearSampleBackward"
    kl = layer.kl()
    assert kl.grad_fn is out.grad_fn  # the objective's KL is an output of the same node
    second = layer(x)  # a second call in the same step: plain ops on the shared sigma^2
    assert type(second.grad_fn).__name__ != "_LinearSampleBackward"
    (out.sum() + second.sum() + kl).backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    torch.manual_seed(5)  # the same noise, drawn in the same order
    sigma2 = torch.exp(layer.log_sigma2)
    reference = sum(
        vf.local_reparametrisation_sample(F.linear(x, layer.weight, layer.bias), F.linear(x * x, sigma2)).sum() for _ in range(2)
    ) + vf.kl_sum(layer.weight, layer.log_sigma2)
    reference.backward()
    for got, p in zip(grads, layer.parameters()):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)


def test_retain_graph_second_backward_gives_the_same_gradients():
    layer = _layer()
    x = torch.randn(4, 6)
    out = layer(x)
    loss = out.square().sum() + 0.5 * layer.kl()
    first = torch.autograd.grad(loss, list(layer.parameters()), retain_graph=True)
    second = torch.autograd.grad(loss, list(layer.parameters()))
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


def test_gradient_accumulation_over_two_micro_batches():
    layer = _layer()
    x = torch.randn(4, 6)
    total = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        (layer(x).square().sum() + layer.kl()).backward()
    total = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    for seed in (1, 2):
        out, kl = _reference(layer, x, seed)
        (out.square().sum() + kl).backward()
    for got, p in zip(total, layer.parameters()):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)
