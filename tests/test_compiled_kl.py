"""The compiled per-weight pass gives the eager pass's values and gradients, and falls back when
it cannot compile."""

import pytest
import torch
import torch.nn as nn

from vs_plugin import VariationalConfig, variationalize
from vs_plugin.layers import compiled
from vs_plugin.layers.compiled import CompiledOrEager, compile_mode_set_to, set_compile_mode
from vs_plugin.layers.fused_kl import variational_pass
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


def test_training_step_compiled_equals_eager():
    """Forward (variance path) and KL together, through the compiled pass and its backward."""
    net = model("weight").train()
    x = torch.randn(5, 1, 4, 4)
    results = []
    for mode in ("off", "on"):
        net.zero_grad()
        torch.manual_seed(1)
        with compile_mode_set_to(mode):
            loss = net(x).square().sum() + variational_kl(net)
            loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in net.parameters()]))
    (eager_loss, eager_grads), (compiled_loss, compiled_grads) = results
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-5)
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_auto_mode_leaves_small_models_eager(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda *a, **k: calls.append(1) or (lambda *args: None))
    runner = CompiledOrEager(variational_pass)
    with compile_mode_set_to("auto"):
        theta, log_sigma2 = torch.randn(10), torch.full((10,), -3.0)
        out = runner(theta, log_sigma2, 8.0, True)
    assert not calls and out[0].shape == (10,)


def test_falls_back_to_eager_with_one_warning(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(compiled, "_failed", False)
    runner = CompiledOrEager(variational_pass)
    mean, log_sigma2 = torch.randn(5), torch.full((5,), -3.0)
    with compile_mode_set_to("on"):
        with pytest.warns(UserWarning, match="no C\\+\\+ compiler"):
            first = runner(mean, log_sigma2, 8.0, True)
        second = runner(mean, log_sigma2, 8.0, False)  # no second warning: eager from now on
    from vs_plugin.layers.functional import kl_sum as eager

    assert first[3].item() == pytest.approx(eager(mean, log_sigma2, 8.0, "sparse_vd").item())
    assert second[3].item() == pytest.approx(eager(mean, log_sigma2, 8.0, "vbd").item())


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="accepted: auto, on, off"):
        set_compile_mode("always")
