"""The group reading of the Block Sparse Regulariser: a guided group lasso over input units."""

import pytest
import torch
import torch.nn as nn

from vs_plugin import VariationalConfig, variationalize
from vs_plugin.losses.bsr import GUIDE_CAP, BlockSparseRegulariser, block_sparse_regulariser, teacher_guide
from vs_plugin.losses.objective import ObjectiveConfig, VariationalStudentObjective


def test_unguided_group_penalty_is_the_sum_of_column_norms_and_reaches_every_weight():
    weight = torch.randn(5, 4, requires_grad=True)
    value = block_sparse_regulariser(weight, None, "group")
    assert float(value) == pytest.approx(float(weight.detach().norm(dim=0).sum()), rel=1e-6)
    value.backward()
    assert bool((weight.grad != 0).all())  # unlike l1_inf, not only each column's largest weight
    assert torch.allclose(weight.grad, weight.detach() / weight.detach().norm(dim=0), atol=1e-6)


def test_guide_weighs_inputs_the_teacher_ignores_more():
    teacher = torch.tensor([[1.0, 0.1, 0.0], [1.0, 0.1, 0.0]])  # input 0 used, 1 barely, 2 never
    guide = teacher_guide(teacher.pow(2).sum(dim=0))
    assert guide[0] < guide[1] < guide[2]
    assert float(guide.mean()) == pytest.approx(1.0)
    assert float(guide.max() / guide.min()) <= GUIDE_CAP ** 2 + 1e-4


def _pair(teacher_widths, student_widths):
    def mlp(widths):
        layers = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers[:-1])

    torch.manual_seed(0)
    return mlp(teacher_widths), variationalize(mlp(student_widths), VariationalConfig())


def test_guide_only_where_input_spaces_correspond():
    teacher, student = _pair((8, 32, 3), (8, 6, 3))
    bsr = BlockSparseRegulariser(student, teacher, "group")
    assert bsr.teacher_stat_0 is not None  # both read the data
    assert bsr.teacher_stat_1 is None  # hidden unit m of a narrower student means nothing to the teacher
    teacher, copy = _pair((8, 32, 3), (8, 32, 3))
    assert BlockSparseRegulariser(copy, teacher, "group").teacher_stat_1 is not None  # a copy: same units


def test_objective_scales_the_group_reading_like_the_kl():
    teacher, student = _pair((8, 16, 3), (8, 6, 3))
    x, y = torch.randn(4, 8), torch.randint(0, 3, (4,))
    config = ObjectiveConfig(kd_weight=0.0, bsr_weight=1.0, bsr_norm="group", kl_min_samples=100)
    with torch.no_grad():
        logits = student(x)
        small = VariationalStudentObjective(student, teacher, config, num_train_samples=10)(logits, None, y)["bsr"]
        large = VariationalStudentObjective(student, teacher, config, num_train_samples=1000)(logits, None, y)["bsr"]
        raw = BlockSparseRegulariser(student, teacher, "group")()
    assert float(small) == pytest.approx(float(raw) / 100, rel=1e-6)
    assert float(large) == pytest.approx(float(raw) / 1000, rel=1e-6)
