"""The opt-in compiled KL gives the eager KL's value and gradients, and falls back when it cannot compile."""

import pytest
import torch
import torch.nn as nn

from vs_plugin import VariationalConfig, variationalize
from vs_plugin.layers.compiled import CompiledKLSum
from vs_plugin.losses import variational_kl


def model(granularity: str) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 6), nn.Linear(6, 3))
    variationalize(net, VariationalConfig(granularity=granularity, init_log_sigma2=-4.0))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def grads(net: nn.Module, compiled: bool) -> tuple[float, list[torch.Tensor]]:
    net.zero_grad()
    value = variational_kl(net, compiled=compiled)
    value.backward()
    return value.item(), [p.grad.clone() for p in net.parameters() if p.grad is not None]


@pytest.mark.parametrize("granularity", ["weight", "channel"])
def test_compiled_equals_eager(granularity):
    net = model(granularity)
    eager_value, eager_grads = grads(net, compiled=False)
    compiled_value, compiled_grads = grads(net, compiled=True)
    assert compiled_value == pytest.approx(eager_value, rel=1e-5)
    assert len(compiled_grads) == len(eager_grads)
    for a, b in zip(compiled_grads, eager_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_falls_back_to_eager_with_one_warning(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    kl_sum = CompiledKLSum()
    mean, log_sigma2 = torch.randn(5), torch.full((5,), -3.0)
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler"):
        first = kl_sum(mean, log_sigma2, 8.0, "sparse_vd")
    second = kl_sum(mean, log_sigma2, 8.0, "vbd")  # no second warning: eager from now on
    from vs_plugin.layers.functional import kl_sum as eager

    assert first.item() == pytest.approx(eager(mean, log_sigma2, 8.0, "sparse_vd").item())
    assert second.item() == pytest.approx(eager(mean, log_sigma2, 8.0, "vbd").item())
