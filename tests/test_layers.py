"""Sparse variational layers: log alpha, local reparametrisation statistics, eval threshold."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vs_plugin.layers import (
    GatedConv2d,
    GatedLinear,
    VariationalConv1d,
    VariationalConv2d,
    VariationalLinear,
    log_alpha,
)
from vs_plugin.variationalize import set_threshold


def test_log_alpha_formula_and_clip():
    theta = torch.tensor([1.0, 0.1, 1e-6, 2.0])
    log_sigma2 = torch.tensor([0.0, -4.0, 0.0, -30.0])
    expected = log_sigma2 - torch.log(theta**2 + 1e-8)
    assert torch.allclose(log_alpha(theta, log_sigma2), expected.clamp(-8, 8))
    assert log_alpha(theta, log_sigma2)[2].item() == 8.0
    assert log_alpha(theta, log_sigma2)[3].item() == -8.0
    assert log_alpha(theta, log_sigma2, clip=10)[3].item() == -10.0


def _moments(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return samples.mean(0), samples.var(0)


def test_linear_lrt_mean_and_variance():
    torch.manual_seed(1)
    layer = VariationalLinear(6, 3)
    with torch.no_grad():
        layer.log_sigma2.uniform_(-3, 0)
    x = torch.randn(1, 6)
    n = 40_000
    layer.train()
    mean, var = _moments(layer(x.expand(n, 6)))
    expected_mean = F.linear(x, layer.weight, layer.bias)[0]
    expected_var = F.linear(x * x, layer.log_sigma2.exp())[0]
    standard_error = (expected_var / n).sqrt()
    assert torch.all((mean - expected_mean).abs() < 5 * standard_error)
    assert torch.allclose(var, expected_var, rtol=0.05)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_grouped_conv_lrt_mean_and_variance(groups):
    torch.manual_seed(2)
    layer = VariationalConv2d(4, 4, 3, groups=groups, bias=True)
    with torch.no_grad():
        layer.log_sigma2.uniform_(-2, 0)
    x = torch.randn(1, 4, 3, 3)
    n = 40_000
    mean, var = _moments(layer(x.expand(n, 4, 3, 3)).flatten(1))
    expected_mean = F.conv2d(x, layer.weight, layer.bias, groups=groups).flatten()
    expected_var = F.conv2d(x * x, layer.log_sigma2.exp(), groups=groups).flatten()
    assert torch.all((mean - expected_mean).abs() < 5 * (expected_var / n).sqrt())
    assert torch.allclose(var, expected_var, rtol=0.06)


def test_conv1d_lrt_uses_stride_and_padding():
    torch.manual_seed(3)
    layer = VariationalConv1d(2, 3, 3, stride=2, padding=1)
    with torch.no_grad():
        layer.log_sigma2.fill_(-1.0)
    x = torch.randn(1, 2, 7)
    n = 30_000
    mean, var = _moments(layer(x.expand(n, 2, 7)).flatten(1))
    expected_var = F.conv1d(x * x, layer.log_sigma2.exp(), stride=2, padding=1).flatten()
    assert var.shape == expected_var.shape
    assert torch.allclose(var, expected_var, rtol=0.06)


def test_channel_gate_mean_variance_and_shared_over_positions():
    torch.manual_seed(4)
    layer = GatedLinear(5, 3)
    with torch.no_grad():
        layer.gate_mu.copy_(torch.tensor([1.0, 0.5, -2.0]))
        layer.gate_log_sigma2.copy_(torch.tensor([-2.0, -1.0, 0.0]))
    x = torch.randn(1, 5)
    n = 40_000
    h = F.linear(x, layer.weight, layer.bias)[0]
    mean, var = _moments(layer(x.expand(n, 5)))
    standard_error = h.abs() * (0.5 * layer.gate_log_sigma2).exp() / n**0.5
    assert torch.all((mean - h * layer.gate_mu).abs() < 5 * standard_error)
    assert torch.allclose(var, h**2 * layer.gate_log_sigma2.exp(), rtol=0.05)
    conv = GatedConv2d(2, 3, 1, bias=False)
    with torch.no_grad():
        conv.gate_log_sigma2.fill_(0.0)
    image = torch.randn(4, 2, 3, 3)
    ratio = conv(image) / F.conv2d(image, conv.weight)
    # One gate draw per example and channel: the ratio is constant over the 3x3 positions.
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-4)
    assert ratio[:, :, 0, 0].std() > 0.1


def test_eval_prunes_at_threshold_exactly():
    layer = VariationalLinear(4, 1, bias=True)
    theta = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    with torch.no_grad():
        layer.weight.copy_(theta)
        layer.log_sigma2.copy_(torch.tensor([[-1.0, 2.9, 3.1, 5.0]]))  # log alpha = log sigma^2 here
    layer.eval()
    x = torch.randn(7, 4)
    assert layer.keep_mask().tolist() == [[True, True, False, False]]
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert torch.equal(layer(x), F.linear(x, theta * mask, layer.bias))
    assert torch.equal(layer(x), layer(x)), "eval is deterministic"
    set_threshold(nn.Sequential(layer), 4.0)
    assert layer.keep_mask().tolist() == [[True, True, True, False]]


def test_channel_eval_gate_and_plain_conversion():
    layer = GatedConv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        layer.gate_mu.copy_(torch.tensor([2.0, 1.0, 0.5]))
        layer.gate_log_sigma2.copy_(torch.tensor([-5.0, 4.0, -5.0]))  # channel 1: log alpha = 4 >= 3
    layer.eval()
    x = torch.randn(2, 2, 4, 4)
    out = layer(x)
    assert out[:, 1].abs().max() == 0
    plain = layer.to_plain()
    assert type(plain) is nn.Conv2d
    assert torch.allclose(plain(x), out, atol=1e-6)
    assert plain.weight[1].abs().max() == 0 and plain.bias[1] == 0


@pytest.mark.parametrize("cls", [VariationalLinear, GatedLinear])
def test_kl_gradient_pushes_log_sigma2_up_inside_the_clip(cls):
    layer = cls(3, 2, init_log_sigma2=-10.0)
    with torch.no_grad():
        layer.weight.fill_(0.01)  # log alpha = -10 - log(1e-4) = -0.79, inside [-8, 8]
        if cls is GatedLinear:
            layer.gate_mu.fill_(0.01)
    layer.kl().backward()
    grad = layer.log_sigma2.grad if cls is VariationalLinear else layer.gate_log_sigma2.grad
    # Gradient descent on the KL increases log sigma^2 (more dropout).
    assert torch.all(grad < 0)


def test_clipped_log_alpha_gets_no_kl_gradient():
    # Reference behaviour (Molchanov et al.'s code clips too): a weight whose log alpha is below
    # -clip is not pushed by the KL until the data term shrinks it.
    # min_init_log_alpha=None: the constant start, so the clipped case can be built on purpose.
    layer = VariationalLinear(2, 1, init_log_sigma2=-15.0, min_init_log_alpha=None)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1e-4]]))  # log alpha: -15 (clipped), -15 + 18.4 = 3.4
    layer.kl().backward()
    assert layer.log_sigma2.grad[0, 0] == 0
    assert layer.log_sigma2.grad[0, 1] < 0


def test_unknown_kl_is_a_clear_error():
    from vs_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="sparse_vd"):
        VariationalLinear(2, 2, kl="gaussian")
