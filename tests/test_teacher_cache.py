"""The frozen teacher's outputs computed once per sample: same numbers as running it every step."""

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

import vs_plugin
from vs_plugin.data import InMemoryLoader
from vs_plugin.features import FeatureTap
from vs_plugin.training.teacher_cache import with_cached_teacher


def make_teacher() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3)).eval()


def test_cached_columns_equal_the_teacher_outputs_of_each_batch():
    teacher = make_teacher()
    data = TensorDataset(torch.randn(50, 1, 4, 4), torch.arange(50) % 3)
    loader = InMemoryLoader(data, batch_size=8, shuffle=True, seed=3)
    cached = with_cached_teacher(loader, teacher, torch.device("cpu"), with_features=True)
    assert len(cached) == len(loader)
    for (x, y), (cx, cy, logits, features) in zip(loader, cached):
        assert torch.equal(x, cx) and torch.equal(y, cy), "same order of samples"
        with FeatureTap(teacher) as tap, torch.no_grad():
            expected = teacher(x)
            expected_features = tap.take()
        assert torch.allclose(logits, expected, atol=1e-6)
        assert torch.allclose(features, expected_features, atol=1e-6)


def test_not_applicable_or_too_large_leaves_the_loader_alone():
    teacher = make_teacher()
    data = TensorDataset(torch.randn(10, 1, 4, 4), torch.arange(10) % 3)
    loader = InMemoryLoader(data, batch_size=4)
    assert with_cached_teacher(loader, teacher, torch.device("cpu"), max_bytes=10) is loader
    dataloader = torch.utils.data.DataLoader(data, batch_size=4)
    assert with_cached_teacher(dataloader, teacher, torch.device("cpu")) is dataloader


@pytest.mark.parametrize("lp_gamma", [0.0, 1.5])
def test_runs_with_and_without_the_cache_agree(lp_gamma):
    data = TensorDataset(torch.randn(96, 1, 4, 4), torch.arange(96) % 3)
    results = []
    for cache in (True, False):
        teacher = make_teacher()
        student, report = vs_plugin.compress(
            teacher, "mlp:in-8-out", data, data, epochs=3, batch_size=16, lp_gamma=lp_gamma, lp_k=3,
            cache_teacher=cache, progress=False,
        )
        results.append((student, report))
    (a, ra), (b, rb) = results
    # Batched matmuls round differently for different batch shapes: equal up to float noise.
    for key in a.state_dict():
        assert torch.allclose(a.state_dict()[key], b.state_dict()[key], atol=1e-4), key
    assert ra["student"]["accuracy"] == pytest.approx(rb["student"]["accuracy"], abs=0.02)
