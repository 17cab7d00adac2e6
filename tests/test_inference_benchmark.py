"""benchmarks/inference.py: the CSR and shrunk students compute what the compressed student does,
and the peak-memory probe loads each deployment file in a fresh process."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn as nn

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "inference.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("inference_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sparse_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        model[1].weight.mul_((torch.rand_like(model[1].weight) > 0.5).float())  # unstructured zeros
        model[1].weight[[2, 7]] = 0.0  # units with no input: constants folded into the next bias
        model[1].bias[2] = 0.7
        model[3].weight[:, 4] = 0.0  # a unit whose output nobody reads
        model[3].weight[1] = 0.0
    return model.eval()


def test_csr_and_shrunk_students_equal_the_dense_one(bench):
    model = _sparse_mlp()
    shrunk, csr = bench.shrink(model), bench.to_csr(model)
    x = torch.randn(32, 1, 3, 4)
    with torch.inference_mode():
        assert torch.allclose(shrunk(x), model(x), atol=1e-6) and torch.allclose(csr(x), model(x), atol=1e-6)
    assert shrunk[1].out_features == 7 and shrunk[3].out_features == 5
    assert bench.parameter_bytes(csr) < bench.parameter_bytes(model) * 2


def test_peak_memory_loads_each_deployment_file_in_a_fresh_process(bench):
    variants = {"dense": _sparse_mlp(), "wide": nn.Sequential(nn.Flatten(), nn.Linear(12, 4096), nn.ReLU(), nn.Linear(4096, 3))}
    memory, file_bytes = bench.peak_memory(variants, (1, 3, 4), batch=8)
    assert set(memory) == set(file_bytes) == {"dense", "wide"}
    assert file_bytes["wide"] > 4096 * 12 * 4 > file_bytes["dense"]
    assert memory["wide"] > 0 and memory["dense"] >= 0
