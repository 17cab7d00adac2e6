"""Tensors the method creates follow the model's device and dtype; bf16 autocast keeps the
variational parameters, the KL and the BSR in fp32."""

from contextlib import nullcontext

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

import vs_plugin
from vs_plugin import VariationalConfig, variationalize
from vs_plugin.losses import KLWarmup, ObjectiveConfig, VariationalStudentObjective
from vs_plugin.training.steps import StudentStep


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("granularity", ["weight", "channel"])
def test_layers_follow_the_model_dtype(dtype, granularity):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.Linear(8, 3)).to(dtype)
    variationalize(model, VariationalConfig(granularity=granularity))
    x = torch.randn(2, 1, 6, 6, dtype=dtype)
    model.train()
    out = model(x)
    assert out.dtype == dtype
    objective = VariationalStudentObjective(model, None, ObjectiveConfig(kd_weight=0.0), num_train_samples=10)
    terms = objective(out, None, torch.tensor([0, 2]))
    assert torch.isfinite(terms["loss"]) and terms["kl"].dtype == torch.float32
    terms["loss"].backward()
    assert all(p.grad is None or p.grad.dtype == dtype for p in model.parameters())


def test_bf16_autocast_keeps_variational_parameters_fp32():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    student = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    variationalize(student)
    objective = VariationalStudentObjective(student, teacher, ObjectiveConfig(bsr_weight=0.01, lp_gamma=1.0, lp_k=2), num_train_samples=32)
    autocast = lambda: torch.autocast(device_type="cpu", dtype=torch.bfloat16)  # noqa: E731
    step = StudentStep(student, teacher, objective, KLWarmup(end_step=0), torch.device("cpu"), autocast)
    terms = step((torch.randn(8, 6), torch.randint(0, 3, (8,))), 0)
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"])
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in student.parameters())
    # The KL under autocast equals the KL computed without it (it runs in fp32).
    plain = VariationalStudentObjective(student, teacher, ObjectiveConfig(), num_train_samples=32)
    assert terms["kl"].item() == pytest.approx(plain(torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([0]))["kl"].item(), rel=1e-6)
    step.close()


def test_compress_with_bf16_runs_end_to_end():
    data = TensorDataset(torch.randn(64, 1, 4, 4), torch.arange(64) % 4)
    student, report = vs_plugin.compress("mlp:in-32-out", "mlp:in-16-out", data, data, train_teacher=True,
                                         teacher_epochs=1, epochs=2, batch_size=16, amp="bf16", progress=False)
    assert report["config"]["amp"] == "bf16" and 0 <= report["student"]["accuracy"] <= 1
    assert all(p.dtype == torch.float32 for p in student.parameters())
