"""One initialisation rule for every variational unit, whatever the entry point (issues 11 item 3
and 12 item 1): no unit starts with log alpha below the clip, and weights' and gates' log alpha
move during a few training steps."""


import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vs_plugin import VariationalConfig, variationalize
from vs_plugin.layers import VariationalLayer
from vs_plugin.layers.init import DEFAULT_MIN_INIT_LOG_ALPHA, initial_log_sigma2
from vs_plugin.pipeline.settings import CompressSettings

CLIP = 8.0


def trained_like() -> nn.Module:
    """Weights as large as a trained network's (many |w| > 0.03, which -15 would put below -8)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(10)
    return model


def log_alphas(model: nn.Module) -> torch.Tensor:
    # Unclipped, so a unit below the clip shows.
    values = []
    for m in model.modules():
        if isinstance(m, VariationalLayer):
            mean, log_sigma2 = m.variational_parameters()
            values.append((log_sigma2 - torch.log(mean * mean + 1e-8)).detach().flatten())
    return torch.cat(values)


def test_the_rule():
    mean = torch.tensor([1.0, 0.1, 1e-4])
    start = initial_log_sigma2(mean, -15.0, -6.0)
    assert torch.allclose((start - torch.log(mean ** 2 + 1e-8))[:2], torch.tensor([-6.0, -6.0]), atol=1e-4)  # raised
    assert start[2] == -15.0  # a tiny mean already starts high (log alpha ~ 3.4): the constant is kept
    assert torch.equal(initial_log_sigma2(mean, -15.0, None), torch.full((3,), -15.0))


def entry_points():
    """(name, function making a variational model from a trained one) for every entry point."""
    from vs_plugin.integrations.nni import VariationalStudentPruner as NNIPruner
    from vs_plugin.integrations.nni import make_torch_evaluator
    from vs_plugin.integrations.torch_pruning import VariationalStudentPruner as TPPruner
    from vs_plugin import ObjectiveConfig

    batches = [(torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,)))]

    def api(granularity):
        return lambda m: variationalize(m, VariationalConfig(granularity=granularity, init_log_sigma2=-15.0))

    def settings(granularity):  # what the CLI and vs_plugin.compress build (student copied from the teacher)
        return lambda m: variationalize(m, CompressSettings(granularity=granularity).variational_config(student_from_teacher=True))

    def nni(granularity):
        def make(m):
            config = [{"op_types": ["Conv2d", "Linear"], "granularity": granularity, "sparse_ratio": 0.5,
                       **({"exclude_op_names": ["6"]} if granularity == "out_channel" else {})}]
            pruner = NNIPruner(m, config, make_torch_evaluator(m, batches), None, training_steps=1, num_train_samples=4,
                               objective={"kd_weight": 0.0})
            pruner.unwrap_model(keep_variational=True)  # train the variational layers directly below
            return m
        return make

    def torch_pruning(m):
        TPPruner(m, torch.zeros(1, 3, 8, 8), num_train_samples=4, objective=ObjectiveConfig(kd_weight=0.0))
        return m

    return {
        "api-weight": api("weight"), "api-channel": api("channel"),
        "settings-weight": settings("weight"), "settings-channel": settings("channel"),
        "nni-weight": nni("default"), "nni-channel": nni("out_channel"),
        "torch-pruning": torch_pruning,
    }


@pytest.mark.parametrize("entry", list(entry_points()))
@pytest.mark.filterwarnings("ignore")
def test_no_entry_point_starts_a_unit_below_the_clip_and_units_train(entry):
    model = entry_points()[entry](trained_like())
    start = log_alphas(model)
    assert start.min() >= DEFAULT_MIN_INIT_LOG_ALPHA - 1e-4 > -CLIP
    variational = [p for m in model.modules() if isinstance(m, VariationalLayer) for p in m.variational_parameters()[1:]]
    optimizer = torch.optim.Adam([p for p in model.parameters()], lr=1e-2)
    inputs, targets = torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))
    model.train()
    for _ in range(3):
        kl = sum(m.kl() for m in model.modules() if isinstance(m, VariationalLayer))
        loss = F.cross_entropy(model(inputs), targets) + kl / 100
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in variational)  # the KL reaches every layer's sigma
        optimizer.step()
    moved = (log_alphas(model) - start).abs()
    assert moved.min() > 0  # every unit, weights and gates alike, moved

