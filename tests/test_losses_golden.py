"""Every loss against golden values computed by independent NumPy references (fixtures/)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from vs_plugin.layers import VariationalLinear, kl_sparse_vd, kl_vbd
from vs_plugin.losses import (
    BlockSparseRegulariser,
    ObjectiveConfig,
    VariationalStudentObjective,
    block_sparse_regulariser,
    kd_loss,
    locality_preserving_loss,
    variational_kl,
)

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = json.loads((FIXTURES / "golden_losses.json").read_text())


def _inputs() -> dict:
    import sys

    sys.path.insert(0, str(FIXTURES))
    from make_golden_losses import inputs

    return {k: torch.tensor(v, dtype=torch.float64) for k, v in inputs().items()}


X = _inputs()


def test_fixture_matches_reference_implementation():
    import sys

    sys.path.insert(0, str(FIXTURES))
    from make_golden_losses import golden

    fresh = golden()
    for key, value in GOLDEN.items():
        np.testing.assert_allclose(fresh[key], value, rtol=1e-12, err_msg=key)


@pytest.mark.parametrize("temperature, reduction, key", [(4.0, "batchmean", "kd_T4_batchmean"), (1.0, "batchmean", "kd_T1_batchmean"), (4.0, "elementmean", "kd_T4_elementmean")])
def test_kd_golden(temperature, reduction, key):
    value = kd_loss(X["student_logits"], X["teacher_logits"], temperature, reduction)
    assert value.item() == pytest.approx(GOLDEN[key], rel=1e-9)


def test_kd_is_zero_for_identical_logits_and_positive_otherwise():
    logits = torch.randn(5, 7)
    assert kd_loss(logits, logits, 3.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(logits, torch.randn(5, 7), 3.0).item() > 0


def test_kl_approximations_golden():
    np.testing.assert_allclose(kl_sparse_vd(X["log_alpha"]).numpy(), GOLDEN["kl_sparse_vd"], rtol=1e-9)
    np.testing.assert_allclose(kl_vbd(X["log_alpha"]).numpy(), GOLDEN["kl_vbd"], rtol=1e-9)


def test_kl_constants_by_hand():
    # At log alpha = 0: KL = k1 - k1 * sigmoid(k2) + 0.5 * log 2 (Molchanov et al. 2017, eq. 14).
    expected = 0.63576 - 0.63576 / (1 + math.exp(-1.87320)) + 0.5 * math.log(2)
    assert kl_sparse_vd(torch.tensor(0.0, dtype=torch.float64)).item() == pytest.approx(expected, rel=1e-12)
    # The approximation vanishes as alpha -> infinity and is monotone decreasing in log alpha.
    grid = torch.linspace(-8, 8, 200, dtype=torch.float64)
    values = kl_sparse_vd(grid)
    assert torch.all(values[1:] < values[:-1])
    assert kl_sparse_vd(torch.tensor(20.0)).item() < 1e-8


def test_variational_kl_of_a_layer_golden():
    layer = VariationalLinear(4, 3).double()
    with torch.no_grad():
        layer.weight.copy_(X["theta"])
        layer.log_sigma2.copy_(X["log_sigma2"])
    model = nn.Sequential(layer, nn.ReLU())
    assert variational_kl(model).item() == pytest.approx(GOLDEN["layer_kl_sparse_vd_sum"], rel=1e-6)


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("norm", ["l1_inf", "l2_1"])
def test_bsr_golden(kind, norm):
    value = block_sparse_regulariser(X[f"bsr_student_{kind}"], X[f"bsr_teacher_{kind}"], norm)
    assert value.item() == pytest.approx(GOLDEN[f"bsr_{kind}_{norm}"], rel=1e-9)


def test_bsr_student_only_golden():
    assert block_sparse_regulariser(X["bsr_student_linear"], None, "l1_inf").item() == pytest.approx(GOLDEN["bsr_student_only_l1_inf"], rel=1e-12)


def test_bsr_by_hand_and_teacher_has_no_gradient():
    teacher = torch.tensor([[1.0, -4.0], [0.5, 0.0]])  # block maxima over inputs: [1, 4]
    student = torch.tensor([[3.0, 0.5, -2.0]], requires_grad=True)  # input 3 has no teacher partner: padded
    value = block_sparse_regulariser(student, teacher, "l1_inf")
    assert value.item() == pytest.approx(max(1, 3) + max(4, 0.5) + 2.0)
    value.backward()
    # Only student entries that are their block's maximum receive gradient.
    assert student.grad.tolist() == [[1.0, 0.0, -1.0]]


def test_bsr_module_pairs_by_name_and_order():
    teacher = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    same = nn.Sequential(VariationalLinear(4, 6), nn.ReLU(), VariationalLinear(6, 3))
    other = nn.Sequential(nn.Flatten(), VariationalLinear(4, 2), nn.ReLU(), VariationalLinear(2, 3))
    assert [(p.student, p.teacher) for p in BlockSparseRegulariser(same, teacher).pairs] == [("0", "0"), ("2", "2")]
    assert [(p.student, p.teacher) for p in BlockSparseRegulariser(other, teacher).pairs] == [("1", "0"), ("3", "2")]
    mapped = BlockSparseRegulariser(other, teacher, mapping={"3": None})
    assert [(p.student, p.teacher) for p in mapped.pairs] == [("1", "0"), ("3", None)]
    expected = block_sparse_regulariser(other[1].weight, teacher[0].weight) + block_sparse_regulariser(other[3].weight, None)
    assert mapped().item() == pytest.approx(expected.item())


@pytest.mark.parametrize("sigma2, key", [(2.0, "lp_k3_sigma2_2"), ("median", "lp_k3_median")])
def test_locality_preserving_golden(sigma2, key):
    value = locality_preserving_loss(X["lp_student"], X["lp_teacher"], k=3, sigma2=sigma2)
    assert value.item() == pytest.approx(GOLDEN[key], rel=1e-5)


def test_locality_preserving_pulls_teacher_neighbours_together():
    teacher = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    student = torch.randn(4, 3, requires_grad=True)
    locality_preserving_loss(student, teacher, k=1, sigma2=1.0).backward()
    # Samples 0 and 1 are teacher neighbours: the gradient moves them towards each other.
    assert torch.dot(student.grad[0], student[0].detach() - student[1].detach()) > 0


def test_objective_combines_terms_with_weights():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    student = nn.Sequential(VariationalLinear(4, 6), nn.ReLU(), VariationalLinear(6, 3))
    config = ObjectiveConfig(kd_weight=0.5, temperature=2.0, kl_weight=2.0, bsr_weight=0.1, lp_gamma=1.5, lp_k=2)
    objective = VariationalStudentObjective(student, teacher, config, num_train_samples=100)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    s, t = student(x), teacher(x)
    terms = objective(s, t, y, beta=0.25, student_features=torch.randn(8, 5), teacher_features=torch.randn(8, 7))
    assert set(terms) == {"loss", "ce", "kd", "kl", "bsr", "lp"}
    assert terms["ce"].item() == pytest.approx(nn.functional.cross_entropy(s, y).item(), rel=1e-6)
    assert terms["kd"].item() == pytest.approx(kd_loss(s, t, 2.0).item(), rel=1e-6)
    assert terms["kl"].item() == pytest.approx(variational_kl(student).item() / 100, rel=1e-6)
    expected = terms["ce"] + 0.5 * terms["kd"] + 2.0 * 0.25 * terms["kl"] + 0.1 * terms["bsr"] + 1.5 * terms["lp"]
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    complement = VariationalStudentObjective(student, teacher, ObjectiveConfig(kd_weight=0.9, ce_weighting="complement"), num_train_samples=100)
    terms = complement(s, t, y)
    assert terms["loss"].item() == pytest.approx((0.1 * terms["ce"] + 0.9 * terms["kd"] + terms["kl"]).item(), rel=1e-5)
